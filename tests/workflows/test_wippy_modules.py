"""Wippy's ctx, crypto, uuid and payload modules in workflows, on a real Temporal dev server.

The context (en/lua/core/context.md) reaches a workflow from whoever starts
it (memo ``moontide.ctx``), its activities (header ``moontide-ctx``), local
activities and child workflows, through with_context or inherited, and
survives continue-as-new. Random values and encryption's nonce (crypto.md:
"random generation and encryption run as recorded side effects") are the
same when a fresh worker process replays the history after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from moontide_testing import TEMPORAL_ENTRIES, WorkerProcess, eventually, replay_in_fresh_process, running
from moontide.runtime import AppRuntime, Pid

HANG = 90

ENTRIES = TEMPORAL_ENTRIES + """\
    worker_options: {sticky_schedule_to_start_timeout: 1s}
  - name: show
    kind: function.lua
    source: "return function(tag) return { tag = tag, all = ctx.all() } end"
    modules: [ctx]
  - name: local_show
    kind: function.lua
    source: "return function() return ctx.all() end"
    modules: [ctx]
    meta: {temporal: {activity: {worker: worker, local: true}}}
  - name: relay
    kind: function.lua
    source: "return function() return funcs.new():with_context({hop = 2}):call('app:show', 'relayed') end"
    modules: [ctx, funcs]
  - name: child
    kind: workflow.lua
    source: "return function() return { all = ctx.all(), fn = funcs.call('show', 'from child').all } end"
    modules: [ctx, funcs]
  - name: wf
    kind: workflow.lua
    source: file://wf.lua
    modules: [ctx, funcs, process, channel, errors]
  - name: again
    kind: workflow.lua
    source: |
      return function(n)
        if n < 2 then workflow.continue_as_new(n + 1) end
        return { n = n, all = ctx.all(), fn = funcs.call("show").all }
      end
    modules: [ctx, funcs, workflow]
"""

WF = """
return function()
  local exec = funcs.new():with_context({trace_id = "t1", flags = {dark_mode = true}})
  local fut = exec:async("show", "async")
  local out = {
    mine = ctx.all(), one = ctx.get("request_id"),
    plain = funcs.call("show", "plain"),
    with = exec:call("show", "with"),
    relayed = exec:call("relay"),
    localized = funcs.new():with_context({where = "local"}):call("local_show"),
    child = process.with_context({step = "child"}):exec("app:child", "app:worker"),
  }
  fut:response():receive()
  out.async = fut:result():data()
  local pid = process.spawn_monitored("app:child", "app:worker")   -- inherits the workflow's context
  out.spawned = process.events():receive().result.value
  local _, missing = ctx.get("nope")
  out.missing = errors.is(missing, errors.NOT_FOUND)
  return out
end
"""


def app_of(make_app: Callable[..., Path], extra: str = "", files: dict[str, str] | None = None) -> Path:
    return make_app({"app.yaml": textwrap.dedent(ENTRIES).strip("\n") + "\n" + extra, "wf.lua": WF, **(files or {})})


async def history(rt: AppRuntime, pid: Pid | str) -> list[HistoryEvent]:
    return [e async for e in (await rt.handle(pid)).fetch_history_events()]


def of_type(evs: list[HistoryEvent], name: str) -> list[HistoryEvent]:
    kind = EventType.Value("EVENT_TYPE_" + name)
    return [e for e in evs if e.event_type == kind]


async def test_the_context_reaches_activities_children_and_spawns(make_app: Callable[..., Path],
                                                                  temporal_address: str) -> None:
    app = app_of(make_app)
    base = {"request_id": "r1", "user": {"id": 7}}
    with_ = {**base, "trace_id": "t1", "flags": {"dark_mode": True}}
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:wf", None, context=base)
        out = await asyncio.wait_for(rt.result(pid), HANG)
        evs = await history(rt, pid)
    assert out["mine"] == base and out["one"] == "r1" and out["missing"] is True
    assert out["plain"] == {"tag": "plain", "all": base}
    assert out["with"] == {"tag": "with", "all": with_}
    assert out["async"] == {"tag": "async", "all": with_}
    assert out["relayed"] == {"tag": "relayed", "all": {**with_, "hop": 2}}   # a function passes it on
    assert out["localized"] == {**base, "where": "local"}                      # a local activity too
    child = {**base, "step": "child"}
    assert out["child"] == {"all": child, "fn": child}                          # and a child workflow's activities
    assert out["spawned"] == {"all": base, "fn": base}
    # where it travels: the start's memo, each activity's header, each child's memo
    started = of_type(evs, "WORKFLOW_EXECUTION_STARTED")[0].workflow_execution_started_event_attributes
    assert json.loads(started.memo.fields["moontide.ctx"].data) == base
    headers = {json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data):
               json.loads(e.activity_task_scheduled_event_attributes.header.fields["moontide-ctx"].data)
               for e in of_type(evs, "ACTIVITY_TASK_SCHEDULED")
               if e.activity_task_scheduled_event_attributes.input.payloads}
    assert headers == {"plain": base, "with": with_, "async": with_}
    children = [json.loads(e.start_child_workflow_execution_initiated_event_attributes.memo.fields["moontide.ctx"].data)
                for e in of_type(evs, "START_CHILD_WORKFLOW_EXECUTION_INITIATED")]
    assert children == [child, base]


async def test_the_context_reaches_what_coroutines_start_side_by_side(make_app: Callable[..., Path],
                                                                        temporal_address: str) -> None:
    # three coroutines wait at once (each request started as an operation of its own, op.start):
    # each call, future and child still carries the context it was made with
    files = {"side.lua": """
        return function()
          local results = channel.new(3)
          local exec = funcs.new():with_context({trace_id = "t1"})
          coroutine.spawn(function() results:send({ call = exec:call("show", "call") }) end)
          coroutine.spawn(function()
            local f = exec:with_context({hop = "async"}):async("show", "async")
            f:response():receive()
            results:send({ async = f:result():data() })
          end)
          coroutine.spawn(function()
            results:send({ child = process.with_context({step = "child"}):exec("app:child", "app:worker") })
          end)
          local out = { plain = funcs.call("show", "plain") }
          for _ = 1, 3 do
            for k, v in pairs(results:receive()) do out[k] = v end
          end
          return out
        end
    """}
    extra = """\
  - name: side
    kind: workflow.lua
    source: file://side.lua
    modules: [ctx, funcs, process, channel]
