"""Cancellation and termination: saga compensation on cancel, CANCELED/TERMINATED endings, from Python, Lua and CLI."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from temporalio.client import WorkflowExecutionStatus

from _issue3 import activities, make_flows, replay_failure, run_cli_async, wait_blocking
from moontide_testing import running
from moontide import errors
from moontide.runtime import AppRuntime, Pid

# Reserve and charge, then block (sleep, activity or receive); on cancel, undo in reverse order.
SAGA = """
return function(where, give_up)
  local undo = {}
  for _, step in ipairs({ "reserve", "charge" }) do
    assert(funcs.call("echo", step))
    undo[#undo + 1] = step
  end
  local ok, err
  if where == "sleep" then
    ok, err = time.sleep("1h")
  elseif where == "activity" then
    ok, err = funcs.new():with_options{ start_to_close_timeout = "1h" }:call("nap", "20s")
  else
    local _, _, rerr = process.inbox():receive()
    err = rerr
  end
  if err == nil then return { finished = true } end
  local ev = channel.select{ process.events():case_receive(), default = true }
  local undone = {}
  for i = #undo, 1, -1 do
    undone[#undone + 1] = assert(funcs.call("undo", undo[i]))
  end
  if give_up then return nil, err end
  local e = ev.value or {}
  return { kind = err:kind(), message = err:message(), event = e.kind, reason = e.reason, by = e.from, undone = undone }
end
"""


async def _status(rt: AppRuntime, pid: Pid) -> WorkflowExecutionStatus | None:
    return (await (await rt.handle(pid)).describe()).status


@pytest.mark.parametrize("where,blocking", [("sleep", "sleeping until"), ("activity", "waiting for nap"),
                                            ("receive", "receive on inbox")])
async def test_cancel_during_a_saga_runs_the_compensations(
        make_app: Callable[..., Path], temporal_address: str, where: str, blocking: str) -> None:
    app = make_flows(make_app, {"saga": SAGA})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:saga", None, where, False)
        await wait_blocking(rt, pid, blocking)
        await rt.cancel(pid, "customer changed their mind")
        out = await rt.result(pid)
        client = await rt.client("app:client")
        acts = await activities(client, pid.workflow_id)
        status = await _status(rt, pid)
    assert out["kind"] == "Canceled"
    assert out["event"] == "pid.cancel"
    assert out["undone"] == ["undone charge", "undone reserve"]
    expected = ["app:echo", "app:echo", *(["app:nap"] if where == "activity" else []), "app:undo", "app:undo"]
    assert acts == expected
    assert status == WorkflowExecutionStatus.COMPLETED  # the Lua chose to return a value
    assert out["reason"] == "customer changed their mind"  # Temporal's cancel request carries the reason
    assert out.get("by") is None  # Python named no sender
    if where != "activity":  # a blocked sleep/receive says why it was canceled
        assert "customer changed their mind" in out["message"]


async def test_returning_the_canceled_error_ends_as_canceled(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"saga": SAGA})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:saga", None, "activity", True)
        await wait_blocking(rt, pid, "waiting for nap")
        await rt.cancel(pid)
        with pytest.raises(errors.MoontideError):
            await rt.result(pid)
        assert await _status(rt, pid) == WorkflowExecutionStatus.CANCELED
        client = await rt.client("app:client")
        assert (await activities(client, pid.workflow_id))[-2:] == ["app:undo", "app:undo"]


async def test_a_canceled_error_without_a_cancel_request_is_a_failure(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function() return nil, errors.new{ kind = "Canceled", message = "not really" } end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(pid)
        assert info.value.kind == "Canceled"
        assert await _status(rt, pid) == WorkflowExecutionStatus.FAILED


async def test_terminate_ends_at_once(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"saga": SAGA})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:saga", None, "sleep", False)
        await wait_blocking(rt, pid, "sleeping until")
        await rt.terminate(pid, "enough")
        with pytest.raises(errors.MoontideError):
            await rt.result(pid)
        assert await _status(rt, pid) == WorkflowExecutionStatus.TERMINATED
        client = await rt.client("app:client")
        assert await activities(client, pid.workflow_id) == ["app:echo", "app:echo"]  # no compensation ran


async def test_process_cancel_from_lua(make_app: Callable[..., Path], temporal_address: str) -> None:
    canceller = """
    return function(pid)
      local ok, err = process.cancel(pid, "from another workflow")
      local bad_ok, bad = process.cancel("not a pid")
      local _, missing = process.cancel("{app:client@app:worker|nobody-home}")
      return { ok = ok, err = err and err:message(), bad = bad:kind(), missing = missing:kind(), me = process.pid() }
    end
    """
    app = make_flows(make_app, {"saga": SAGA, "canceller": canceller})
    async with running(app, temporal_address) as rt:
        victim = await rt.spawn("app:saga", None, "receive", False)
        await wait_blocking(rt, victim, "receive on inbox")
        out = await rt.result(await rt.spawn("app:canceller", None, str(victim)))
        saga = await rt.result(victim)
        assert await replay_failure(app, rt, victim) is None  # the pid.cancel event comes back the same
    assert out["ok"] is True, out
    assert out["bad"] == "Invalid"
    assert out["missing"] == "NotFound"
    assert saga["kind"] == "Canceled"
    assert saga["event"] == "pid.cancel"
    assert (saga["reason"], saga["by"]) == ("from another workflow", out["me"])  # who canceled, and why
    assert saga["undone"] == ["undone charge", "undone reserve"]
    assert "from another workflow" in saga["message"]


async def test_python_cancel_can_name_its_sender(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"saga": SAGA})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:saga", None, "receive", False)
        await wait_blocking(rt, pid, "receive on inbox")
        await rt.cancel(pid, "shutting down", sender="{app:client@app:worker|the-boss}")
        out = await rt.result(pid)
    assert (out["event"], out["reason"], out["by"]) == ("pid.cancel", "shutting down",
                                                        "{app:client@app:worker|the-boss}")


async def test_cancel_and_terminate_from_the_cli(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"saga": SAGA})
    async with running(app, temporal_address) as rt:
        canceled = await rt.spawn("app:saga", None, "sleep", True)
        terminated = await rt.spawn("app:saga", None, "sleep", True)
        for pid in (canceled, terminated):
            await wait_blocking(rt, pid, "sleeping until")
        out = await run_cli_async("cancel", str(canceled), "--reason", "cli", "--app", str(app),
                                  "--temporal", temporal_address)
        assert out.returncode == 0, out.stderr
        out = await run_cli_async("terminate", str(terminated), "--reason", "cli", "--app", str(app),
                                  "--temporal", temporal_address)
        assert out.returncode == 0, out.stderr
        for pid in (canceled, terminated):
            with pytest.raises(errors.MoontideError):
                await rt.result(pid)
        assert await _status(rt, canceled) == WorkflowExecutionStatus.CANCELED
        assert await _status(rt, terminated) == WorkflowExecutionStatus.TERMINATED
        client = await rt.client("app:client")
        assert (await activities(client, canceled.workflow_id))[-2:] == ["app:undo", "app:undo"]
        missing = await run_cli_async("cancel", "{app:client@app:worker|no-such-workflow}", "--app", str(app),
                                      "--temporal", temporal_address)
        assert missing.returncode != 0
        assert "no-such-workflow" in missing.stderr


# Waiting on process.events() itself: the cancel arrives as the event, as in processes.
EVENT_WAITER = """
return function(how)
  if how == "receive" then
    local ev, err = process.events():receive()
    if not ev then return { error = err:kind() } end
    return { kind = ev.kind, reason = ev.reason }
  end
  local r = channel.select{ time.after("1h"):case_receive(), process.events():case_receive() }
  return { channel_is_events = r.channel == process.events(), kind = r.value.kind, reason = r.value.reason }
end
"""


@pytest.mark.parametrize("how", ["receive", "select"])
async def test_a_wait_on_events_gets_the_cancel_as_its_event(
        make_app: Callable[..., Path], temporal_address: str, how: str) -> None:
    app = make_flows(make_app, {"waiter": EVENT_WAITER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:waiter", None, how)
        await wait_blocking(rt, pid, "events")
        await rt.cancel(pid, "stop")
        out = await rt.result(pid)
        assert await _status(rt, pid) == WorkflowExecutionStatus.COMPLETED
    expected = {"kind": "pid.cancel", "reason": "stop"}
    assert out == (expected if how == "receive" else {**expected, "channel_is_events": True})
