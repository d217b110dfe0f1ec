"""coroutine.spawn, channel.new channels, futures, timers and tickers in processes (process.host).

The same Lua as in workflows (tests/workflows/test_coroutines.py, test_futures.py,
test_timers.py): a process's coroutines wait side by side, each on its own
call, timer or channel, and its futures, timers and tickers follow Wippy's
en/lua/core/future.md and time.md.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide import errors
from moontide_testing import COMMON_FUNCTIONS, WORKER_POOL

FUNCTIONS = {**COMMON_FUNCTIONS, "slow": """
    return function()
      time.sleep("2s")
      return "late"
    end
"""}


async def test_the_docs_worker_pool_in_a_process(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"pool": WORKER_POOL})
    async with running(app) as system:
        result = await system.result(system.spawn("app:pool", "app:host", {"workers": 3, "jobs": 6}))
    assert result["total"] == 42
    assert {r["worker"] for r in result["processed"]} == {1, 2, 3}


async def test_coroutines_wait_side_by_side_in_a_process(make_app: Callable[..., Path]) -> None:
    proc = """
    return function()
      local results = channel.new()
      coroutine.spawn(function() results:send(funcs.call("nap", "300ms", "call")) end)
      coroutine.spawn(function() time.sleep("100ms") results:send("sleep") end)
      coroutine.spawn(function() results:send(process.inbox():receive():topic()) end)
      local out = {}
      for _ = 1, 3 do out[#out + 1] = results:receive() end
      return out
    end
    """
    app = process_app(make_app, {"proc": proc}, functions=FUNCTIONS)
    async with running(app) as system:
        pid = system.spawn("app:proc", "app:host")
        await settle(system, pid, "waiting in select on op:")
        state = system.actor(pid).info()["state"]
        assert "(calling app:nap)" in state and "(sleeping 0.1s)" in state and "inbox" in state, state
        await asyncio.sleep(0.5)
        await system.send(pid, "hello", {})
        assert await system.result(pid) == ["sleep", "call", "hello"]


async def test_a_cancel_reaches_the_first_waiting_coroutine_of_a_process(make_app: Callable[..., Path]) -> None:
    proc = """
    return function()
      local report = channel.new(2)
      coroutine.spawn(function()
        local _, err = time.sleep("1h")
        report:send(errors.is(err, errors.CANCELED) and "sleeper canceled" or "sleeper woke")
      end)
      coroutine.spawn(function()
        local _, err = funcs.call("nap", "2s", "late")
        report:send("caller " .. tostring(err))
      end)
      return report:receive()
    end
    """
    app = process_app(make_app, {"proc": proc}, functions=FUNCTIONS)
    async with running(app) as system:
        pid = system.spawn("app:proc", "app:host")
        await settle(system, pid, "waiting in select on op:")
        await system.cancel(pid, "stop")
        assert await system.result(pid) == "sleeper canceled"


async def test_an_error_in_a_coroutine_ends_the_process(make_app: Callable[..., Path]) -> None:
    proc = """
    return function()
      coroutine.spawn(function() time.sleep("10ms") error("broken worker") end)
      process.inbox():receive()
    end
    """
    app = process_app(make_app, {"proc": proc})
    async with running(app) as system:
        with pytest.raises(errors.MoontideError) as e:
            await system.result(system.spawn("app:proc", "app:host"))
        assert "proc.lua:2: broken worker" in str(e.value)


async def test_futures_in_a_process(make_app: Callable[..., Path]) -> None:
    proc = """
    return function()
      local out = {}
      local f = funcs.async("nap", "200ms", { n = 1 })
      local v, err = f:result()
      out.pending = v == nil and err == nil and not f:is_complete()
      local payload, open = f:response():receive()
      out.done = { open = open, data = payload:data().n, result = f:result():data().n, cancel = f:cancel(),
                   alias = f:channel() == f:response() }
      local bad = funcs.async("fail", "no stock")
      local got = bad:response():receive()
      local _, berr = bad:result()
      local wrapped, has = bad:error()
      out.failed = { value = errors.is(got, "Unavailable"), result = errors.is(berr, "Unavailable"), has = has,
                     wrapped = errors.is(wrapped, errors.INTERNAL) and tostring(wrapped) }
      local slow = funcs.async("slow")
      local canceled = slow:cancel()
      local sv, serr = slow:result()
      local closed_v, closed_ok = slow:response():receive()
      out.canceled = { canceled = canceled, is = slow:is_canceled(), v = sv == nil, err = errors.is(serr, errors.CANCELED),
                       closed = closed_v == nil and closed_ok == false, again = slow:cancel() }
      local _, missing = funcs.async("nope")
      out.missing = errors.is(missing, errors.NOT_FOUND)
      return out
    end
    """
    app = process_app(make_app, {"proc": proc}, functions=FUNCTIONS)
    async with running(app) as system:
        assert await system.result(system.spawn("app:proc", "app:host")) == {
            "pending": True,
            "done": {"open": True, "data": 1, "result": 1, "cancel": False, "alias": True},
            "failed": {"value": True, "result": True, "has": True, "wrapped": "no stock"},
            "canceled": {"canceled": True, "is": True, "v": True, "err": True, "closed": True, "again": False},
            "missing": True,
        }


async def test_timers_and_tickers_in_a_process(make_app: Callable[..., Path]) -> None:
    proc = """
    return function()
      local out = {}
      local t0 = time.now()
      local timer = time.timer("50ms")
      local at = timer:response():receive()
      out.fired = { after = at:sub(t0):milliseconds() >= 50, stop = timer:stop(), reset = timer:reset("1s") }
      local stopped = time.timer("1h")
      out.stopped = { first = stopped:stop(), second = stopped:stop() }
      local r = channel.select{ stopped:response():case_receive(), time.after("100ms"):case_receive() }
      out.stopped.silent = r.channel ~= stopped:response()
      local idle = time.timer("1h")
      local start = time.now()
      out.reset = idle:reset("60ms")
      out.reset_after = idle:response():receive():sub(start):milliseconds() >= 60
      local ticker = time.ticker("30ms")
      local ticks = 0
      for _ = 1, 3 do ticker:channel():receive() ticks = ticks + 1 end
      out.ticks = { n = ticks, stop = ticker:stop(), again = ticker:stop() }
      local quiet = channel.select{ ticker:channel():case_receive(), time.after("100ms"):case_receive() }
      out.ticks.quiet = quiet.channel ~= ticker:channel()
      local _, zerr = time.ticker("0s")
      out.zero = errors.is(zerr, errors.INVALID)
      local empty = channel.select{ channel.new(1):case_receive(), default = true }
      out.default = { default = empty.default, ok = empty.ok }
      return out
    end
    """
    app = process_app(make_app, {"proc": proc})
    async with running(app) as system:
        assert await system.result(system.spawn("app:proc", "app:host")) == {
            "fired": {"after": True, "stop": False, "reset": False},
            "stopped": {"first": True, "second": False, "silent": True},
            "reset": True, "reset_after": True,
            "ticks": {"n": 3, "stop": True, "again": False, "quiet": True},
            "zero": True, "default": {"default": True, "ok": True},
        }


async def test_an_upgrade_from_one_coroutine_ends_the_others(make_app: Callable[..., Path]) -> None:
    # process.upgrade while another coroutine waits (the two waits started side by side): the
    # new code runs alone; the old coroutine's sleep never resumes it, nor the old code
    v1 = """
    return function()
      coroutine.spawn(function()
        time.sleep("500ms")
        process.send(process.pid(), "old", "the old code's coroutine ran on")
      end)
      local msg = process.inbox():receive()
      local _, err = process.upgrade("v2", msg:payload():data())
      return "v1 went on: " .. tostring(err)
    end
    """
    v2 = """
    return function(state)
      local timeout = time.after("1s")
      local r = channel.select{ process.inbox():case_receive(), timeout:case_receive() }
      return { state = state, old = r.channel ~= timeout and r.value:topic() or false, pid = process.pid() }
    end
    """
    app = process_app(make_app, {"v1": v1, "v2": v2})
    async with running(app) as system:
        pid = system.spawn("app:v1", "app:host")
        await settle(system, pid, "waiting in select on inbox, op:")
        await system.send(pid, "upgrade", "x")
        assert await system.result(pid) == {"state": "x", "old": False, "pid": pid}
