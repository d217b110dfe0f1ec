"""Bad input fails cleanly on Temporal (issue 11, item 3), against the session's real dev server.

Input Moontide's own senders never make (they refuse it: see the CLI tests) comes
here from a plain Temporal client, or from a worker that is not Moontide's on a
queue of its own (``FOREIGN``): a 10,000-deep array, bytes that are not UTF-8, a
lone surrogate. A workflow's input fails the execution with ``Invalid`` on its
first task; a function's input fails its activity, not retried; a result coming
back is ``nil, err`` for the Lua that asked; a message is dropped and counted,
and the messages after it arrive. Values up to ``MAX_DEPTH`` cross every layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Worker

from _issue3 import eventually, history, lua_state, make_flows, replay_failure, run_cli_async, wait_blocking
from moontide import errors
from moontide.runtime import AppRuntime, Pid, WorkflowFailed, load
from moontide.values import MAX_DEPTH
from moontide.workflows import build_worker
from moontide_testing import nested, running

#: Guards against today's failure mode (an execution left open, a task failing every retry).
WAIT = 45
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"

#: JSON payload bytes no Moontide sender makes, and what the error says about each (its problem and path)
BAD = {
    "deep": (b"[" * 10_000 + b"]" * 10_000, "[1][1][1][1][1][1][1][1]...(244 more)...[1][1][1][1]: " + TOO_DEEP),
    "not-utf8": (b'{"name": "caf\xe9"}', ".name: string is not valid UTF-8 (byte 0xe9)"),
    "surrogate": (b'{"tags": ["a", "\\ud800"]}', ".tags[2]: string holds a lone surrogate \\ud800"),
    "past-the-limit": (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "[1][1][1][1]...(244 more)...[1][1][1][1]: "
                       + TOO_DEEP),
}


def raw(case: str) -> RawValue:
    return RawValue(Payload(metadata={"encoding": b"json/plain"}, data=BAD[case][0]))


ECHO_FLOW = "return function(v) return v end"


# -- workflow input ---------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(BAD))
async def test_workflow_input_that_cannot_be_decoded_fails_the_execution_with_invalid(
        case: str, make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    app = make_flows(make_app, {"echo_flow": ECHO_FLOW})
    wid = f"bad-input-{case}-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        client = await rt.client("app:client")
        await client.start_workflow("app:echo_flow", raw(case), id=wid, task_queue=task_queue)
        with pytest.raises(WorkflowFailed) as info:
            await asyncio.wait_for(rt.result(Pid("app:client", "app:worker", wid)), WAIT)
        events = await history(client, wid)
    assert info.value.kind == "Invalid"
    assert info.value.message.startswith("app:echo_flow: its input cannot be decoded: argument 1")
    assert BAD[case][1] in info.value.message
    # decided on the first workflow task: none failed and was retried
    assert not [e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


# -- messages -----------------------------------------------------------------------------------

COLLECT = """
return function(n)
  local got = {}
  for _ = 1, n do got[#got + 1] = process.inbox():receive():payload():data() end
  return got
end
"""


async def test_a_message_that_cannot_be_decoded_is_dropped_counted_and_never_blocks_the_next(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"collect": COLLECT})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:collect", None, 3)
        await wait_blocking(rt, pid, "receive on inbox")
        handle = await rt.handle(pid)
        await rt.send(pid, "m", {"n": 1})
        for case in BAD:  # as a plain Temporal client can send them
            await handle.signal("m", raw(case))
        await rt.send(pid, "m", {"n": 2})
        state = await eventually(lambda: lua_state(rt, pid), lambda s: s.get("messages_dropped") == len(BAD),
                                 timeout=WAIT, what="the bad messages dropped")
        assert state["messages_received"] == 2
        # Moontide's own senders refuse such a message before it leaves
        with pytest.raises(errors.Invalid, match="send to .*: payload: string holds a lone surrogate"):
            await rt.send(pid, "m", "\ud800")
        with pytest.raises(errors.Invalid, match=TOO_DEEP):
            await rt.send(pid, "m", nested(MAX_DEPTH + 1))
        refused = await run_cli_async("send", str(pid), "m", '"\\ud800"', "--app", str(app),
                                      "--temporal", temporal_address)
        assert refused.returncode == 2, refused
        assert "lone surrogate \\ud800" in refused.stderr and "Traceback" not in refused.stderr
        # and `moontide status` still answers, with the count
        status = await run_cli_async("status", str(pid), "--app", str(app), "--temporal", temporal_address)
        assert status.returncode == 0, status.stderr
        assert re.search(r"messages: 2 received, 0 not yet read, 4 dropped", status.stdout), status.stdout
        await rt.send(pid, "m", {"n": 3})
        result = await asyncio.wait_for(rt.result(pid), WAIT)
        # a replay decides the same from the same payloads: drops them again, takes the same path
        replayed = await replay_failure(app, rt, pid)
    assert result == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert replayed is None


# -- results and function input from a worker that is not Moontide's ------------------------

@activity.defn(name="app:echo")
async def foreign_echo(case: str) -> RawValue:
    return raw(case)


@workflow.defn(name="app:child", sandboxed=False)
class ForeignChild:
    @workflow.run
    async def run(self, case: str) -> RawValue:
        return raw(case)


@workflow.defn(name="test.call_function", sandboxed=False)
class CallFunction:
    """Calls Lua function ``app:echo`` with input a Moontide workflow would never send."""

    @workflow.run
    async def run(self, queue: str, case: str) -> dict[str, Any]:
        try:
            await workflow.execute_activity(
                "app:echo", raw(case), task_queue=queue, start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=50), maximum_attempts=3))
        except ActivityError as e:
            cause = e.cause
            assert isinstance(cause, ApplicationError)
            return {"type": cause.type, "message": cause.message, "retry_state": e.retry_state.name
                    if e.retry_state else None}
        return {"type": None}


PARENT = """
return function(queue, case)
  local function shown(v, err) return err and { kind = err:kind(), message = err:message() } or { value = v } end
  local out = {}
  out.activity = shown(funcs.new():with_options{task_queue = queue}:call("echo", case))
  out.exec = shown(process.exec("child", "foreign", case))
  process.spawn("child", "foreign", case)
  local ev = process.events():receive()
  out.spawn = { kind = ev.kind, error = ev.result.error and ev.result.error:kind(),
                message = ev.result.error and ev.result.error:message() }
  return out
end
"""


@contextlib.asynccontextmanager
async def with_foreign_worker(app_dir: Path, address: str, foreign: str) -> AsyncIterator[AppRuntime]:
    """Moontide's worker for ``app:worker`` only, and a plain Python worker on ``foreign``."""
    client = await Client.connect(address)
    app = load(app_dir)
    ours = build_worker(client, app, app.get("app:worker"), code_store=app_dir / ".moontide" / "code")
    theirs = Worker(client, task_queue=foreign, workflows=[ForeignChild, CallFunction], activities=[foreign_echo])
    async with ours, theirs:
        yield AppRuntime(app_dir, temporal=address)


@pytest.mark.parametrize("case", ["deep", "not-utf8", "surrogate"])
async def test_results_and_function_input_that_cannot_be_decoded_are_invalid_errors(
        case: str, make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    foreign = f"{task_queue}-foreign"
    app = make_flows(make_app, {"parent": PARENT, "child": ECHO_FLOW})
    with open(app / "app.yaml", "a") as f:
        f.write(f"  - name: foreign\n    kind: temporal.worker\n    client: client\n    task_queue: {foreign}\n")
    async with with_foreign_worker(app, temporal_address, foreign) as rt:
        pid = await rt.spawn("app:parent", "app:worker", foreign, case)
        out = await asyncio.wait_for(rt.result(pid), WAIT)
        client = await rt.client("app:client")
        called = await asyncio.wait_for(client.execute_workflow(
            "test.call_function", args=[task_queue, case], id=f"call-{uuid.uuid4().hex[:8]}", task_queue=foreign),
            WAIT)
    problem = BAD[case][1]
    # an activity result: funcs.call gets nil, err
    assert out["activity"]["kind"] == "Invalid"
    assert out["activity"]["message"].startswith("funcs.call app:echo: its result cannot be decoded: result")
    assert problem in out["activity"]["message"]
    # a child's result: process.exec gets nil, err; a spawned child's pid.exit carries it
    for got in (out["exec"], out["spawn"]):
        assert (got.get("kind"), got.get("error")) in (("Invalid", None), ("pid.exit", "Invalid"))
        assert got["message"].startswith("child app:child: its result cannot be decoded: result")
        assert problem in got["message"]
    # a function's input: the activity fails as Invalid, not retried
    assert called["type"] == "Invalid", called
    assert called["message"].startswith("app:echo: its input cannot be decoded: argument 1")
    assert problem in called["message"]
    assert called["retry_state"] == "NON_RETRYABLE_FAILURE"


# -- depth: up to the limit everywhere, clearly past it ---------------------------------------

DEEP_FLOW = """
local function depth(t) local n = 0 while type(t) == "table" do n = n + 1 t = t[1] end return n end
return function(v)
  local back = assert(funcs.call("echo", v))                 -- a function's argument and result
  local child = assert(process.exec("echo_flow", "worker", back))  -- a child's input and result
  local msg = process.inbox():receive():payload():data()    -- a message
  local again = assert(json.decode(assert(json.encode(msg))))
  local far = {}
  for _ = 2, 1000 do far = { far } end
  local _, arg_err = funcs.call("echo", { again })           -- one level more, each way
  local _, far_err = funcs.call("echo", far)                 -- past Python's own recursion limit
  local _, res_err = funcs.call("deeper", again)
  local _, enc_err = json.encode({ again })
  local function shown(e) return e:kind() .. " " .. e:message() end
  return {
    depths = { depth(v), depth(back), depth(child), depth(again) },
    errors = { shown(arg_err), shown(far_err), shown(res_err), shown(enc_err) },
  }
end
"""
DEEP_RESULT = """
return function(n)
  local t = {}
  for _ = 2, n do t = { t } end
  return t
end
"""


async def test_values_up_to_the_limit_cross_every_layer_and_deeper_ones_fail_clearly(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"deep": DEEP_FLOW, "echo_flow": ECHO_FLOW, "deep_result": DEEP_RESULT},
                     {"deeper": "return function(v) return { v } end"})
    at_limit = nested(MAX_DEPTH)
    async with running(app, temporal_address) as rt:
        echoed = await asyncio.wait_for(rt.result(await rt.spawn("app:echo_flow", None, at_limit)), WAIT)
        pid = await rt.spawn("app:deep", None, at_limit)
        await wait_blocking(rt, pid, "receive on inbox")
        await rt.send(pid, "m", at_limit)
        out = await asyncio.wait_for(rt.result(pid), WAIT)
        # past the limit from Python: refused before anything is started or sent
        with pytest.raises(errors.Invalid, match=rf"spawn of app:echo_flow: argument 1\[1\].*{TOO_DEEP}"):
            await rt.spawn("app:echo_flow", None, nested(MAX_DEPTH + 1))
        # a result far past it (Python's own recursion limit is ~1,000): the execution fails, once
        with pytest.raises(WorkflowFailed) as info:
            await asyncio.wait_for(rt.result(await rt.spawn("app:deep_result", None, 1000)), WAIT)
    assert echoed == at_limit
    assert out["depths"] == [MAX_DEPTH] * 4
    arg_err, far_err, res_err, enc_err = out["errors"]
    assert arg_err.startswith("Invalid argument 1[1][1]") and TOO_DEEP in arg_err
    assert far_err.startswith("Invalid argument 1[1][1]") and TOO_DEEP in far_err
    assert res_err.startswith("Invalid result[1][1]") and TOO_DEEP in res_err
    assert enc_err.startswith("Internal value[1][1]") and TOO_DEEP in enc_err  # json.encode: Wippy's kind
    assert info.value.kind == "Invalid"
    assert "the workflow's result cannot cross to JSON: result[1][1]" in info.value.message
    assert TOO_DEEP in info.value.message
    assert json.dumps(echoed) == "[" * MAX_DEPTH + "]" * MAX_DEPTH
