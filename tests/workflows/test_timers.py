"""time.timer (stop, reset), time.ticker, time.after and durations in workflows (Wippy's en/lua/core/time.md).

Each is a durable Temporal timer (a ticker: one after another); stop and
reset cancel it. Every test replays its history in a fresh process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from temporalio.api.enums.v1 import EventType

from _issue3 import history, make_flows
from moontide_testing import replay_in_fresh_process, running


def count(evs: list, name: str) -> int:
    kind = EventType.Value("EVENT_TYPE_" + name)
    return sum(1 for e in evs if e.event_type == kind)


async def test_timer_stop_and_reset(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local out = {}
      local t0 = time.now()
      -- a timer that fires: its channel receives the time it fired at
      local timer, err = time.timer("50ms")
      local at = timer:response():receive()
      out.fired = { err = err == nil, after = at:sub(t0):milliseconds() >= 50, alias = timer:channel() == timer:response(),
                    stop = timer:stop(), reset = timer:reset("1s") }
      -- stopped before it fires: its channel never gets a value
      local stopped = time.timer("1h")
      out.stop = { first = stopped:stop(), second = stopped:stop(), reset = stopped:reset("1s") }
      local r = channel.select{ stopped:response():case_receive(), time.after("100ms"):case_receive() }
      out.stop.silent = r.channel ~= stopped:response()
      -- reset before it fires: it fires d after the reset, not after its start
      local idle = time.timer("1h")
      local start = time.now()
      out.reset = idle:reset("80ms")
      local fired = idle:response():receive()
      out.reset_after = fired:sub(start):milliseconds() >= 80 and fired:sub(start):milliseconds() < 3600000
      -- a duration that is not more than 0 is Invalid
      local none, zerr = time.timer(0)
      out.zero = none == nil and errors.is(zerr, errors.INVALID)
      local _, aerr = time.after("soon")
      out.after_bad = errors.is(aerr, errors.INVALID)
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == {
            "fired": {"err": True, "after": True, "alias": True, "stop": False, "reset": False},
            "stop": {"first": True, "second": False, "reset": False, "silent": True},
            "reset": True, "reset_after": True, "zero": True, "after_bad": True,
        }
        evs = await history(await rt.client("app:client"), pid.workflow_id)
        started = sorted(e.timer_started_event_attributes.start_to_fire_timeout.ToMilliseconds() for e in evs
                         if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)
        # stopped (or reset) in the same activation, the 1 h timers never reached Temporal
        assert started == [50, 80, 100]
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_ticker(make_app: Callable[..., Path], temporal_address: str) -> None:
    # time.md's rate-limiting pattern: a tick before each item, then stop
    flow = """
    return function(items)
      local ticker, err = time.ticker("50ms")
      if err then return nil, err end
      local t0 = time.now()
      local done = {}
      for _, item in ipairs(items) do
        local tick = ticker:response():receive()
        done[#done + 1] = { item = item, after = tick:sub(t0):milliseconds() >= 50 * #done + 50 }
      end
      local stopped = ticker:stop()
      local r = channel.select{ ticker:channel():case_receive(), time.after("150ms"):case_receive() }
      return { done = done, stopped = stopped, again = ticker:stop(), quiet = r.channel ~= ticker:channel() }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None, ["a", "b", "c"])
        assert await rt.result(pid) == {
            "done": [{"item": i, "after": True} for i in "abc"], "stopped": True, "again": False, "quiet": True}
        evs = await history(await rt.client("app:client"), pid.workflow_id)
        # three ticks and the after: the next tick, stopped in the activation that started it, never went out
        assert count(evs, "TIMER_STARTED") == count(evs, "TIMER_FIRED") == 4
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_select_default_and_durations(make_app: Callable[..., Path], temporal_address: str) -> None:
    # the docs' "Track elapsed time" and "Non-blocking Check"
    flow = """
    return function()
      local start = time.now()
      time.sleep("1s")
      local elapsed = time.now():sub(start):milliseconds()
      local ch = channel.new(1)
      local empty = channel.select{ ch:case_receive(), default = true }
      ch:send("v")
      local full = channel.select{ ch:case_receive(), default = true }
      local t = time.after("10ms")
      local early = channel.select{ t:case_receive(), process.inbox():case_receive(), default = true }
      time.sleep("50ms")
      local late = channel.select{ process.inbox():case_receive(), t:case_receive(), default = true }
      return { elapsed = elapsed >= 1000, empty = { default = empty.default, ok = empty.ok },
               full = full.value, early = early.default == true, late = late.channel == t,
               text = tostring(time.now():sub(start)):match("^%d+%.?%d*s$") ~= nil }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == {"elapsed": True, "empty": {"default": True, "ok": True}, "full": "v",
                                        "early": True, "late": True, "text": True}
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_function_code_waits_on_timers_tickers_and_futures(make_app: Callable[..., Path],
                                                                 temporal_address: str) -> None:
    """Wippy's functions may use time.after, timers, tickers and select: their thread sleeps until one is ready."""
    fn = """
    return function()
      local out = {}
      local t0 = time.now()
      local at = time.after("60ms"):receive()
      out.after = at:sub(t0):milliseconds() >= 60
      local f = funcs.async("app:echo", "v")
      local slow = time.after("1h")
      local r = channel.select{ slow:case_receive(), f:response():case_receive() }
      out.future_first = r.channel == f:response() and r.value:data() == "v"
      local ticker = time.ticker("20ms")
      local ticks = 0
      for _ = 1, 3 do ticker:response():receive() ticks = ticks + 1 end
      out.ticks = ticks
      out.ticker_stop = ticker:stop()
      local timer = time.timer("1h")
      out.stopped = timer:stop()
      local none = channel.select{ timer:response():case_receive(), default = true }
      out.default = none.default == true
      local v, received, err = timer:response():receive()   -- a stopped timer never fires: nothing can come
      out.deadlock = v == nil and received == false and errors.is(err, errors.INVALID)
      out.elapsed_ok = time.now():sub(t0):milliseconds() < 3600000
      return out
    end
    """
    app = make_flows(make_app, {"flow": 'return function() return funcs.call("app:waits") end'},
                     {"waits": fn, "echo": "return function(x) return x end"})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == {"after": True, "future_first": True, "ticks": 3, "ticker_stop": True,
                                        "stopped": True, "default": True, "deadlock": True, "elapsed_ok": True}
