"""process.spawn from Python, the CLI, workflows and function code: options, idempotency, conflicts."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Callable

import pytest
from temporalio.api.enums.v1 import EventType

from _issue3 import history, make_flows, run_cli_async, wait_blocking
from moontide_testing import running
from moontide import errors
from moontide.runtime import AppRuntime, Pid

# Waits for a "go" message; returns its spawn argument and the message.
FLOW = """
return function(arg)
  local msg = process.inbox():receive()
  return { arg = arg, topic = msg:topic(), data = msg:payload():data() }
end
"""


def _wid(prefix: str = "order") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_spawn_with_options(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FLOW})
    wid = _wid()
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", "app:worker", "first", options={
            "workflow.id": wid, "workflow.execution_timeout": "1h", "workflow.memo": {"owner": "ana"},
            "workflow.retry_policy": {"maximum_attempts": 2}})
        assert pid == Pid("app:client", "app:worker", wid)
        assert str(pid) == f"{{app:client@app:worker|{wid}}}"
        desc = await (await rt.handle(pid)).describe()
        assert desc.raw_description.execution_config.workflow_execution_timeout.ToTimedelta() == timedelta(hours=1)
        memo = await desc.memo()
        assert memo["owner"] == "ana" and "moontide.code" in memo
        started = (await history(await rt.client("app:client"), wid))[0]
        assert started.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        assert started.workflow_execution_started_event_attributes.retry_policy.maximum_attempts == 2
        await rt.send(pid, "go", {"n": 1})
        assert await rt.result(pid) == {"arg": "first", "topic": "go", "data": {"n": 1}}
        with pytest.raises(errors.Invalid, match="unknown spawn option 'colour'"):
            await rt.spawn("app:flow", None, options={"colour": "red"})
        with pytest.raises(errors.Invalid, match="id_conflict_policy"):
            await rt.spawn("app:flow", None, options={"workflow.id_conflict_policy": "sometimes"})


async def test_same_explicit_id_twice(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FLOW})
    wid = _wid()
    async with running(app, temporal_address) as rt:
        first = await rt.spawn("app:flow", None, "first", workflow_id=wid)
        run_id = (await (await rt.handle(first)).describe()).run_id
        # an explicit ID is a singleton (Wippy's default): the second start answers the running one
        again = await rt.spawn("app:flow", None, "second", workflow_id=wid)
        assert again == first
        assert (await (await rt.handle(again)).describe()).run_id == run_id
        # unless the options ask for the error
        for options in ({"workflow.id_conflict_policy": "fail"},
                        {"workflow.execution_error_when_already_started": True}):
            with pytest.raises(errors.MoontideError) as info:
                await rt.spawn("app:flow", None, "third", workflow_id=wid, options=options)
            assert info.value.kind == "AlreadyExists"
            assert wid in info.value.message
        await wait_blocking(rt, first, "receive")
        await rt.send(first, "go", True)
        assert await rt.result(first) == {"arg": "first", "topic": "go", "data": True}
        client = await rt.client("app:client")
        starts = [e for e in await history(client, wid)
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
        assert len(starts) == 1
        # closed: the ID may be used again (default reuse policy), unless told otherwise
        with pytest.raises(errors.MoontideError) as info:
            await rt.spawn("app:flow", None, "fourth",
                           options={"workflow.id": wid, "workflow.id_reuse_policy": "reject_duplicate"})
        assert info.value.kind == "AlreadyExists"
        reused = await rt.spawn("app:flow", None, "fifth", workflow_id=wid)
        assert (await (await rt.handle(reused)).describe()).run_id != run_id


async def test_spawn_and_send_from_the_cli(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FLOW})
    wid = _wid()
    common = ("--app", str(app), "--temporal", temporal_address)
    async with running(app, temporal_address) as rt:
        outs = [await run_cli_async("spawn", "app:flow", "app:worker", '"cli"', "--id", wid, "--options",
                                    '{"workflow.execution_timeout": "10m"}', *common)
                for _ in range(2)]
        for out in outs:
            assert out.returncode == 0, out.stderr
        assert outs[0].stdout.strip() == outs[1].stdout.strip() == f"{{app:client@app:worker|{wid}}}"
        pid = outs[0].stdout.strip()
        conflict = await run_cli_async("spawn", "app:flow", "app:worker", "--id", wid, "--options",
                                       '{"workflow.id_conflict_policy": "fail"}', *common)
        assert conflict.returncode != 0 and "AlreadyExists" in conflict.stderr
        await wait_blocking(rt, pid, "receive")
        sent = await run_cli_async("send", pid, "go", '{"approved": true}', *common)
        assert sent.returncode == 0, sent.stderr
        assert await rt.result(pid) == {"arg": "cli", "topic": "go", "data": {"approved": True}}


async def test_spawn_options_inside_a_workflow(make_app: Callable[..., Path], temporal_address: str) -> None:
    parent = """
    return function(child_id)
      local pid, err = process.with_options{ ["workflow.id"] = child_id, ["workflow.execution_timeout"] = "10m" }
        :spawn("flow", "worker", "from parent")
      assert(pid, err)
      assert(process.send(pid, "go", { from_parent = true }))
      local ev = process.events():receive()
      local _, bad = process.with_options{ ["workflow.id_conflict_policy"] = "sometimes" }:spawn("flow", "worker")
      local _, unknown = process.with_options{ colour = "red" }:spawn("flow", "worker")
      return { pid = pid, exit = ev.result.value, bad = tostring(bad), unknown = tostring(unknown),
               invalid = errors.is(bad, errors.INVALID) and errors.is(unknown, errors.INVALID) }
    end
    """
    app = make_flows(make_app, {"parent": parent, "flow": FLOW})
    child = _wid("child")
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:parent", None, child))
    assert out["pid"] == f"{{app:client@app:worker|{child}}}"
    assert out["exit"] == {"arg": "from parent", "topic": "go", "data": {"from_parent": True}}
    assert out["invalid"] is True
    assert "workflow.id_conflict_policy" in out["bad"] and "use_existing, fail, terminate_existing" in out["bad"]
    assert "unknown spawn option 'colour'" in out["unknown"]


async def test_spawn_and_send_from_function_code(make_app: Callable[..., Path], temporal_address: str) -> None:
    starter = """
    return function(wid)
      local pid, err = process.with_options{ ["workflow.id"] = wid }:spawn("app:flow", "app:worker", "from a function")
      if not pid then return nil, err end
      local ok, serr = process.send(pid, "go", { by = "function" })
      if not ok then return nil, serr end
      return pid
    end
    """
    caller = """
    return function(wid)
      local pid, err = funcs.new():with_options{ ["activity.retry_policy"] = { maximum_attempts = 1 } }:call("starter", wid)
      if not pid then return nil, err end
      return pid
    end
    """
    app = make_flows(make_app, {"flow": FLOW, "caller": caller}, {"starter": starter})
    wid = _wid("fn")
    async with running(app, temporal_address) as rt:
        pid = await rt.result(await rt.spawn("app:caller", None, wid))
        assert pid == f"{{app:client@app:worker|{wid}}}"
        assert await rt.result(pid) == {"arg": "from a function", "topic": "go", "data": {"by": "function"}}


async def test_a_serving_runtime_starts_its_workflows_eagerly(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """Its first workflow task comes back in the start's reply (no poll), so the
    task's started event carries no worker version, which a polled task does."""
    app = make_flows(make_app, {"flow": FLOW})
    async with running(app, temporal_address) as rt:
        async with AppRuntime(app, temporal=temporal_address) as caller:  # serves nothing: its starts are polled
            eager = await rt.spawn("app:flow", "app:worker", 1)
            polled = await caller.spawn("app:flow", "app:worker", 2)
            for pid in (eager, polled):
                await wait_blocking(rt, pid, "receive")
                await rt.send(pid, "go", {})
        client = await rt.client("app:client")
        started = {}
        for pid in (eager, polled):
            assert await rt.result(pid)
            events = await history(client, pid.workflow_id)
            first_task = next(e for e in events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED)
            started[pid] = first_task.workflow_task_started_event_attributes.HasField("worker_version")
    assert started == {eager: False, polled: True}


async def test_result_waits_on_the_run_this_runtime_started(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """``result`` of a pid this runtime spawned is that execution's result, even once another
    starter reuses the workflow ID; a runtime that did not start it gets the ID's latest run."""
    app = make_flows(make_app, {"flow": FLOW})
    wid = _wid()
    async with running(app, temporal_address) as rt:
        async with AppRuntime(app, temporal=temporal_address) as other:
            first = await rt.spawn("app:flow", None, "mine", workflow_id=wid)
            await wait_blocking(rt, first, "receive")
            await rt.send(first, "go", 1)
            assert await other.result(first) == {"arg": "mine", "topic": "go", "data": 1}
            reused = await other.spawn("app:flow", None, "theirs", workflow_id=wid)
            assert reused == first  # the same pid: a pid names a workflow ID
            await wait_blocking(rt, reused, "receive")
            await rt.send(reused, "go", 2)
            assert await other.result(reused) == {"arg": "theirs", "topic": "go", "data": 2}
            assert await rt.result(first) == {"arg": "mine", "topic": "go", "data": 1}