"""
    app = app_of(make_app, extra, files)
    base = {"request_id": "r1"}
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:side", None, context=base)
        out = await asyncio.wait_for(rt.result(pid), HANG)
        evs = await history(rt, pid)
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
    assert out["plain"] == {"tag": "plain", "all": base}
    assert out["call"] == {"tag": "call", "all": {**base, "trace_id": "t1"}}
    assert out["async"] == {"tag": "async", "all": {**base, "trace_id": "t1", "hop": "async"}}
    child = {**base, "step": "child"}
    assert out["child"] == {"all": child, "fn": child}
    headers = {json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data):
               json.loads(e.activity_task_scheduled_event_attributes.header.fields["moontide-ctx"].data)
               for e in of_type(evs, "ACTIVITY_TASK_SCHEDULED")
               if e.activity_task_scheduled_event_attributes.input.payloads}
    assert headers == {"plain": base, "call": out["call"]["all"], "async": out["async"]["all"]}


async def test_no_context_is_empty_and_continue_as_new_keeps_it(make_app: Callable[..., Path],
                                                               temporal_address: str) -> None:
    app = app_of(make_app)
    async with running(app, temporal_address) as rt:
        plain = await rt.spawn("app:again", None, 2)
        assert await asyncio.wait_for(rt.result(plain), HANG) == {"n": 2, "all": {}, "fn": {}}
        pid = await rt.spawn("app:again", None, 0, context={"tenant": "acme"})
        out = await asyncio.wait_for(rt.result(pid), HANG)
    assert out == {"n": 2, "all": {"tenant": "acme"}, "fn": {"tenant": "acme"}}   # two runs later


async def test_a_context_that_cannot_cross_is_refused_at_the_spawn(make_app: Callable[..., Path],
                                                                   temporal_address: str) -> None:
    from moontide import errors

    app = app_of(make_app)
    async with running(app, temporal_address) as rt:
        with pytest.raises(errors.Invalid, match="context"):
            await rt.spawn("app:wf", None, context={"bad": float("nan")})


async def test_a_spawner_carries_options_name_messages_and_context_to_a_child(make_app: Callable[..., Path],
                                                                             temporal_address: str) -> None:
    extra = textwrap.dedent("""\
      - name: combined
        kind: workflow.lua
        source: file://combined.lua
      - name: named
        kind: workflow.lua
        source: |
          return function()
            local msg = process.inbox():receive()
            return { all = ctx.all(), topic = msg:topic(), data = msg:payload():data(), from = msg:from() }
          end
        modules: [ctx]
    """)
    combined = """
    return function(wid)
      local sp = process.with_options({["workflow.execution_timeout"] = "1m"}):with_name(wid)
      local a = sp:with_context({step = "a"}):with_message("go", {n = 1}):spawn_monitored("app:named", "app:worker")
      local first = process.events():receive().result.value
      local b = process.with_context({step = "b"}):with_options({["workflow.execution_timeout"] = 120000})
        :with_message("go", 2):with_name(wid .. "-b"):spawn_monitored("app:named", "app:worker")
      local second = process.events():receive().result.value
      return { a = a, b = b, first = first, second = second, me = process.pid() }
    end
    """
    app = app_of(make_app, "\n".join("  " + line if line else line for line in extra.splitlines()) + "\n",
                 {"combined.lua": textwrap.dedent(combined)})
    wid = f"combined-{uuid.uuid4().hex[:8]}"
    base = {"request_id": "r1"}
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:combined", None, wid, context=base)
        out = await asyncio.wait_for(rt.result(pid), HANG)
        evs = await history(rt, pid)
    assert out["a"].endswith(f"|{wid}}}") and out["b"].endswith(f"|{wid}-b}}")
    assert out["first"] == {"all": {**base, "step": "a"}, "topic": "go", "data": {"n": 1}, "from": out["me"]}
    assert out["second"] == {"all": {**base, "step": "b"}, "topic": "go", "data": 2, "from": out["me"]}
    started = [e.start_child_workflow_execution_initiated_event_attributes
               for e in of_type(evs, "START_CHILD_WORKFLOW_EXECUTION_INITIATED")]
    assert [(s.workflow_id, s.workflow_execution_timeout.seconds, json.loads(s.memo.fields["moontide.ctx"].data))
            for s in started] == [(wid, 60, {**base, "step": "a"}), (f"{wid}-b", 120, {**base, "step": "b"})]


# -- determinism: a fresh worker process replays the same values --------------------

REPLAYED = """
return function()
  local function sample()
    local key = crypto.random.bytes(32)
    local sealed = crypto.encrypt.aes("attack at dawn", key, "aad")
    return {
      bytes = base64.encode(crypto.random.bytes(16)), str = crypto.random.string(12, "abcdef0123456789"),
      uuid = crypto.random.uuid(), v1 = uuid.v1(), key = base64.encode(key), sealed = base64.encode(sealed),
      opened = crypto.decrypt.aes(sealed, key, "aad"), all = ctx.all(),
      jwt = crypto.jwt.encode({sub = "u", exp = time.now():unix() + 3600}, key),
      yaml = payload.new({a = {1, 2}}):transcode(payload.format.YAML):data(),
    }
  end
  local before = sample()
  funcs.call("echo", before)      -- recorded in history
  time.sleep("2s")                -- the first worker is killed here; another replays what came before
  return { before = before, after = sample() }
