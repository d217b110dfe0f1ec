"""coroutine.spawn and channel.new channels in the sandbox itself (no Temporal): Go's rules, the scheduler's order,
deadlocks, errors and the instruction budget across coroutines, and function code, whose host answers one
request at a time."""

from __future__ import annotations

from typing import Any

from lua_helpers import SMALL_BUDGET, code_of, done, run_lua

from moontide import errors
from moontide.lua import Failed
from moontide.workflows import Functions


def lua(body: str) -> tuple[Any, ...]:
    return done(run_lua(body, modules=["channel", "time", "errors"]))


def test_spawned_coroutines_run_when_the_spawner_waits_in_spawn_order() -> None:
    got = lua("""
        local log, ch = {}, channel.new()
        for i = 1, 3 do coroutine.spawn(function() log[#log + 1] = "start " .. i ch:send(i) end) end
        log[#log + 1] = "spawned"
        local sum = 0
        for _ = 1, 3 do
          local v = ch:receive()
          sum = sum + v
          log[#log + 1] = "got " .. v
        end
        return table.concat(log, ","), sum
    """)
    # the first send meets the waiting receiver and goes on; the others wait for main's next receives
    assert got == ("spawned,start 1,start 2,start 3,got 1,got 2,got 3", 6)


def test_channels_follow_gos_rules() -> None:
    got = lua("""
        local out = {}
        -- unbuffered: the send waits for the receiver
        local sync, order = channel.new(), {}
        coroutine.spawn(function() order[#order + 1] = "send" sync:send("x") order[#order + 1] = "sent" end)
        local v = sync:receive()
        order[#order + 1] = "received " .. v
        out.unbuffered = table.concat(order, ",")
        -- buffered: sends go on until the buffer is full, then wait for room
        local buf, log = channel.new(2), {}
        coroutine.spawn(function() for i = 1, 4 do buf:send(i) log[#log + 1] = "sent " .. i end buf:close() end)
        local got = {}
        while true do
          local x, ok = buf:receive()
          if not ok then break end
          got[#got + 1] = x
          log[#log + 1] = "got " .. x
        end
        out.buffered = table.concat(log, ",")
        out.all = table.concat(got, ",")
        -- close: waiting receivers get nil, false; a send raises
        local c, woke = channel.new(), {}
        for i = 1, 2 do coroutine.spawn(function() local x, ok = c:receive() woke[#woke + 1] = tostring(ok) end) end
        local wait = channel.new()
        coroutine.spawn(function() wait:send(true) end)
        wait:receive()
        c:close()
        wait = channel.new()
        coroutine.spawn(function() wait:send(true) end)
        wait:receive()
        out.closed = table.concat(woke, ",")
        out.send_closed = select(2, pcall(function() c:send(1) end)):match("channel is closed") ~= nil
        out.close_twice = c:close()
        -- a sender waiting on a channel that closes gets an error
        local full, report = channel.new(), channel.new()
        coroutine.spawn(function()
          local _, e = pcall(function() full:send(1) end)
          report:send(tostring(e))
        end)
        coroutine.spawn(function() full:close() end)
        out.sender = report:receive():match("channel is closed") ~= nil
        return out
    """)[0]
    assert dict(got) == {
        # the receiver waited: the send hands the value over and goes on at once
        "unbuffered": "send,sent,received x",
        # 1 to the waiting receiver, 2 and 3 into the buffer, 4 waits for room until the receiver runs
        "buffered": "sent 1,sent 2,sent 3,got 1,got 2,got 3,got 4,sent 4",
        "all": "1,2,3,4", "closed": "false,false", "send_closed": True, "close_twice": True, "sender": True}


def test_select_over_lua_channels_waits_and_takes_the_first_in_case_order() -> None:
    got = lua("""
        local a, b, out = channel.new(), channel.new(1), {}
        b:send("b1")
        local r = channel.select{ a:case_receive(), b:case_receive() }
        out[#out + 1] = r.value
        coroutine.spawn(function() a:send("a1") end)
        r = channel.select{ a:case_receive(), b:case_receive() }   -- waits: the spawned one sends
        out[#out + 1] = r.value
        local c = channel.new()
        coroutine.spawn(function() out[#out + 1] = "took " .. c:receive() end)
        r = channel.select{ c:case_send("c1"), default = true }   -- default first: the receiver has not run
        out[#out + 1] = r.default and "default" or "sent"
        r = channel.select{ c:case_send("c1") }
        out[#out + 1] = r.channel == c and "sent " .. r.value or "?"
        local wait = channel.new()
        coroutine.spawn(function() wait:send(1) end)
        wait:receive()
        return table.concat(out, ",")
    """)
    # the select waits as a sender: the receiver takes the value, then the select returns
    assert got == ("b1,a1,default,took c1,sent c1",)


