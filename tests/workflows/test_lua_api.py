"""The workflow Lua API on a real Temporal dev server (issue 2): funcs, time, uuid, errors, values.

Each test writes a small app (the conftest's client + worker pair, then one
``<name>.lua`` file per workflow.lua / function.lua entry), serves it with
in-process workers and reads the execution's history to check what Temporal
recorded. Replay is proven two ways: a worker with ``max_cached_workflows: 0``
replays the whole history on every activation, so a value taken before a sleep
and returned after it comes from a replay; and ``temporalio.worker.Replayer``
replays the finished history against the same code.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import subprocess
import textwrap
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.worker import Replayer

from moontide_testing import TEMPORAL_ENTRIES, eventually, running, temporal_binary
from moontide.runtime import AppRuntime, Pid, load
from moontide.workflows import CodeBook, WorkflowSettings, workflow_class
from moontide.workflows._inline import OnLoopExecutor

T = TypeVar("T")

WF_MODULES = "[funcs, time, uuid, errors, json, workflow, logger]"
FN_MODULES = "[funcs, time, uuid, errors, json]"

#: Functions most tests call.
FUNCTIONS = {
    "echo": "return function(...) return ... end",
    "declined": """
        return function()
          return nil, errors.new{kind = "Declined", message = "no"}
        end
    """,
    "boom": """
        return function()
          error("kaboom")
        end
    """,
    "nap": """
        return function(d, v)
          time.sleep(d)
          return v
        end
    """,
    "fresh": "return function() return uuid.v4() end",
    "shape": "return function(v) return json.encode(v) end",
}


def make_lua_app(make_app: Callable[..., Path], workflows: dict[str, str], functions: dict[str, str] | None = None,
                 *, worker_options: dict[str, Any] | None = None, extra_files: dict[str, str] | None = None) -> Path:
    """An app in namespace ``app``: workflows ``app:<name>`` and functions ``app:<name>``, from ``<name>.lua``."""
    files: dict[str, str] = {}
    lines = [textwrap.dedent(TEMPORAL_ENTRIES).strip("\n")]
    if worker_options:
        lines.append(f"    worker_options: {json.dumps(worker_options)}")
    for name, src in workflows.items():
        files[f"{name}.lua"] = textwrap.dedent(src).lstrip("\n")
        lines.append(f"  - name: {name}\n    kind: workflow.lua\n    source: file://{name}.lua\n"
                     f"    modules: {WF_MODULES}")
    for name, src in {**FUNCTIONS, **(functions or {})}.items():
        files[f"{name}.lua"] = textwrap.dedent(src).lstrip("\n")
        lines.append(f"  - name: {name}\n    kind: function.lua\n    source: file://{name}.lua\n"
                     f"    modules: {FN_MODULES}")
    files["app.yaml"] = "\n".join(lines) + "\n"
    files.update(extra_files or {})
    # make_app dedents: our text is already flat
    return make_app(files)


#: Guard against a hang (a workflow task failing forever): not a speed check.
HANG = 90


async def result_of(rt: AppRuntime, pid: Pid) -> Any:
    return await asyncio.wait_for(rt.result(pid), HANG)


async def events(rt: AppRuntime, pid: Pid) -> list[HistoryEvent]:
    handle = await rt.handle(pid)
    return [e async for e in handle.fetch_history_events()]


def of_type(evs: list[HistoryEvent], name: str) -> list[HistoryEvent]:
    kind = EventType.Value("EVENT_TYPE_" + name)
    return [e for e in evs if e.event_type == kind]


def payloads(p: Any) -> list[Any]:
    return [json.loads(x.data) for x in p.payloads]


def scheduled(evs: list[HistoryEvent]) -> list[tuple[str, list[Any]]]:
    """(activity type, input) of each ActivityTaskScheduled, in order."""
    return [(a.activity_type.name, payloads(a.input))
            for a in (e.activity_task_scheduled_event_attributes for e in of_type(evs, "ACTIVITY_TASK_SCHEDULED"))]


def started_attempts(evs: list[HistoryEvent]) -> list[int]:
    """The attempt of each ActivityTaskStarted (written once per activity, with the last attempt)."""
    return [e.activity_task_started_event_attributes.attempt for e in of_type(evs, "ACTIVITY_TASK_STARTED")]


async def failure_of(rt: AppRuntime, pid: Pid) -> ApplicationError:
    handle = await rt.handle(pid)
    with pytest.raises(WorkflowFailureError) as info:
        await asyncio.wait_for(handle.result(), HANG)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError), repr(cause)
    return cause


async def run_flow(make_app: Callable[..., Path], temporal_address: str, src: str, *args: Any,
                   functions: dict[str, str] | None = None, worker_options: dict[str, Any] | None = None
                   ) -> tuple[Any, list[HistoryEvent]]:
    """Run workflow ``app:wf`` with ``args``; its result and its history."""
    app = make_lua_app(make_app, {"wf": src}, functions, worker_options=worker_options)
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf", None, *args)
        result = await result_of(rt, pid)
        return result, await events(rt, pid)


# -- funcs ----------------------------------------------------------------------

async def test_call_result_is_recorded_and_replayed_from_history(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    # Every activation replays from scratch: the value returned after the
    # sleep is the recorded one, not a second call of the function.
    src = """
    return function()
      local first = funcs.call("fresh")
      local echoed = funcs.call("echo", { a = 1, list = { 1, 2 }, s = "x" })
      time.sleep("200ms")
      return { first = first, echoed = echoed }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src, worker_options={"max_cached_workflows": 0})
    assert result["echoed"] == {"a": 1, "list": [1, 2], "s": "x"}
    assert [t for t, _ in scheduled(evs)] == ["app:fresh", "app:echo"]
    completed = [payloads(e.activity_task_completed_event_attributes.result)[0]
                 for e in of_type(evs, "ACTIVITY_TASK_COMPLETED")]
    assert completed == [result["first"], result["echoed"]]
    uuid.UUID(result["first"])
    assert len(of_type(evs, "TIMER_FIRED")) == 1