end
"""


@pytest.fixture
def workers(tmp_path: Path, temporal_address: str) -> Iterator[Callable[[Path], Awaitable[WorkerProcess]]]:
    started: list[WorkerProcess] = []

    async def start(app: Path) -> WorkerProcess:
        w = WorkerProcess(app, temporal_address, tmp_path / f"worker-{len(started) + 1}.log")
        started.append(w)
        return await w.start()

    yield start
    for w in started:
        w.stop()


async def test_random_values_and_nonces_are_the_same_on_replay_in_a_fresh_process(
        make_app: Callable[..., Path], temporal_address: str,
        workers: Callable[[Path], Awaitable[WorkerProcess]]) -> None:
    extra = textwrap.dedent("""\
      - name: replayed
        kind: workflow.lua
        source: file://replayed.lua
        modules: [crypto, uuid, base64, ctx, funcs, time, payload]
      - name: echo
        kind: function.lua
        source: "return function(v) return v end"
    """)
    app = app_of(make_app, "\n".join("  " + line if line else line for line in extra.splitlines()) + "\n",
                 {"replayed.lua": REPLAYED})
    first = await workers(app)
    async with AppRuntime(app, temporal=temporal_address) as rt:
        pid = await rt.spawn("app:replayed", None, context={"request_id": "r9"})

        async def timer_started() -> list[HistoryEvent]:
            return of_type(await history(rt, pid), "TIMER_STARTED")
        await eventually(timer_started, bool, what="the workflow sleeping after its activity", timeout=HANG)
        first.kill()
        await workers(app)   # a new process: new string hashes, new addresses, a cold cache
        out = await asyncio.wait_for(rt.result(pid), HANG)
        evs = await history(rt, pid)
    before, after = out["before"], out["after"]
    recorded = json.loads(of_type(evs, "ACTIVITY_TASK_SCHEDULED")[0]
                          .activity_task_scheduled_event_attributes.input.payloads[0].data)
    assert before == recorded                    # the replay drew the same bytes, strings, UUIDs and nonce
    assert before["opened"] == "attack at dawn" and before["all"] == {"request_id": "r9"}
    assert before["yaml"] == {"a": [1, 2]}
    assert len(base64.b64decode(before["bytes"])) == 16 and len(before["str"]) == 12
    for k in ("bytes", "str", "uuid", "v1", "key", "sealed"):
        assert after[k] != before[k], k          # and later draws move on
    assert after["all"] == before["all"]
    assert len(of_type(evs, "WORKFLOW_TASK_FAILED")) == 0
