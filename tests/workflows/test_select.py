"""channel.select in workflows: listen channels, time.after, futures, default, and a worker SIGKILL."""

from __future__ import annotations

import asyncio
import re
import shutil
from pathlib import Path
from typing import Callable

from _issue3 import activities, make_flows, wait_blocking, worker_process
from moontide_testing import running
from moontide.runtime import AppRuntime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "approval"

# "Wait for approval, at most `timeout`": two lines of Lua.
APPROVAL = """
return function(timeout)
  local decisions, deadline = process.listen("approval"), time.after(timeout)
  local got = channel.select{ decisions:case_receive(), deadline:case_receive() }
  if got.channel == deadline then
    return { status = "expired", at_or_after = got.value:unix_nano() >= 0 }
  end
  return { status = got.value.approved and "approved" or "rejected", by = got.value.by }
end
"""


async def test_wait_for_approval_at_most_n(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"approval": APPROVAL})
    async with running(app, temporal_address) as rt:
        late = await rt.spawn("app:approval", None, "300ms")
        decided = await rt.spawn("app:approval", None, "1h")
        state = await wait_blocking(rt, decided, "select on approval (listen)")
        assert re.fullmatch(r"waiting in select on approval \(listen\), timer:\d+ "
                            r"\(until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\)", state["blocking"]), state
        await rt.send(decided, "approval", {"approved": True, "by": "ana"})
        assert await rt.result(late) == {"status": "expired", "at_or_after": True}
        assert await rt.result(decided) == {"status": "approved", "by": "ana"}


async def test_select_over_a_future_and_a_timer(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local out = {}
      -- the activity finishes first
      local quick = funcs.async("nap", "50ms", "done")
      local timer = time.after("1h")
      local got = channel.select{ quick:channel():case_receive(), timer:case_receive() }
      out.quick = { which = got.channel == timer and "timer" or "future", value = got.value:data(), ok = got.ok }
      -- the timer fires first (and wins a tie: case order); the future is still usable afterwards
      local slow = funcs.async("nap", "2s", "slow")
      local soon = time.after("100ms")
      got = channel.select{ soon:case_receive(), slow:channel():case_receive() }
      out.slow = { which = got.channel == soon and "timer" or "future", time = got.value.unix ~= nil,
                   pending = slow:result() == nil }
      slow:response():receive()
      out.slow_result = slow:result():data()
      -- a failing future: the case's value is the error (Wippy's future.md); result() gives it too
      local bad = funcs.async("fail", "nope")
      local bch = bad:channel()
      got = channel.select{ bch:case_receive(), time.after("1h"):case_receive() }
      local _, err = bad:result()
      out.bad = { same = got.channel == bch, ok = got.ok, invalid = errors.is(got.value, errors.INVALID),
                  result_invalid = errors.is(err, errors.INVALID) }
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow}, {"fail": """
        return function(message)
          return nil, errors.new{kind = "Invalid", message = message}
        end
    """})
    async with running(app, temporal_address) as rt:
        result = await rt.result(await rt.spawn("app:flow", None))
    assert result == {
        "quick": {"which": "future", "value": "done", "ok": True},
        "slow": {"which": "timer", "time": True, "pending": True},
        "slow_result": "slow",
        "bad": {"same": True, "ok": True, "invalid": True, "result_invalid": True},
    }


async def test_select_with_default(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local inbox, go = process.inbox(), process.listen("go")
      local out = {}
      local got = channel.select{ inbox:case_receive(), default = true }
      out.before = got.default == true
      go:receive()                       -- "hello" was sent before "go"
      got = channel.select{ inbox:case_receive(), default = true }
      out.after = { default = got.default == true, topic = got.value and got.value:topic(), n = got.value and got.value.n }
      got = channel.select{ inbox:case_receive(), default = true }
      out.drained = got.default == true
      -- a Lua channel with a value wins over default too
      local ch = channel.new(1)
      ch:send("x")
      got = channel.select{ ch:case_receive(), inbox:case_receive(), default = true }
      out.lua = got.value
      -- a fired timer counts as ready
      local t = time.after("10ms")
      time.sleep("50ms")
      got = channel.select{ t:case_receive(), default = true }
      out.timer = got.channel == t
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        await wait_blocking(rt, pid, "go (listen)")
        await rt.send(pid, "hello", {"n": 7})
        await rt.send(pid, "go", True)
        result = await rt.result(pid)
    assert result == {"before": True, "after": {"default": False, "topic": "hello", "n": 7}, "drained": True,
                      "lua": "x", "timer": True}


async def test_sigkill_while_in_select(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"approval": APPROVAL})
    client_only = AppRuntime(app, temporal=temporal_address)
    async with worker_process(app, temporal_address) as worker:
        decided = await client_only.spawn("app:approval", None, "1h")
        expires = await client_only.spawn("app:approval", None, "2s")
        await wait_blocking(client_only, decided, "select")
        await wait_blocking(client_only, expires, "select")
        worker.kill()
        await client_only.send(decided, "approval", {"approved": False, "by": "bo"})
    async with running(app, temporal_address) as rt:
        assert await asyncio.wait_for(rt.result(decided), 60) == {"status": "rejected", "by": "bo"}
        assert await asyncio.wait_for(rt.result(expires), 60) == {"status": "expired", "at_or_after": True}


async def test_approval_example(tmp_path: Path, temporal_address: str) -> None:
    app = tmp_path / "approval"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".moontide"))
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        yes = await rt.spawn("approval:request", None, {"id": "r1", "approver": "ana", "requester": "bo"})
        no = await rt.spawn("approval:request", None, {"id": "r2", "approver": "ana", "requester": "bo"})
        late = await rt.spawn("approval:request", None,
                              {"id": "r3", "approver": "ana", "requester": "bo", "timeout": "200ms"})
        for pid in (yes, no):
            await wait_blocking(rt, pid, "select")
        await rt.send(yes, "approval", {"approved": True, "by": "ana"})
        await rt.send(no, "approval", {"approved": False, "by": "ana", "reason": "budget"})
        assert await rt.result(yes) == {"id": "r1", "status": "approved", "by": "ana", "order": "ord_r1"}
        assert await rt.result(no) == {"id": "r2", "status": "rejected", "by": "ana", "reason": "budget"}
        assert await rt.result(late) == {"id": "r3", "status": "expired"}
        client = await rt.client("approval:temporal")
        assert await activities(client, yes.workflow_id) == ["approval:notify", "approval:fulfil"]
        assert await activities(client, late.workflow_id) == ["approval:notify", "approval:notify"]
