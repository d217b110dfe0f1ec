"""process.terminate from workflow Lua: a system activity on the worker's client, recorded in history."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from temporalio.client import WorkflowExecutionStatus

from _issue3 import activities, make_flows, replay_failure, wait_blocking
from moontide_testing import running

SLEEPER = """
return function()
  time.sleep("1h")
  return "woke up"
end
"""


async def test_a_workflow_terminates_another_and_its_own_child(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    killer = """
    return function(victim)
      local child = assert(process.spawn("sleeper", "worker"))
      local ok, err = process.terminate(victim, "no longer needed")
      local ok_child = process.terminate(child)
      local ev = process.events():receive()  -- the child's end, as for any child
      local _, missing = process.terminate("{app:client@app:worker|nobody-home}")
      local _, foreign = process.terminate("{other:client@other:worker|x}")
      local _, bad = process.terminate("not a pid")
      return { ok = ok, err = err, ok_child = ok_child, child = child, ev = ev, missing = missing:kind(),
               foreign = { foreign:kind(), foreign:message() }, bad = bad:kind() }
    end
    """
    app = make_flows(make_app, {"sleeper": SLEEPER, "killer": killer})
    async with running(app, temporal_address) as rt:
        victim = await rt.spawn("app:sleeper", None)
        await wait_blocking(rt, victim, "sleeping until")
        pid = await rt.spawn("app:killer", None, str(victim))
        out = await rt.result(pid)
        client = await rt.client("app:client")
        victim_desc = await (await rt.handle(victim)).describe()
        child_desc = await (await rt.handle(out["child"])).describe()
        acts = await activities(client, pid.workflow_id)
        assert await replay_failure(app, rt, pid) is None
        reason = [e.workflow_execution_terminated_event_attributes.reason
                  async for e in (await rt.handle(victim)).fetch_history_events()
                  if e.HasField("workflow_execution_terminated_event_attributes")]
    assert out["ok"] is True and out.get("err") is None, out
    assert out["ok_child"] is True
    assert victim_desc.status == WorkflowExecutionStatus.TERMINATED
    assert reason == ["no longer needed"]
    assert child_desc.status == WorkflowExecutionStatus.TERMINATED
    assert out["ev"]["kind"] == "pid.exit" and out["ev"]["from"] == out["child"]
    assert out["ev"]["result"]["error"]["kind"] == "Terminated"
    assert out["missing"] == "NotFound"  # an answer, after no retries
    assert out["foreign"][0] == "Invalid" and "app:client" in out["foreign"][1]
    assert out["bad"] == "Invalid"
    # each terminate is an activity in the caller's history (replay does not terminate again)
    assert acts == ["moontide.terminate"] * 3
