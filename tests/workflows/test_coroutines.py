"""coroutine.spawn and channel.new channels in workflows (Wippy's en/temporal/workflows.md, "Concurrent Work").

Spawned coroutines run side by side with the main function: each may wait on
an activity, a timer, a message or a channel, and the workflow asks Temporal
for all their waits at once. Every test replays the history in a fresh
process (``moontide_testing.replay_in_fresh_process``): the same commands in
the same order, or it fails.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest
from temporalio.api.enums.v1 import EventType

from _issue3 import eventually, history, lua_state, make_flows, wait_blocking, worker_process
from moontide_testing import WORKER_POOL, replay_in_fresh_process, running
from moontide.runtime import AppRuntime, WorkflowFailed


async def test_the_docs_worker_pool(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"pool": WORKER_POOL})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:pool", None, {"workers": 3, "jobs": 6})
        result = await rt.result(pid)
        assert result["total"] == 42
        assert sorted(r["job"] for r in result["processed"]) == [1, 2, 3, 4, 5, 6]
        # three workers took jobs at the same time: their sleeps overlap, one round of timers after another
        assert {r["worker"] for r in result["processed"]} == {1, 2, 3}
        evs = await history(await rt.client("app:client"), pid.workflow_id)
        started = [e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in evs]
        fired = [e.event_type == EventType.EVENT_TYPE_TIMER_FIRED for e in evs]
        first_fire = fired.index(True)
        assert sum(started[:first_fire]) == 3, "the three workers' first sleeps started before any fired"
        assert sum(started) == 6
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_coroutines_wait_on_activities_side_by_side(make_app: Callable[..., Path],
                                                         temporal_address: str) -> None:
    # Each coroutine makes a call; the three activities are scheduled before any completes,
    # and the results come back through an unbuffered channel in the order the calls end.
    flow = """
    return function()
      local done = channel.new()
      for i, d in ipairs({ "2s", "10ms", "1s" }) do  -- a second apart: the order holds on a busy machine
        coroutine.spawn(function()
          local v = funcs.call("nap", d, "c" .. i)
          done:send(v)
        end)
      end
      local order = {}
      for _ = 1, 3 do order[#order + 1] = done:receive() end
      return order
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == ["c2", "c3", "c1"]
        evs = await history(await rt.client("app:client"), pid.workflow_id)
        kinds = [e.event_type for e in evs]
        first_done = kinds.index(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED)
        assert kinds[:first_done].count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) == 3
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_unbuffered_send_waits_for_a_receiver(make_app: Callable[..., Path], temporal_address: str) -> None:
    # Go's rules: a send on an unbuffered channel ends only once a receiver took the value;
    # a buffered one holds its size; close wakes receivers with nil, false after the buffer.
    flow = """
    return function()
      local log = {}
      local sync = channel.new()
      coroutine.spawn(function()
        log[#log + 1] = "send 1"
        sync:send(1)
        log[#log + 1] = "sent 1"
        sync:send(2)
        log[#log + 1] = "sent 2"
      end)
      log[#log + 1] = "main sleeps"
      time.sleep("20ms")
      for _ = 1, 2 do
        local v = sync:receive()
        log[#log + 1] = "main receives " .. v
      end
      time.sleep("10ms")
      local buf = channel.new(2)
      buf:send("a") buf:send("b")
      local full = channel.select{ buf:case_send("c"), default = true }
      buf:close()
      local drained = {}
      while true do
        local v, ok = buf:receive()
        if not ok then break end
        drained[#drained + 1] = v
      end
      local sent_on_closed = pcall(function() buf:send("x") end)
      return { log = log, full = full.default == true, drained = drained, sent_on_closed = sent_on_closed }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        result = await rt.result(pid)
        assert result == {
            # send 1 waits for main's receive; send 2 finds main waiting: the value is handed over
            # at once and the sender goes on before main runs
            "log": ["main sleeps", "send 1", "main receives 1", "sent 1", "sent 2", "main receives 2"],
            "full": True, "drained": ["a", "b"], "sent_on_closed": False}
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_select_over_channels_messages_and_timers_from_coroutines(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    # One coroutine waits on the inbox, one on a timer, the main one in a select over a Lua
    # channel and a listened topic: every wait is in flight at once, and each is answered.
    flow = """
    return function()
      local out = {}
      local results = channel.new()
      coroutine.spawn(function()
        local msg = process.inbox():receive()
        results:send("inbox " .. msg:topic() .. " " .. msg.n)
      end)
      coroutine.spawn(function()
        time.sleep("100ms")
        results:send("timer")
      end)
      local stop = process.listen("stop")
      while true do
        local r = channel.select{ results:case_receive(), stop:case_receive() }
        if r.channel == stop then break end
        out[#out + 1] = r.value
      end
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        # all three waits in flight at once, the sleep as an operation of its own
        await wait_blocking(rt, pid, "waiting in select on stop (listen), inbox, op:")
        await eventually(lambda: lua_state(rt, pid), lambda s: s["blocking"] == "waiting in select on stop "
                         "(listen), inbox", what="the timer fired, its coroutine's value taken")
        await rt.send(pid, "hello", {"n": 7})
        await eventually(lambda: lua_state(rt, pid), lambda s: s["messages_received"] == 1
                         and s["blocking"] == "waiting in select on stop (listen)", what="hello taken")
        await rt.send(pid, "stop", True)
        assert await rt.result(pid) == ["timer", "inbox hello 7"]
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_main_returning_ends_the_execution(make_app: Callable[..., Path], temporal_address: str) -> None:
    # The docs' signal handlers return while their coroutines still wait on their channels.
    flow = """
    return function()
      local never = channel.new()
      coroutine.spawn(function() never:receive() end)
      coroutine.spawn(function() process.listen("nobody"):receive() end)
      coroutine.spawn(function() time.sleep("1h") end)
      time.sleep("10ms")
      return "done"
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await asyncio.wait_for(rt.result(pid), 60) == "done"
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_an_error_in_a_coroutine_fails_the_workflow(make_app: Callable[..., Path],
                                                           temporal_address: str) -> None:
    flow = """
    return function()
      coroutine.spawn(function()
        time.sleep("10ms")
        error("the worker broke")
      end)
      process.listen("never"):receive()
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        with pytest.raises(WorkflowFailed) as e:
            await asyncio.wait_for(rt.result(pid), 60)
        assert str(e.value).startswith("flow.lua:4: the worker broke"), str(e.value)


async def test_a_deadlock_is_an_error_in_the_main_function(make_app: Callable[..., Path],
                                                            temporal_address: str) -> None:
    flow = """
    return function()
      local a, b = channel.new(), channel.new()
      coroutine.spawn(function() a:receive() b:send(1) end)
      local ok, err = pcall(function() local v = b:receive() return v end)
      return { ok = ok, err = tostring(err) }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        result = await rt.result(await rt.spawn("app:flow", None))
    assert result["ok"] is False
    assert "flow.lua:4:" in result["err"] and "(deadlock)" in result["err"], result


async def test_a_cancel_request_reaches_the_first_waiting_coroutine(make_app: Callable[..., Path],
                                                                     temporal_address: str) -> None:
    # With several coroutines waiting, a cancel request ends one wait with Canceled, once:
    # the first in spawn order (the main function first); here main waits on a channel.
    flow = """
    return function()
      local report = channel.new(2)
      coroutine.spawn(function()
        local v, err = funcs.call("nap", "1h", "late")
        report:send({ who = "caller", canceled = errors.is(err, errors.CANCELED) })
      end)
      coroutine.spawn(function()
        local ok, err = time.sleep("1h")
        report:send({ who = "sleeper", canceled = errors.is(err, errors.CANCELED) })
      end)
      local first = report:receive()
      return { first = first, cancel = process.events():receive().kind }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        await wait_blocking(rt, pid, "select on op:")
        await rt.cancel(pid, "enough")
        assert await asyncio.wait_for(rt.result(pid), 60) == {
            "first": {"who": "caller", "canceled": True}, "cancel": "pid.cancel"}
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_sigkill_while_coroutines_wait_a_new_worker_process_finishes(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local results = channel.new()
      -- the activity dies with the first worker: a short timeout retries it soon on the second
      local quick = funcs.new():with_options{ start_to_close_timeout = "3s", retry_policy = { initial_interval = "100ms" } }
      coroutine.spawn(function() results:send(quick:call("nap", "1500ms", "slow call")) end)
      coroutine.spawn(function() time.sleep("1s") results:send("timer") end)
      coroutine.spawn(function() results:send(process.listen("go"):receive()) end)
      local out = {}
      for _ = 1, 3 do out[#out + 1] = results:receive() end
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow})
    client_only = AppRuntime(app, temporal=temporal_address)
    async with worker_process(app, temporal_address) as first:
        pid = await client_only.spawn("app:flow", None)
        await wait_blocking(client_only, pid, "select on op:")
        first.kill()
    await client_only.send(pid, "go", "message")
    async with worker_process(app, temporal_address):
        # the order is the order the three ended in, which the kill and restart decide
        assert sorted(await asyncio.wait_for(client_only.result(pid), 90)) == ["message", "slow call", "timer"]
    assert await replay_in_fresh_process(client_only, pid) == "REPLAYED"


async def test_an_upgrade_from_one_coroutine_ends_the_others(make_app: Callable[..., Path],
                                                            temporal_address: str) -> None:
    # process.upgrade while another coroutine waits (both requests started side by side):
    # the run continues as new and the next run starts alone, with the new arguments
    flow = """
    return function(n)
      if n > 1 then return { n = n, run = workflow.info().continued_run_id ~= nil } end
      coroutine.spawn(function() time.sleep("1h") end)
      local _, err = process.upgrade(nil, n + 1)
      return { went_on = tostring(err) }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None, 1)
        assert await rt.result(pid) == {"n": 2, "run": True}
        client = await rt.client("app:client")
        second = await history(client, pid.workflow_id)
        first_run = second[0].workflow_execution_started_event_attributes.continued_execution_run_id
        first = await history(client, pid.workflow_id, first_run)
        kinds = [e.event_type for e in first]
        assert EventType.EVENT_TYPE_TIMER_STARTED in kinds  # the other coroutine's sleep was under way
        assert kinds[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        assert EventType.EVENT_TYPE_TIMER_STARTED not in [e.event_type for e in second]
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
