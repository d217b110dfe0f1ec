"""Children across the parent's end: continue_as_new, parent_close_policy, spawn_linked / spawn_monitored."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from temporalio.client import WorkflowExecutionStatus

from _issue3 import eventually, make_flows, replay_failure, wait_blocking
from moontide_testing import running
from moontide import errors
from moontide.runtime import AppRuntime

# Waits for one message (or a cancel), returns what it got.
WAITER = """
return function()
  local msg, _, err = process.inbox():receive()
  if err then return nil, err end
  return { got = msg.v }
end
"""

CHILD = """
return function(fail)
  if fail then return nil, errors.new{ kind = "Invalid", message = "child gave up" } end
  return "child done"
end
"""


async def _status(rt: AppRuntime, pid: str) -> WorkflowExecutionStatus | None:
    return (await (await rt.handle(pid)).describe()).status


async def test_continue_as_new_with_running_children_is_refused_clearly(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    # Temporal would apply the parent close policy to the run that ends (checked against the
    # server: terminate -> TERMINATED, request_cancel -> CANCELED, abandon -> still RUNNING).
    flow = """
    return function()
      local child = assert(process.spawn("waiter", "worker"))
      local ok, err = pcall(workflow.continue_as_new)
      process.inbox():receive()  -- the test reads the status meanwhile
      process.send(child, "go", { v = 1 })
      local ev = process.events():receive()
      return { ok = ok, kind = err:kind(), message = err:message(), child = child, exit = ev.result.value }
    end
    """
    app = make_flows(make_app, {"flow": flow, "waiter": WAITER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        status = await wait_blocking(rt, pid, "receive on inbox")
        await rt.send(pid, "release")
        out = await rt.result(pid)
        assert await replay_failure(app, rt, pid) is None
    assert status["children"] == [out["child"]]  # the status query lists running children
    assert out["ok"] is False and out["kind"] == "Invalid"
    assert out["child"] in out["message"]
    assert '["workflow.parent_close_policy"] = "abandon"' in out["message"]
    assert out["exit"] == {"got": 1}  # the run went on, the child with it


async def test_an_abandoned_child_outlives_continue_as_new_and_the_next_run_reaches_it(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function(child)
      if child then
        assert(process.send(child, "go", { v = "from run 2" }))
        return { child = child, run = workflow.info().continued_run_id ~= nil }
      end
      child = assert(process.with_options{ parent_close_policy = "abandon" }:spawn("waiter", "worker"))
      workflow.continue_as_new(child)
    end
    """
    app = make_flows(make_app, {"flow": flow, "waiter": WAITER})
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:flow", None))
        assert out["run"] is True
        assert await rt.result(out["child"]) == {"got": "from run 2"}


async def test_parent_close_policy_option_is_checked(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local _, bad = process.with_options{ parent_close_policy = "linger" }:spawn("child", "worker")
      return bad:message()
    end
    """
    app = make_flows(make_app, {"flow": flow, "child": CHILD})
    async with running(app, temporal_address) as rt:
        assert "terminate, request_cancel, abandon" in await rt.result(await rt.spawn("app:flow", None))
        # a top-level workflow has no parent: the option has no effect there (as in Wippy), a bad value is refused
        with pytest.raises(errors.Invalid, match="terminate, request_cancel, abandon"):
            await rt.spawn("app:child", None, options={"workflow.parent_close_policy": "linger"})
        pid = await rt.spawn("app:child", None, options={"workflow.parent_close_policy": "abandon"})
        assert await rt.result(pid) == "child done"


async def test_a_failed_linked_child_fails_a_parent_that_does_not_handle_events(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      process.spawn_linked("child", "worker", true)
      time.sleep("1h")  -- interrupted by the link
      return "not reached"
    end
    """
    app = make_flows(make_app, {"flow": flow, "child": CHILD})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(pid)
        assert await _status(rt, str(pid)) == WorkflowExecutionStatus.FAILED
        assert await replay_failure(app, rt, pid) is None  # the link fails it again the same way
    assert info.value.kind == "Terminated"
    assert "linked process {app:client@app:worker|" in info.value.message and "child gave up" in info.value.message


async def test_a_parent_that_handles_events_gets_link_down_and_exit(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      process.trap_links()  -- or wait on process.events() first: failures come as events from now on
      local bad = assert(process.spawn_linked("child", "worker", true))
      local good = assert(process.spawn_linked("child", "worker", false))
      local watched = assert(process.spawn_monitored("child", "worker", true))
      local got = {}
      for _ = 1, 3 do
        local ev = process.events():receive()
        got[ev.from == bad and "bad" or ev.from == good and "good" or "watched"] = ev
      end
      return got
    end
    """
    app = make_flows(make_app, {"flow": flow, "child": CHILD})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        got = await rt.result(pid)
        assert await replay_failure(app, rt, pid) is None
    assert got["bad"]["kind"] == "pid.link.down"
    assert got["bad"]["result"]["error"]["message"] == "child gave up"
    assert got["good"]["kind"] == "pid.exit" and got["good"]["result"] == {"value": "child done"}
    assert got["watched"]["kind"] == "pid.exit"  # monitored: the end, failed or not, as pid.exit
    assert got["watched"]["result"]["error"]["kind"] == "Invalid"


async def test_the_parents_end_cancels_a_linked_child_and_terminates_a_plain_one(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      return { linked = assert(process.spawn_linked("waiter", "worker")),
               plain = assert(process.spawn("waiter", "worker")),
               abandoned = assert(process.with_options{ parent_close_policy = "abandon" }:spawn("waiter", "worker")) }
    end
    """
    app = make_flows(make_app, {"flow": flow, "waiter": WAITER})
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:flow", None))
        # the linked child sees the cancel (its receive returns Canceled), and ends canceled
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(out["linked"])
        assert info.value.kind == "Canceled", (info.value.kind, info.value.message)
        await eventually(lambda: _status(rt, out["plain"]), lambda s: s == WorkflowExecutionStatus.TERMINATED,
                         what="the plain child terminated")
        assert await _status(rt, out["abandoned"]) == WorkflowExecutionStatus.RUNNING
        await rt.send(out["abandoned"], "go", {"v": "still here"})
        assert await rt.result(out["abandoned"]) == {"got": "still here"}
