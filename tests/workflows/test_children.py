"""process.spawn / process.exec inside a workflow: child workflows, pid.exit events, and a worker SIGKILL."""

from __future__ import annotations

import asyncio
import re
import uuid
from pathlib import Path
from typing import Any, Callable

from _issue3 import eventually, lua_state, make_flows, worker_process
from moontide_testing import running
from moontide.runtime import AppRuntime, Pid

CHILD = """
return function(x, fail)
  if fail then return nil, errors.new{ kind = "Invalid", message = "bad input " .. tostring(x) } end
  return { double = x * 2, parent = workflow.info().parent }
end
"""

# Waits for one message, returns its name and the message's v.
WAITER = """
return function(name)
  local msg = process.inbox():receive()
  return { name = name, got = msg.v }
end
"""


async def test_spawn_a_child_and_get_its_exit_event(make_app: Callable[..., Path], temporal_address: str) -> None:
    parent = """
    return function()
      local ok_pid = assert(process.spawn("child", "worker", 21))
      local bad_pid = assert(process.spawn("app:child", "app:worker", 1, true))
      local events = {}
      for _ = 1, 2 do
        local ev = process.events():receive()
        events[ev.from == ok_pid and "ok" or ev.from == bad_pid and "bad" or ev.from] = ev
      end
      return { me = process.pid(), ok_pid = ok_pid, bad_pid = bad_pid, ok = events.ok, bad = events.bad,
               exit = process.event.EXIT }
    end
    """
    app = make_flows(make_app, {"parent": parent, "child": CHILD})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:parent", None)
        out = await rt.result(pid)
        child_status = await rt.status(out["ok_pid"])
    assert out["me"] == str(pid)
    wid = re.escape(pid.workflow_id)
    assert re.fullmatch(r"\{app:client@app:worker\|" + wid + r"\.child-\d+\}", out["ok_pid"])
    assert Pid.parse(out["ok_pid"]).workflow_id != Pid.parse(out["bad_pid"]).workflow_id
    assert out["exit"] == "pid.exit"
    assert out["ok"] == {"kind": "pid.exit", "from": out["ok_pid"],
                         "result": {"value": {"double": 42, "parent": pid.workflow_id}}}
    bad = out["bad"]
    assert (bad["kind"], bad["from"]) == ("pid.exit", out["bad_pid"])
    assert "value" not in bad["result"]
    assert bad["result"]["error"]["kind"] == "Invalid"
    assert "bad input 1" in bad["result"]["error"]["message"]
    assert child_status["status"] == "COMPLETED"
    assert child_status["workflow_type"] == "app:child"


async def test_exec_waits_for_the_child(make_app: Callable[..., Path], temporal_address: str) -> None:
    parent = """
    return function(exec_id)
      local value, err = process.exec("child", "worker", 5)
      local named = process.with_options{ workflow_id = exec_id, execution_timeout = "10m" }:exec("child", "worker", 7)
      local none, bad = process.exec("child", "worker", 6, true)
      local missing, nf = process.exec("no_such_flow", "worker")
      local notw, unav = process.exec("child", "echo")
      return { value = value, named = named, none = none == nil, bad = { bad:kind(), bad:message() }, nf = nf:kind(),
               unav = unav:kind() }
    end
    """
    app = make_flows(make_app, {"parent": parent, "child": CHILD})
    async with running(app, temporal_address) as rt:
        exec_id = f"named-{pid_suffix()}"
        pid = await rt.spawn("app:parent", None, exec_id)
        out = await rt.result(pid)
        named = await rt.status(f"{{app:client@app:worker|{exec_id}}}")
    assert out["value"] == {"double": 10, "parent": pid.workflow_id}
    assert out["named"] == {"double": 14, "parent": pid.workflow_id}
    assert (named["status"], named["workflow_type"]) == ("COMPLETED", "app:child")
    assert out["none"] is True
    assert out["bad"][0] == "Invalid" and "bad input 6" in out["bad"][1]
    assert out["nf"] == "NotFound"
    assert out["unav"] == "Unavailable"


def pid_suffix() -> str:
    return uuid.uuid4().hex[:8]


async def _children(rt: AppRuntime, pid: Pid, n: int) -> list[str]:
    async def probe() -> list[str]:
        desc = await (await rt.handle(pid)).describe()
        return sorted(c.workflow_id for c in desc.raw_description.pending_children)

    return await eventually(probe, lambda ids: len(ids) == n, what=f"{n} pending children")


async def test_parent_worker_sigkilled_while_children_run(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    parent = """
    return function()
      local kid = assert(process.spawn("waiter", "worker", "spawned"))
      local value, err = process.exec("waiter", "worker", "executed")
      assert(value, err)
      local ev = process.events():receive()
      return { exec = value, event = ev.result.value, from_kid = ev.from == kid, kind = ev.kind }
    end
    """
    app = make_flows(make_app, {"parent": parent, "waiter": WAITER})
    client_only = AppRuntime(app, temporal=temporal_address)
    async with worker_process(app, temporal_address) as worker:
        pid = await client_only.spawn("app:parent", None)
        kids = await _children(client_only, pid, 2)
        for kid in kids:
            await eventually(lambda kid=kid: lua_state(client_only, f"{{app:client@app:worker|{kid}}}"),
                             lambda s: "receive" in s.get("blocking", ""), what=f"{kid} in receive")
        await eventually(lambda: lua_state(client_only, pid), lambda s: "child" in s.get("blocking", ""),
                         what="parent waiting for its child")
        worker.kill()
        for n, kid in enumerate(kids):
            await client_only.send(f"{{app:client@app:worker|{kid}}}", "finish", {"v": n + 1})
    async with running(app, temporal_address) as rt:
        out: dict[str, Any] = await asyncio.wait_for(rt.result(pid), 60)
    values = {out["exec"]["name"]: out["exec"]["got"], out["event"]["name"]: out["event"]["got"]}
    assert sorted(values) == ["executed", "spawned"]
    assert sorted(values.values()) == [1, 2]
    assert out["from_kid"] is True
    assert out["kind"] == "pid.exit"
