"""Long-running workflows: continue-as-new, workflow.info(), workflow.version, the history-size warning."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path
from typing import Callable

import pytest
from temporalio.client import Client

from _issue3 import activities, dev_server_with, make_flows, wait_blocking
from moontide_testing import running
from moontide.runtime import Pid


async def test_continue_as_new_loops_to_a_final_result(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function(n, runs)
      runs = runs or {}
      runs[#runs + 1] = workflow.info().run_id
      if n < 4 then workflow.continue_as_new(n + 1, runs) end
      return { n = n, runs = runs, memo_kept = workflow.info().continued_run_id ~= nil }
    end
    """
    app = make_flows(make_app, {"loop": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:loop", None, 1, options={"memo": {"owner": "ana"}})
        out = await rt.result(pid)
        desc = await (await rt.handle(pid)).describe()
        memo = await desc.memo()
    assert out["n"] == 4
    assert len(set(out["runs"])) == 4
    assert out["runs"][-1] == desc.run_id
    assert out["memo_kept"] is True
    assert memo["owner"] == "ana"  # user memo survives continue-as-new, as does the code pin
    assert "moontide.code" in memo


async def test_unread_messages_move_on_to_the_next_run(make_app: Callable[..., Path], temporal_address: str) -> None:
    # One message per run; the rest pile up while the first run is in an activity.
    flow = """
    return function(seen)
      seen = seen or {}
      local msg = process.inbox():receive()
      seen[#seen + 1] = { msg.i, msg:from() or false }
      if msg.last then return seen end
      if #seen == 1 then funcs.call("nap", "3s") end
      workflow.continue_as_new(seen)
    end
    """
    app = make_flows(make_app, {"entity": flow})
    sender = "{app:client@app:worker|friend}"
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:entity", None)
        await rt.send(pid, "item", {"i": 1})
        await wait_blocking(rt, pid, "waiting for nap")
        for i in range(2, 7):
            await rt.send(pid, "item", {"i": i, "last": i == 6}, sender=sender)
        out = await asyncio.wait_for(rt.result(pid), 30)
    assert out == [[1, False], *([i, sender] for i in range(2, 7))]


async def test_unread_process_events_move_on_to_the_next_run(make_app: Callable[..., Path],
                                                             temporal_address: str) -> None:
    flow = """
    return function(child)
      if child then  -- the next run: the child's end, which the first run did not read
        return { child = child, ev = process.events():receive() }
      end
      child = assert(process.spawn("child", "worker", 21))
      funcs.call("nap", "3s")  -- the child ends meanwhile
      workflow.continue_as_new(child)
    end
    """
    app = make_flows(make_app, {"parent": flow, "child": "return function(n) return n * 2 end"})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:parent", None)
        out = await asyncio.wait_for(rt.result(pid), 60)
    assert out["ev"] == {"kind": "pid.exit", "from": out["child"], "result": {"value": 42}}


async def test_workflow_info(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function(first)
      local info = workflow.info()
      if first then
        funcs.call("echo", 1)
        local later = workflow.info()
        info.history_grew = later.history_length > info.history_length
        workflow.continue_as_new(false)
      end
      return info
    end
    """
    app = make_flows(make_app, {"info": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:info", None, True)
        info = await rt.result(pid)
        desc = await (await rt.handle(pid)).describe()
    assert info["workflow_id"] == pid.workflow_id
    assert info["run_id"] == desc.run_id
    assert info["continued_run_id"] and info["continued_run_id"] != info["run_id"]
    assert info["pid"] == str(pid)
    assert info["attempt"] == 1
    assert isinstance(info["history_length"], int) and info["history_length"] >= 3
    assert info["workflow_type"] == "app:info"
    assert info["namespace"] == "default"
    assert info["task_queue"] == desc.task_queue
    assert info["continue_as_new_suggested"] is False
    assert "parent" not in info
    assert len(info["code"]) == 64


V1 = """
return function()
  funcs.call("echo", "old path")
  process.inbox():receive()
  return { version = 0 }
end
"""
V2 = """
return function()
  local v = workflow.version("use-new-path", 1, 2)
  funcs.call("echo", v == 1 and "old path" or "new path")
  process.inbox():receive()
  return { version = v }
end
"""


async def test_workflow_version(make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    app = make_flows(make_app, {"flow": V1})
    # Started by a plain Temporal client: no code pin, so each worker runs its current code.
    client = await Client.connect(temporal_address)
    before = f"before-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        await client.start_workflow("app:flow", id=before, task_queue=task_queue)
        await wait_blocking(rt, f"{{app:client@app:worker|{before}}}", "receive")
    (app / "flow.lua").write_text(V2.lstrip())  # the change is deployed
    async with running(app, temporal_address) as rt:
        after = await rt.spawn("app:flow", None)
        old: Pid = Pid.parse(f"{{app:client@app:worker|{before}}}")
        for pid in (old, after):
            await wait_blocking(rt, pid, "receive")
            await rt.send(pid, "go", True)
        assert await rt.result(old) == {"version": 1}
        assert await rt.result(after) == {"version": 2}
        assert await activities(client, before) == ["app:echo"]


async def test_history_past_the_suggestion_logs_a_clear_error(
        make_app: Callable[..., Path], caplog: pytest.LogCaptureFixture) -> None:
    flow = """
    return function()
      -- ~6 events per call: well past the server's suggestion of 40 events
      for i = 1, 12 do funcs.call("echo", i) end
      local info = workflow.info()
      return { suggested = info.continue_as_new_suggested, length = info.history_length }
    end
    """
    app = make_flows(make_app, {"grow": flow})
    with dev_server_with("--dynamic-config-value", "limit.historyCount.suggestContinueAsNew=40") as address:
        with caplog.at_level(logging.ERROR, logger="moontide.workflow"):
            async with running(app, address) as rt:
                out = await rt.result(await rt.spawn("app:grow", None))
    assert out["suggested"] is True
    assert out["length"] >= 40
    messages = [r.getMessage() for r in caplog.records if r.name == "moontide.workflow"]
    # once, not on every later task; twice at most, when the task that logged it timed out
    # (a busy machine, the 1 s sticky timeout) and ran again live
    assert len(messages) in (1, 2), messages
    assert "past Temporal's suggested limit" in messages[0]
    assert "workflow.continue_as_new" in messages[0]
