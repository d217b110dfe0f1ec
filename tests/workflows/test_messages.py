"""Messages (Temporal signals) into Lua workflows: order, exactly-once, crash safety, the message API."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

from temporalio.client import Client

from _issue3 import eventually, lua_state, make_flows, signal_names, temporal_cli, wait_blocking, worker_process
from moontide_testing import running
from moontide.runtime import AppRuntime

# Receives n messages, each {i = k}; then checks that nothing else is waiting.
COLLECT = """
return function(n, busy)
  if busy then funcs.call("nap", busy) end
  local got, from = {}, {}
  for _ = 1, n do
    local msg = process.inbox():receive()
    got[#got + 1] = msg.i
    from[#from + 1] = msg:from() or false
  end
  local extra = channel.select{ process.inbox():case_receive(), default = true }
  return { got = got, from = from, extra = extra.default ~= true }
end
"""


def _one_to(n: int) -> list[int]:
    return list(range(1, n + 1))


async def test_100_messages_sent_while_busy_arrive_in_order_exactly_once(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"collect": COLLECT})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:collect", None, 100, "6s")
        await wait_blocking(rt, pid, "waiting for nap")
        for i in _one_to(100):
            await rt.send(pid, "item", {"i": i})
        # all 100 arrived while the workflow was still inside its activity
        state = await lua_state(rt, pid)
        assert "waiting for nap" in state["blocking"]
        assert state["messages_waiting"] == 100
        result = await rt.result(pid)
        client = await rt.client("app:client")
        names = await signal_names(client, pid.workflow_id)
    assert result["got"] == _one_to(100)
    assert result["extra"] is False
    assert names == ["item"] * 100


async def test_100_messages_sent_while_the_worker_is_down_arrive_in_order(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"collect": COLLECT})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:collect", None, 100)
        await wait_blocking(rt, pid, "receive on inbox")
    # no worker serves the task queue now
    sender = "{app:client@app:worker|the-sender}"
    client_only = AppRuntime(app, temporal=temporal_address)
    for i in _one_to(100):
        await client_only.send(pid, "item", {"i": i}, sender=sender)
    async with running(app, temporal_address) as rt:
        result = await rt.result(pid)
    assert result["got"] == _one_to(100)
    assert result["from"] == [sender] * 100
    assert result["extra"] is False


async def test_messages_sent_before_receive_are_kept_and_listen_takes_its_topic(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local approvals = process.listen("approval")
      local go = process.listen("go")
      go:receive()                                  -- everything else arrives before this
      local first = process.inbox():receive()       -- the inbox skips listened topics
      local decision = approvals:receive()          -- a listen channel gives the payload data
      local second = process.inbox():receive()
      return {
        first = { first:topic(), first:payload():data() },
        decision = decision, approved = decision.approved,
        second = { second:topic(), second.n },
      }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        await wait_blocking(rt, pid, "go (listen)")
        await rt.send(pid, "approval", {"approved": True, "by": "ana"})
        await rt.send(pid, "note", {"n": 1})
        await rt.send(pid, "other", {"n": 2})
        state = await lua_state(rt, pid)
        assert state["messages_waiting"] == 3
        await rt.send(pid, "go", True)
        result = await rt.result(pid)
    assert result == {
        "first": ["note", {"n": 1}],
        "decision": {"approved": True, "by": "ana"}, "approved": True,
        "second": ["other", 2],
    }


async def test_message_api_and_senders(make_app: Callable[..., Path], temporal_address: str) -> None:
    inbox = """
    return function(n)
      local out = {}
      for _ = 1, n do
        local msg = process.inbox():receive()
        out[#out + 1] = {
          topic = msg:topic(), from = msg:from() or "nil", data = msg:payload():data(),
          approved = msg.approved, missing = msg.no_such_field == nil,
        }
      end
      return out
    end
    """
    sender = """
    return function(pid)
      local ok, err = process.send(pid, "hello", { approved = false, n = 3 })
      assert(ok, err)
      local _, missing = process.send("{app:client@app:worker|nobody-home}", "hello", {})
      local _, invalid = process.send("not a pid", "hello", {})
      local _, bad_payload = process.send(pid, "hello", { f = function() end })
      assert(missing:kind() == "NotFound", missing:kind())
      assert(invalid:kind() == "Invalid", invalid:kind())
      assert(bad_payload:kind() == "Invalid" and bad_payload:message():find("payload.f"), bad_payload:message())
      return process.pid()
    end
    """
    app = make_flows(make_app, {"inbox": inbox, "sender": sender})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:inbox", None, 4)
        wid = pid.workflow_id
        # 1. AppRuntime.send with a sender pid
        await rt.send(pid, "python", {"approved": True}, sender="{app:client@app:worker|someone}")
        # 2. a plain Temporal client: no sender
        client = await Client.connect(temporal_address)
        await client.get_workflow_handle(wid).signal("plain", {"approved": False, "k": "v"})
        # 3. the temporal CLI, as the issue shows it
        out = await temporal_cli("workflow", "signal", "--workflow-id", wid, "--name", "update",
                              "--input", '{"approved": true}', "--address", temporal_address)
        assert out.returncode == 0, out.stderr
        # 4. another workflow, with process.send (signal external workflow)
        await eventually(lambda: lua_state(rt, pid), lambda s: s.get("messages_received") == 3,
                         what="three messages received")
        sender_pid = await rt.result(await rt.spawn("app:sender", None, str(pid)))
        result = await rt.result(pid)
    assert result == [
        {"topic": "python", "from": "{app:client@app:worker|someone}", "data": {"approved": True},
         "approved": True, "missing": True},
        {"topic": "plain", "from": "nil", "data": {"approved": False, "k": "v"}, "approved": False,
         "missing": True},
        {"topic": "update", "from": "nil", "data": {"approved": True}, "approved": True, "missing": True},
        {"topic": "hello", "from": sender_pid, "data": {"approved": False, "n": 3}, "approved": False,
         "missing": True},
    ]
    assert sender_pid.startswith("{app:client@app:worker|")


async def test_sigkill_while_blocked_in_receive_loses_nothing(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"collect": COLLECT})
    client_only = AppRuntime(app, temporal=temporal_address)
    async with worker_process(app, temporal_address) as worker:
        pid = await client_only.spawn("app:collect", None, 6)
        await client_only.send(pid, "item", {"i": 1})
        await eventually(lambda: lua_state(client_only, pid),
                         lambda s: s.get("messages_received") == 1 and "receive" in s.get("blocking", ""),
                         what="first message taken, blocked in receive again")
        worker.kill()
        for i in range(2, 7):
            await client_only.send(pid, "item", {"i": i})
    async with running(app, temporal_address) as rt:
        result = await asyncio.wait_for(rt.result(pid), 60)
    assert result["got"] == _one_to(6)
    assert result["extra"] is False