async def test_call_error_is_value_err_and_a_declined_error_is_not_retried(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local v, err = funcs.call("declined")
      return { v = v == nil, kind = err:kind(), message = err:message(), retryable = err:retryable(),
               is = errors.is(err, "Declined"), str = tostring(err) }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result == {"v": True, "kind": "Declined", "message": "no", "retryable": False, "is": True, "str": "no"}
    assert started_attempts(evs) == [1]
    failed = of_type(evs, "ACTIVITY_TASK_FAILED")
    assert len(failed) == 1
    info = failed[0].activity_task_failed_event_attributes.failure.application_failure_info
    assert info.type == "Declined" and info.non_retryable


async def test_a_raising_function_is_retried_per_policy_then_returns_err(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local v, err = funcs.new():with_options{
        retry_policy = { maximum_attempts = 2, initial_interval = "100ms" },
      }:call("boom")
      return { v = v == nil, kind = err:kind(), message = err:message(), retryable = err:retryable() }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result["v"] is True
    assert result["kind"] == "Internal"  # Wippy's kind for a runtime crash in an activity
    assert "boom.lua:2: kaboom" in result["message"]
    assert result["retryable"] is True  # a raised error is a fault: retryable, the policy ran out
    assert started_attempts(evs) == [2]
    (attrs,) = [e.activity_task_scheduled_event_attributes for e in of_type(evs, "ACTIVITY_TASK_SCHEDULED")]
    assert attrs.retry_policy.maximum_attempts == 2
    assert attrs.retry_policy.initial_interval.ToMilliseconds() == 100


async def test_a_raising_function_with_the_default_policy_is_retried(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    # "flaky" raises on its first attempt; the default policy retries it.
    flaky = """
    local calls = 0
    return function()
      calls = calls + 1
      if calls == 1 then error("transient") end
      return calls
    end
    """
    src = """
    return function()
      return funcs.call("flaky")
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src, functions={"flaky": flaky})
    assert result == 2
    assert started_attempts(evs) == [2]


async def test_async_futures_run_together(make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local a = funcs.async("nap", "300ms", "a")
      local b = funcs.async("echo", "b")
      local c = funcs.async("declined")
      for _, f in ipairs({ b, a, c }) do f:response():receive() end
      local bv = b:result()
      local av = a:result()
      local cv, cerr = c:result()
      return { a = av:data(), b = bv:data(), c = cv == nil, ckind = cerr:kind(), done = a:is_complete() }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result == {"a": "a", "b": "b", "c": True, "ckind": "Declined", "done": True}
    assert [t for t, _ in scheduled(evs)] == ["app:nap", "app:echo", "app:declined"]
    # all three were scheduled before any of them finished
    kinds = [e.event_type for e in evs]
    last_scheduled = max(i for i, k in enumerate(kinds) if k == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)
    first_closed = min(i for i, k in enumerate(kinds) if k in (EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
                                                                EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED))
    assert last_scheduled < first_closed


async def test_with_options_sets_timeouts_and_retry_policy(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local quick = funcs.new():with_options{ start_to_close_timeout = "300ms" }
      local once = quick:with_options{ retry_policy = { maximum_attempts = 1 } }
      local v, err = once:call("nap", "5s", "late")
      local ok = funcs.new():with_options{ start_to_close_timeout = "10s",
                                           retry_policy = { maximum_attempts = 3, backoff_coefficient = 1.5 } }
      -- an interval past the default 30s cap raises the cap instead of failing
      local patient = funcs.new():with_options{ retry_policy = { initial_interval = "45s" } }
      return { v = v == nil, kind = err and err:kind(), ok = ok:call("echo", 1), patient = patient:call("echo", 2) }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result == {"v": True, "kind": "Timeout", "ok": 1, "patient": 2}
    first, second, third = [e.activity_task_scheduled_event_attributes
                            for e in of_type(evs, "ACTIVITY_TASK_SCHEDULED")]
    assert third.retry_policy.initial_interval.ToSeconds() == 45
    assert third.retry_policy.maximum_interval.ToSeconds() >= 45
    assert first.start_to_close_timeout.ToMilliseconds() == 300  # kept through the second with_options
    assert first.retry_policy.maximum_attempts == 1
    assert second.start_to_close_timeout.ToSeconds() == 10
    assert second.retry_policy.maximum_attempts == 3
    assert second.retry_policy.backoff_coefficient == 1.5
    assert of_type(evs, "ACTIVITY_TASK_TIMED_OUT")


@pytest.mark.parametrize("options,words", [
    ("{ bogus = 1 }", ["unknown activity option", "bogus"]),
    ('{ start_to_close_timeout = "soon" }', ["start_to_close_timeout", "soon"]),
    ("{ retry_policy = { tries = 3 } }", ["retry_policy", "tries"]),
    ('{ retry_policy = { maximum_attempts = "three" } }', ["maximum_attempts"]),
    ('{ retry_policy = { backoff_coefficient = "fast" } }', ["backoff_coefficient"]),
    ('{ retry_policy = "often" }', ["retry_policy"]),
    ("{ retry_policy = { backoff_coefficient = 0.5 } }", ["retry_policy", "Backoff coefficient"]),
    ('{ start_to_close_timeout = "0s" }', ["start_to_close_timeout"]),
    ('{ "10s" }', ["options"]),
])
async def test_a_bad_option_is_an_invalid_err_and_schedules_nothing(
        make_app: Callable[..., Path], temporal_address: str, options: str, words: list[str]) -> None:
    src = f"""
    return function()
      local v, err = funcs.new():with_options{options}:call("echo", 1)
      return {{ v = v == nil, kind = err:kind(), message = err:message(), retryable = err:retryable() }}
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result["v"] is True and result["kind"] == "Invalid" and result["retryable"] is False
    for w in words:
        assert w in result["message"]
    assert scheduled(evs) == []


async def test_unknown_function_is_not_found_at_once(make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local v1, e1 = funcs.call("app:missing", 1)
      local v2, e2 = funcs.call("missing")
      local f, e3 = funcs.async("other.ns:missing")
      return { e1:kind(), e1:message(), e2:kind(), e2:message(), e3:kind(), e1:retryable(), e3:retryable() }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result[0] == "NotFound" and "app:missing" in result[1]
    assert result[2] == "NotFound" and "app:missing" in result[3]
    assert result[4] == "NotFound"
    assert result[5] is True and result[6] is True  # retryable, as in Wippy: a later call may find it deployed
    assert scheduled(evs) == []


async def test_a_relative_function_id_resolves_in_the_workflows_namespace(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    files = {
        "app.yaml": TEMPORAL_ENTRIES,
        "flows.yaml": """
            version: "1.0"
            namespace: app.flows
            entries:
              - name: wf
                kind: workflow.lua
                source: "return function() return { funcs.call('which'), funcs.call('app.other:which') } end"
                modules: [funcs]
              - name: which
                kind: function.lua
                source: "return function() return 'flows' end"
        """,
        "other.yaml": """
            version: "1.0"
            namespace: app.other
            entries:
              - name: which
                kind: function.lua
                source: "return function() return 'other' end"
        """,
    }
    app = make_app(files)
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app.flows:wf")
        assert await result_of(rt, pid) == ["flows", "other"]
        assert [t for t, _ in scheduled(await events(rt, pid))] == ["app.flows:which", "app.other:which"]


# -- time -------------------------------------------------------------------------

async def test_sleep_takes_duration_strings_and_constants(make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      assert(time.sleep("200ms"))
      assert(time.sleep(0.2 * time.SECOND))
      assert(time.sleep(150 * time.MILLISECOND))
      local bad, err = time.sleep("soon")
      local p1 = time.parse_duration("1h30m")
      local p2 = time.parse_duration("24h")
      local p3 = time.parse_duration("500ms")
      local p4 = time.parse_duration(2 * time.MINUTE)
      local nope, perr = time.parse_duration("1 hour")
      return { p1 = p1, p2 = p2, p3 = p3, p4 = p4, bad = bad == nil, kind = err:kind(), message = err:message(),
               pnope = nope == nil, pkind = perr:kind(),
               consts = { time.SECOND, time.MINUTE, time.HOUR, time.MILLISECOND } }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result["p1"] == 5400 * 10**9
    assert result["p2"] == 24 * 3600 * 10**9
    assert result["p3"] == 500 * 10**6
    assert result["p4"] == 120 * 10**9
    assert result["bad"] is True and result["kind"] == "Invalid" and "soon" in result["message"]
    assert result["pnope"] is True and result["pkind"] == "Invalid"
    assert result["consts"] == [10**9, 60 * 10**9, 3600 * 10**9, 10**6]
    timers = [e.timer_started_event_attributes.start_to_fire_timeout.ToMilliseconds()
              for e in of_type(evs, "TIMER_STARTED")]
    assert timers == [200, 200, 150]
    assert len(of_type(evs, "TIMER_FIRED")) == 3


async def test_now_uuid_random_and_os_time_are_the_same_on_replay(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    # The values are taken before the sleep and sent to an activity (its
    # input is recorded in history); the workflow returns them after the
    # sleep. With no workflow cache, that last activation replays the whole
    # history, so the returned values are the replay's.
    src = """
    return function()
      local function sample()
        local t = time.now()
        return { now = t:unix_nano(), now_s = t:unix(), v4 = uuid.v4(), v7 = uuid.v7(),
                 rand = math.random(1, 1000000000), float = math.random(),
                 os_time = os.time(), os_date = os.date("%Y-%m-%d %H:%M:%S"), rfc = t:format() }
      end
      local before = sample()
      funcs.call("echo", before)
      time.sleep("200ms")
      local after = sample()
      return { before = before, after = after }
    end
    """
    app = make_lua_app(make_app, {"wf": src}, worker_options={"max_cached_workflows": 0})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        result = await result_of(rt, pid)
        handle = await rt.handle(pid)
        history = await handle.fetch_history()
        evs = list(history.events)
    before, after = result["before"], result["after"]
    ((_, (recorded,)),) = scheduled(evs)
    assert recorded == before  # the first run and the replay took the same values
    # workflow time: the first value is the first workflow task's start, and it moves with the timer
    assert after["now"] > before["now"]
    assert after["v4"] != before["v4"] and after["v7"] != before["v7"]
    first_task = of_type(evs, "WORKFLOW_TASK_STARTED")[0].event_time.ToNanoseconds()
    assert before["now"] == first_task
    t = datetime.datetime.fromtimestamp(before["now_s"], datetime.timezone.utc)
    assert before["os_time"] == before["now_s"]
    assert before["os_date"] == t.strftime("%Y-%m-%d %H:%M:%S")
    assert before["rfc"].startswith(t.strftime("%Y-%m-%dT%H:%M:%S"))
    assert uuid.UUID(before["v4"]).version == 4
    v7 = uuid.UUID(before["v7"])
    assert v7.version == 7 and v7.int >> 80 == before["now"] // 1_000_000
    # and the Temporal SDK's replayer agrees the code replays this history. The
    # dynamic class finds its code by the task queue the activation runs on,
    # which in a Replayer is "replay-<build_id>", not the recorded one.
    build_id = f"replay-check-{task_queue}"
    book = CodeBook(load(app))
    replayer = Replayer(workflows=[workflow_class(f"replay-{build_id}", book, WorkflowSettings())],
                        build_id=build_id)
    outcome = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert outcome.replay_failure is None


# -- failing workflows ---------------------------------------------------------------

async def test_a_lua_error_fails_the_workflow_with_message_and_traceback(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    local function main()
      funcs.call("echo", 1)
      error("boom")
    end
    return function()
      main()
    end
    """
    app = make_lua_app(make_app, {"wf": src})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        cause = await failure_of(rt, pid)
        desc = await (await rt.handle(pid)).describe()
    assert "wf.lua:3: boom" in cause.message
    assert "stack traceback" in cause.message
    assert "wf.lua:6" in cause.message  # the caller's frame
    assert cause.type == "LuaError"
    assert desc.status == WorkflowExecutionStatus.FAILED


async def test_returning_nil_err_fails_the_workflow_with_err(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      return nil, errors.new{kind = "Declined", message = "no", details = { order = 7 }}
    end
    """
    app = make_lua_app(make_app, {"wf": src})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        cause = await failure_of(rt, pid)
    assert cause.message == "no"
    assert cause.type == "Declined"
    assert cause.non_retryable
    assert list(cause.details) == [{"order": 7}]


async def test_a_result_that_cannot_cross_to_json_fails_invalid_naming_the_path(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      return { ok = true, order = { items = { 1, 2 }, callback = function() end } }
    end
    """
    app = make_lua_app(make_app, {"wf": src})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        cause = await failure_of(rt, pid)
    assert cause.type == "Invalid"
    assert "result.order.callback" in cause.message
    assert "function" in cause.message


async def test_an_argument_that_cannot_cross_to_json_is_invalid_at_the_call_site(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function()
      local t = {}
      t.self = t
      local v1, e1 = funcs.call("echo", { f = print })
      local v2, e2 = funcs.call("echo", 1, t)
      return { e1:kind(), e1:message(), e2:kind(), e2:message() }
    end
    """
    result, evs = await run_flow(make_app, temporal_address, src)
    assert result[0] == "Invalid" and "argument 1.f" in result[1]
    assert result[2] == "Invalid" and "argument 2.self" in result[3] and "itself" in result[3]
    assert scheduled(evs) == []


# -- input from any client, values ------------------------------------------------

async def test_input_from_the_temporal_cli_arrives_as_a_table(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    src = """
    return function(input)
      return { kind = type(input), n = input.n * 2, names = input.names, first = input.names[1] }
    end
    """
    app = make_lua_app(make_app, {"wf": src})
    wid = f"cli-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        out = await asyncio.to_thread(
            subprocess.run,
            [temporal_binary(), "workflow", "start", "--type", "app:wf", "--task-queue", task_queue,
             "--workflow-id", wid, "--input", '{"n": 2, "names": ["a", "b"]}', "--address", temporal_address],
            capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        client = await rt.client("app:client")
        result = await asyncio.wait_for(client.get_workflow_handle(wid).result(), HANG)
    assert result == {"kind": "table", "n": 4, "names": ["a", "b"], "first": "a"}


async def test_empty_table_is_an_object_and_json_array_a_list(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    src = """
    return function(input)
      return {
        echoed = input,
        array = funcs.call("shape", json.array()),
        object = funcs.call("shape", {}),
        items = funcs.call("shape", input.items),
        back = funcs.call("echo", input),
        list_back = funcs.call("echo", json.array()),
        n_items = #input.items,
      }
    end
    """
    value = {"items": [], "meta": {}, "nested": [[], {}]}
    result, evs = await run_flow(make_app, temporal_address, src, value)
    assert result["echoed"] == value
    assert result["back"] == value
    assert result["array"] == "[]"
    assert result["object"] == "{}"
    assert result["items"] == "[]"
    assert result["list_back"] == []
    assert result["n_items"] == 0
    inputs = [args for _, args in scheduled(evs)]
    assert inputs[:3] == [[[]], [{}], [[]]]


async def test_a_workflow_echoing_empty_lists_returns_them(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    result, _ = await run_flow(make_app, temporal_address, "return function(v) return v end", {"items": []})
    assert result == {"items": []}


# -- where activations run ------------------------------------------------------------

@pytest.mark.parametrize("inline", [None, False])
async def test_activations_run_on_the_event_loop_unless_told_otherwise(
        make_app: Callable[..., Path], temporal_address: str, caplog: pytest.LogCaptureFixture,
        inline: bool | None) -> None:
    """By default an activation runs on the worker's event loop (this test's thread), through the
    worker's own executor, with no thread hand-off per activation; ``inline_activations: false``
    hands each to the SDK's pool."""
    src = """
    return function()
      logger.info("before the call")
      local v = funcs.call("echo", 7)
      logger.info("after the call")
      return v
    end
    """
    options = None if inline is None else {"inline_activations": inline}
    app = make_lua_app(make_app, {"wf": src}, worker_options=options)
    loop_thread = threading.get_ident()
    with caplog.at_level(logging.INFO, logger="moontide.workflow"):
        async with running(app, temporal_address) as rt:
            assert await result_of(rt, await rt.spawn("app:wf")) == 7
            executor = rt.workers["app:worker"].config()["workflow_task_executor"].inner
    records = [r for r in caplog.records if r.name == "moontide.workflow" and "the call" in r.getMessage()]
    assert len(records) == 2, [r.getMessage() for r in records]
    if inline is None:
        assert [r.thread for r in records] == [loop_thread] * 2
        assert isinstance(executor, OnLoopExecutor) and executor.calls >= 2  # the two activations, an eviction
    else:
        assert not isinstance(executor, OnLoopExecutor)
        assert all(r.thread != loop_thread and r.threadName.startswith("temporal_workflow_") for r in records), \
            [r.threadName for r in records]


async def test_an_activation_longer_than_the_sdk_deadlock_timeout_completes_on_the_loop(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """An activation may legitimately run for seconds below a raised instruction budget (~3 s of Lua here):
    on the event loop the SDK's 2 s deadlock timeout around it never fires (docs/architecture.md)."""
    src = """
    return function()
      local x = 0
      for i = 1, 120000000 do x = x + i % 7 end
      time.sleep("10ms")
      return x
    end
    """
    app = make_lua_app(make_app, {"wf": src}, worker_options={"instruction_budget": 2_000_000_000})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        assert await result_of(rt, pid) == sum(i % 7 for i in range(1, 8)) * (120000000 // 7) + \
            sum(i % 7 for i in range(1, 120000000 % 7 + 1))
        evs = await events(rt, pid)
        executor = rt.workers["app:worker"].config()["workflow_task_executor"].inner
    assert of_type(evs, "WORKFLOW_TASK_FAILED") == []
    assert isinstance(executor, OnLoopExecutor) and executor.calls >= 2


# -- runaway code -------------------------------------------------------------------

async def _task_failure(rt: AppRuntime, pid: Pid) -> str:
    async def failed() -> list[HistoryEvent]:
        return of_type(await events(rt, pid), "WORKFLOW_TASK_FAILED")

    evs = await eventually(failed, bool, what="a WorkflowTaskFailed event")
    return str(evs[0].workflow_task_failed_event_attributes.failure.message)


@pytest.mark.parametrize("bomb,words", [
    ("local n = 0\n  while true do n = n + 1 end", ["instruction budget", "runaway"]),
    ('local t = {}\n  while true do t[#t + 1] = string.rep("x", 1024 * 1024) .. #t end', ["memory limit", "MiB"]),
])
async def test_runaway_code_fails_the_task_and_the_worker_serves_others(
        make_app: Callable[..., Path], temporal_address: str, bomb: str, words: list[str]) -> None:
    src = f"""
    return function()
      funcs.call("echo", 1)
      {bomb}
    end
    """
    app = make_lua_app(make_app, {"bomb": src, "fine": "return function(x) return funcs.call('echo', x) end"})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:bomb")
        try:
            message = await _task_failure(rt, pid)
            for w in words:
                assert w in message, message
            assert "TMPRL1101" not in message  # not the SDK's deadlock detector
            other = await rt.spawn("app:fine", None, "still here")
            assert await result_of(rt, other) == "still here"
            desc = await (await rt.handle(pid)).describe()
            assert desc.status == WorkflowExecutionStatus.RUNNING
        finally:
            await rt.terminate(pid, "test over")