def test_a_deadlock_raises_in_the_main_function() -> None:
    step = run_lua("""
        local ch = channel.new()
        coroutine.spawn(function() ch:receive() end)
        local ok, err = pcall(function() local v = channel.new():receive() return v end)
        assert(not ok)
        ch:send("goes")    -- the spawned one still waits: this works
        local quiet = channel.new()
        local x = quiet:receive()    -- nothing can send: an error past the pcall
    """, modules=["channel"])
    assert isinstance(step, Failed)
    assert "test.lua:8: channel: every coroutine" in str(step.error) and "(deadlock)" in str(step.error)


def test_an_error_in_a_spawned_coroutine_fails_the_step_with_its_traceback() -> None:
    step = run_lua("""
        local ch = channel.new()
        coroutine.spawn(function()
          local t = nil
          return t.field
        end)
        ch:receive()
    """, modules=["channel"])
    assert isinstance(step, Failed)
    assert "test.lua:5: attempt to index a nil value (local 't')" in str(step.error)
    assert "test.lua:5:" in step.error.traceback


def test_the_instruction_budget_counts_every_coroutine() -> None:
    step = run_lua("""
        local ping, pong = channel.new(), channel.new()
        coroutine.spawn(function() while true do ping:send(1) pong:receive() end end)
        while true do ping:receive() pong:send(1) end
    """, modules=["channel"])
    assert isinstance(step, Failed) and isinstance(step.error, errors.BudgetExceeded)
    assert f"{SMALL_BUDGET:,} instructions" in str(step.error)


def test_coroutine_spawn_needs_a_function() -> None:
    step = run_lua("coroutine.spawn(42)")
    assert isinstance(step, Failed) and "coroutine.spawn: expected a function, got number" in str(step.error)


def test_in_function_code_waits_take_turns() -> None:
    # A function's host answers one request at a time (its thread does the work): the
    # coroutines' sleeps run one after the other, in spawn order, and their values still meet.
    source = """
    return function()
      local ch = channel.new()
      local log = {}
      for i, d in ipairs({ "30ms", "10ms" }) do
        coroutine.spawn(function()
          time.sleep(d)
          log[#log + 1] = "slept " .. d
          ch:send(i)
        end)
      end
      local a, b = ch:receive(), ch:receive()
      return { log = log, got = { a, b } }
    end
    """
    fns = Functions({"test:entry": code_of(source, modules=["channel", "time"])})
    assert fns.call("test:entry", []) == {"log": ["slept 30ms", "slept 10ms"], "got": [1, 2]}


def test_futures_in_function_code() -> None:
    # funcs.async in a function runs the call at once: the future is done when made
    codes = {
        "test:entry": code_of("""
        return function()
          local f = funcs.async("test:double", 21)
          local payload, open = f:response():receive()
          local bad = funcs.async("test:fail")
          local _, err = bad:result()
          return { complete = f:is_complete(), channel = payload:data(), open = open, result = f:result():data(),
                   cancel = f:cancel(), failed = errors.is(err, errors.INVALID), wrapped = select(2, bad:error()) }
        end
        """, modules=["funcs", "errors"]),
        "test:double": code_of("return function(x) return x * 2 end", id="test:double"),
        "test:fail": code_of("return function() return nil, errors.new{kind = 'Invalid', message = 'no'} end",
                             modules=["errors"], id="test:fail"),
    }
    assert Functions(codes).call("test:entry", []) == {
        "complete": True, "channel": 42, "open": True, "result": 42, "cancel": False, "failed": True,
        "wrapped": True}


def test_spawning_without_end_fails_the_step() -> None:
    # each spawn is a coroutine: past the budget or the memory cap the step fails, uncatchably
    step = run_lua("""
        local ok = pcall(function() while true do coroutine.spawn(function() end) end end)
        return ok
    """, modules=["channel"])
    assert isinstance(step, Failed) and isinstance(step.error, errors.BudgetExceeded), step
