"""Messages between processes on a process.host: order, delivery, topics, select, backpressure, names."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide_testing import eventually
from moontide import errors
from moontide.processes import LocalPid, is_local_pid, is_workflow_pid
from moontide.runtime import Pid

CONSUMER = """
return function(n)
  local got, from = {}, {}
  for i = 1, n do
    local msg = process.inbox():receive()
    got[i] = msg.i
    from[msg:from() or "python"] = (from[msg:from() or "python"] or 0) + 1
    if msg:topic() ~= "item" then error("unexpected topic " .. msg:topic()) end
  end
  return { got = got, from = from }
end
"""

PRODUCER = """
return function(to, first, last)
  for i = first, last do
    local ok, err = process.send(to, "item", { i = i })
    if not ok then return nil, err end
  end
  return process.pid()
end
"""


async def test_messages_arrive_in_order_and_exactly_once(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"consumer": CONSUMER, "producer": PRODUCER})
    async with running(app) as system:
        consumer = system.spawn("app:consumer", "app:host", 1000)
        producer = system.spawn("app:producer", "app:host", consumer, 1, 1000)
        result = await system.result(consumer)
        assert await system.result(producer) == producer
    assert result["got"] == list(range(1, 1001))
    assert result["from"] == {producer: 1000}


async def test_each_senders_messages_keep_their_order(make_app: Callable[..., Path]) -> None:
    collect = """
    return function(n)
      local by = {}
      for _ = 1, n do
        local msg = process.inbox():receive()
        local list = by[msg:from()] or {}
        by[msg:from()] = list
        list[#list + 1] = msg.i
      end
      return by
    end
    """
    app = process_app(make_app, {"collect": collect, "producer": PRODUCER})
    async with running(app) as system:
        sink = system.spawn("app:collect", "app:host", 600)
        producers = [system.spawn("app:producer", "app:host", sink, k * 1000 + 1, k * 1000 + 200) for k in range(3)]
        by = await system.result(sink)
    assert sorted(by) == sorted(producers)
    for k, pid in enumerate(producers):
        assert by[pid] == list(range(k * 1000 + 1, k * 1000 + 201))


async def test_a_full_inbox_makes_the_sender_wait_without_losing_anything(make_app: Callable[..., Path]) -> None:
    slow = """
    return function(n)
      time.sleep("300ms")                -- busy: meanwhile the producer fills the inbox and waits
      local got = {}
      for i = 1, n do got[i] = process.inbox():receive().i end
      return got
    end
    """
    app = process_app(make_app, {"slow": slow, "producer": PRODUCER}, host="queue_size: 4")
    async with running(app) as system:
        sink = system.spawn("app:slow", "app:host", 51)
        producer = system.spawn("app:producer", "app:host", sink, 1, 50)
        await settle(system, producer, "waiting for room")
        actor = system.actor(sink)
        assert actor is not None and len(actor.mailbox.messages) == 4
        await system.send(sink, "item", {"i": 51})   # Python waits for room too, in line behind item 5
        got = await system.result(sink)
    # first come, first served: item 5 was waiting, then Python's, then the producer's next
    assert got == [1, 2, 3, 4, 5, 51, *range(6, 51)]


async def test_a_full_inbox_does_not_hide_a_listened_topic(make_app: Callable[..., Path]) -> None:
    picky = """
    return function()
      local go = process.listen("go")
      local got = go:receive()
      local rest = 0
      while channel.select{ process.inbox():case_receive(), default = true }.default ~= true do rest = rest + 1 end
      return { go = got, rest = rest }
    end
    """
    app = process_app(make_app, {"picky": picky, "producer": PRODUCER}, host="queue_size: 4")
    async with running(app) as system:
        pid = system.spawn("app:picky", "app:host")
        await settle(system, pid)
        producer = system.spawn("app:producer", "app:host", pid, 1, 10)
        assert await system.result(producer) == producer
        await system.send(pid, "go", "now")
        assert await system.result(pid) == {"go": "now", "rest": 10}


async def test_listen_takes_one_topic_and_the_inbox_the_rest(make_app: Callable[..., Path]) -> None:
    topics = """
    return function()
      local b = process.listen("b")
      process.listen("go"):receive()            -- all four are there now
      local inbox, listened = {}, {}
      for _ = 1, 2 do inbox[#inbox + 1] = process.inbox():receive().v end
      for _ = 1, 2 do listened[#listened + 1] = b:receive() end
      local extra = channel.select{ process.inbox():case_receive(), b:case_receive(), default = true }
      return { inbox = inbox, listened = listened, nothing_left = extra.default == true }
    end
    """
    app = process_app(make_app, {"topics": topics})
    async with running(app) as system:
        pid = system.spawn("app:topics", "app:host")
        await settle(system, pid)
        for topic, v in (("a", 1), ("b", 2), ("a", 3), ("b", 4)):
            await system.send(pid, topic, {"v": v})
        await system.send(pid, "go")
        result = await system.result(pid)
    # the inbox skips topics someone listens to; a listen channel gives the payload itself
    assert result == {"inbox": [1, 3], "listened": [{"v": 2}, {"v": 4}], "nothing_left": True}


async def test_select_waits_on_inbox_timers_and_events_together(make_app: Callable[..., Path]) -> None:
    sel = """
    return function()
      local out = {}
      local timeout = time.after("50ms")
      local r = channel.select{ process.inbox():case_receive(), timeout:case_receive() }
      out[1] = r.channel == timeout and "timer" or "inbox"
      r = channel.select{ process.inbox():case_receive(), process.events():case_receive(), time.after("5s"):case_receive() }
      out[2] = r.channel == process.inbox() and r.value:topic() or "other"
      local poll = channel.select{ process.inbox():case_receive(), default = true }
      out[3] = poll.default == true
      return out
    end
    """
    app = process_app(make_app, {"sel": sel})
    async with running(app) as system:
        pid = system.spawn("app:sel", "app:host")
        await settle(system, pid, "waiting in select on inbox, timer:")
        await asyncio.sleep(0.02)
        await settle(system, pid, "waiting in select on inbox, events")
        await system.send(pid, "hello", 1)
        assert await system.result(pid) == ["timer", "hello", True]


async def test_sleep_and_timers_do_not_block_other_processes(make_app: Callable[..., Path]) -> None:
    sleeper = """
    return function(d)
      local t0 = time.now()
      time.sleep(d)
      return time.now():sub(t0) // 1000000
    end
    """
    app = process_app(make_app, {"sleeper": sleeper, "consumer": CONSUMER, "producer": PRODUCER})
    async with running(app) as system:
        sleepers = [system.spawn("app:sleeper", "app:host", "1s") for _ in range(100)]
        consumer = system.spawn("app:consumer", "app:host", 100)
        system.spawn("app:producer", "app:host", consumer, 1, 100)
        assert (await system.result(consumer))["got"] == list(range(1, 101))
        # messaging went on while 100 processes slept
        assert all((a := system.actor(p)) is not None and a.info()["state"].startswith("sleeping") for p in sleepers)
        slept = [await system.result(p) for p in sleepers]
    assert all(990 <= ms < 5000 for ms in slept), slept


async def test_python_send_and_result(make_app: Callable[..., Path]) -> None:
    echo = """
    return function()
      local msg = process.inbox():receive()
      return { topic = msg:topic(), from = msg:from() or "none", data = msg:payload():data(), n = msg.n }
    end
    """
    app = process_app(make_app, {"echo": echo})
    async with running(app) as system:
        pid = system.spawn("app:echo", "app:host")
        assert is_local_pid(pid) and not is_workflow_pid(pid)
        assert LocalPid.parse(pid).host == "app:host"
        with pytest.raises(errors.Invalid):
            Pid.parse(pid)  # never read as a workflow pid
        await system.send(pid, "hi", {"n": 7, "list": [1, {"deep": []}], "empty": {}})
        result = await system.result(pid)
        with pytest.raises(errors.Invalid, match="not a JSON value"):
            await system.send(pid, "bad", {1, 2})
    assert result == {"topic": "hi", "from": "none", "data": {"n": 7, "list": [1, {"deep": []}], "empty": {}}, "n": 7}


async def test_registry_names_send_by_name_and_are_freed_at_exit(make_app: Callable[..., Path]) -> None:
    named = """
    return function(name)
      local ok, err = process.registry.register(name)
      if not ok then return nil, err end
      local msg = process.inbox():receive()
      return msg.v
    end
    """
    client = """
    return function(name)
      local pid, err = process.registry.lookup(name)
      if not pid then return nil, err end
      local _, taken = process.registry.register(name)
      local ok = process.send(name, "v", { v = "by name" })
      local _, missing = process.registry.lookup("nobody")
      local _, nosuch = process.send("{app:host|abc.999}", "x", 1)
      return { pid = pid, sent = ok, taken = taken:kind(), missing = missing:kind(), nosuch = nosuch:kind(),
               nosuch_message = nosuch:message() }
    end
    """
    app = process_app(make_app, {"named": named, "client": client})
    async with running(app) as system:
        server = system.spawn("app:named", "app:host", "svc")
        await settle(system, server)
        out = await system.result(system.spawn("app:client", "app:host", "svc"))
        assert await system.result(server) == "by name"
        assert "svc" not in system.registry.names
        again = system.spawn("app:named", "app:host", "svc")  # the name is free again
        await settle(system, again)
        await system.send("svc", "v", {"v": 2})
        assert await system.result(again) == 2
    assert out["pid"] == server and out["sent"] is True
    assert (out["taken"], out["missing"], out["nosuch"]) == ("AlreadyExists", "NotFound", "NotFound")
    assert "{app:host|abc.999}" in out["nosuch_message"]


async def test_cancel_delivers_an_event_and_a_canceled_error(make_app: Callable[..., Path]) -> None:
    saga = """
    return function()
      local msg, ok, err = process.inbox():receive()
      local ev = process.events():receive()
      return { ok = ok, kind = err and err:kind(), message = err and err:message(), event = ev.kind,
               reason = ev.reason, compensated = true }
    end
    """
    app = process_app(make_app, {"saga": saga})
    async with running(app) as system:
        pid = system.spawn("app:saga", "app:host")
        await settle(system, pid)
        await system.cancel(pid, "user left")
        result = await system.result(pid)
    assert result == {"ok": False, "kind": "Canceled", "message": "canceled while waiting in receive on inbox: user left",
                      "event": "pid.cancel", "reason": "user left", "compensated": True}


async def test_cancel_while_running_hits_the_next_wait_and_terminate_ends_at_once(
        make_app: Callable[..., Path]) -> None:
    busy = """
    return function()
      process.cancel(process.pid(), "self")
      local ok, err = time.sleep("10s")              -- the pending cancel ends this wait at once
      local second = time.sleep("1ms")                -- only once
      return { slept = ok or false, kind = err and err:kind(), second = second }
    end
    """
    stuck = "return function() time.sleep('1h') end"
    app = process_app(make_app, {"busy": busy, "stuck": stuck})
    async with running(app) as system:
        assert await system.result(system.spawn("app:busy", "app:host")) == {
            "slept": False, "kind": "Canceled", "second": True}
        pid = system.spawn("app:stuck", "app:host")
        await settle(system, pid, "sleeping")
        await system.terminate(pid, "enough")
        ex = await system.wait(pid)
    assert ex.error is not None and ex.error.kind == "Terminated" and "enough" in ex.error.message


async def test_funcs_call_runs_in_a_thread_while_the_host_goes_on(make_app: Callable[..., Path]) -> None:
    caller = """
    return function()
      local fut = funcs.async("slow", 50)
      local v, err = funcs.call("slow", 1000)
      if err then return nil, err end
      local r = channel.select{ fut:channel():case_receive() }
      local missing, nf = funcs.call("nope")
      return { v = v, async = r.value, nf = nf:kind() }
    end
    """
    slow = """
    return function(ms)
      time.sleep(ms * 1000000)
      return ms
    end
    """
    app = process_app(make_app, {"caller": caller, "consumer": CONSUMER, "producer": PRODUCER},
                      functions={"slow": slow})
    async with running(app) as system:
        pid = system.spawn("app:caller", "app:host")
        await settle(system, pid, "calling app:slow")
        consumer = system.spawn("app:consumer", "app:host", 200)
        system.spawn("app:producer", "app:host", consumer, 1, 200)
        assert len((await system.result(consumer))["got"]) == 200
        actor = system.actor(pid)   # the host went on while the function ran in its thread
        assert actor is not None and actor.info()["state"] == "calling app:slow"
        assert await system.result(pid) == {"v": 1000, "async": 50, "nf": "NotFound"}


async def test_spawn_errors_name_the_entry(make_app: Callable[..., Path]) -> None:
    spawner = """
    return function()
      local _, a = process.spawn("missing", "host")
      local _, b = process.spawn("spawner", "nohost")
      local _, c = process.spawn("spawner", "host2")
      local _, d = process.with_options({ workflow_id = "x" }):spawn("spawner", "host")
      return { a = a:kind() .. ": " .. a:message(), b = b:kind() .. ": " .. b:message(), c = c:kind() .. ": " .. c:message(),
               d = d:kind() .. ": " .. d:message() }
    end
    """
    app = process_app(make_app, {"spawner": spawner}, entries="""
        - name: host2
          kind: temporal.worker
          client: client
        - name: client
          kind: temporal.client
          address: 127.0.0.1:1
    """)
    async with running(app) as system:
        out = await system.result(system.spawn("app:spawner", "app:host"))
        with pytest.raises(errors.NotFound, match="app:spawner"):
            system.spawn("app:nothing", "app:host")
    assert out["a"].startswith("NotFound: ") and "app:missing" in out["a"] and "app:spawner" in out["a"]
    assert out["b"].startswith("NotFound: ") and "app:nohost" in out["b"]
    assert out["c"].startswith("Unavailable: ") and "app:host2" in out["c"]
    assert out["d"].startswith("Invalid: ") and "workflow_id" in out["d"]


async def test_a_lua_error_fails_the_process_with_file_and_line(make_app: Callable[..., Path]) -> None:
    crash = """
    return function()
      local t = nil
      return t.field
    end
    """
    bad_result = "return function() return { f = function() end } end"
    app = process_app(make_app, {"crash": crash, "bad_result": bad_result})
    async with running(app) as system:
        ex = await system.wait(system.spawn("app:crash", "app:host"))
        bad = await system.wait(system.spawn("app:bad_result", "app:host"))
    assert ex.error is not None and ex.error.kind == "LuaError"
    assert "crash.lua:3" in str(ex.error)
    assert bad.error is not None and bad.error.kind == "Invalid" and "app:bad_result" in bad.error.message


async def test_thousands_of_blocked_processes_cost_no_cpu(make_app: Callable[..., Path]) -> None:
    idle = """
    return function()
      local msg = process.inbox():receive()
      return msg.n
    end
    """
    app = process_app(make_app, {"idle": idle})
    async with running(app) as system:
        host = system.host("app:host")
        pids = [system.spawn("app:idle", "app:host") for _ in range(5000)]
        await eventually(lambda: all(host.actors[p].activated for p in pids[-50:]), bool, what="all blocked")
        await eventually(lambda: not host._ready, bool, what="an empty run queue")
        cpu = time.process_time()
        await asyncio.sleep(0.3)
        assert time.process_time() - cpu < 0.1
        for n, pid in enumerate(pids):
            await system.send(pid, "n", {"n": n})
        results = [await system.result(p) for p in pids]
    assert results == list(range(5000))


async def test_a_function_called_by_a_process_reaches_processes_too(make_app: Callable[..., Path]) -> None:
    caller = """
    return function()
      process.registry.register("caller")
      local ok, err = funcs.call("notify", "caller")
      if err then return nil, err end
      local msg = process.inbox():receive()
      return { ok = ok, topic = msg:topic(), n = msg.n, from = msg:from() or "none" }
    end
    """
    notify = """
    return function(name)
      local ok, err = process.send(name, "notified", { n = 42 })
      if not ok then return nil, err end
      return true
    end
    """
    app = process_app(make_app, {"caller": caller}, functions={"notify": notify})
    async with running(app) as system:
        out = await system.result(system.spawn("app:caller", "app:host"))
    assert out == {"ok": True, "topic": "notified", "n": 42, "from": "none"}


async def test_a_runaway_process_fails_alone_and_the_host_goes_on(make_app: Callable[..., Path]) -> None:
    runaway = """
    return function()
      local msg = process.inbox():receive()     -- resumed with a message, then loops forever
      while true do end
    end
    """
    app = process_app(make_app, {"runaway": runaway, "consumer": CONSUMER, "producer": PRODUCER},
                      host="instruction_budget: 2000000")  # the process.host field
    async with running(app) as system:
        bad = system.spawn("app:runaway", "app:host")
        await settle(system, bad)
        await system.send(bad, "go", {"x": 1})
        ex = await system.wait(bad)
        consumer = system.spawn("app:consumer", "app:host", 50)
        system.spawn("app:producer", "app:host", consumer, 1, 50)
        assert (await system.result(consumer))["got"] == list(range(1, 51))
    assert ex.error is not None and ex.error.kind == "BudgetExceeded"
    assert "instruction budget of 2,000,000" in ex.error.message and "runaway.lua:3" in ex.error.message
