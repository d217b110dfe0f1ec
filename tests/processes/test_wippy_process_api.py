"""Wippy's process API on a process host: spawners with ``:with_name`` / ``:with_message``,
``spawn_linked_monitored``, ``process.set_options`` / ``get_options``, ``process.unmonitor``,
``process.listen(topic, {message = true})``, ``process.unlisten`` and ``process.upgrade``.

Written from wippyai/docs en/lua/core/process.md ("Spawner with Options", "SpawnBuilder Methods",
"Monitoring and Linking", "Process Options", "Topic Subscription", "Message Objects", "Process Upgrade").
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide import errors

ECHO = """
return function(tag)
  local inbox = process.inbox()
  local got = {}
  while true do
    local msg = inbox:receive()
    if msg:topic() == "stop" then return { tag = tag, got = got } end
    got[#got + 1] = { topic = msg:topic(), from = msg:from(), data = msg:payload():data() }
  end
end
"""


async def test_a_named_spawn_with_startup_messages(make_app: Callable[..., Path]) -> None:
    parent = """
    return function()
      local spawner = process
          .with_options({})
          :with_name("echo-1")
          :with_message("hello", {n = 1})
          :with_message("pair", "a", "b")
      local pid = assert(spawner:spawn_linked_monitored("echo", "host", "named"))
      local looked_up = process.registry.lookup("echo-1")
      local _, taken = spawner:spawn("echo", "host", "again")
      process.send("echo-1", "stop")
      local ev = process.events():receive()
      return { same = looked_up == pid, taken = errors.is(taken, errors.ALREADY_EXISTS), kind = ev.kind,
               result = ev.result.value, me = process.pid() }
    end
    """
    app = process_app(make_app, {"echo": ECHO, "parent": parent})
    async with running(app) as system:
        out = await system.result(system.spawn("app:parent", "app:host"))
        assert out["same"] is True and out["taken"] is True and out["kind"] == "pid.exit"
        # the startup messages came first, in order, from the spawner
        assert out["result"] == {"tag": "named", "got": [
            {"topic": "hello", "from": out["me"], "data": {"n": 1}},
            {"topic": "pair", "from": out["me"], "data": ["a", "b"]}]}
        # from Python too; the name is free again once the process has ended
        pid = system.spawn("app:echo", "app:host", "py", name="echo-1", messages=[("hi", 1)])
        assert system.registry.lookup("echo-1") == pid
        with pytest.raises(errors.MoontideError, match="taken"):
            system.spawn("app:echo", "app:host", name="echo-1")
        await system.send(pid, "stop")
        assert await system.result(pid) == {"tag": "py", "got": [{"topic": "hi", "data": 1}]}


async def test_process_options_and_unmonitor(make_app: Callable[..., Path]) -> None:
    crasher = """
    return function()
      process.inbox():receive()
      error("boom")
    end
    """
    parent = """
    return function()
      local before = process.get_options()
      local ok = process.set_options({trap_links = true})
      local bad_ok, bad = process.set_options({trap_links = "yes"})
      local linked = assert(process.spawn_linked("crasher", "host"))
      process.send(linked, "go")
      local ev = process.events():receive()                  -- trapped: an event, no death
      local quiet = assert(process.spawn_monitored("crasher", "host"))
      assert(process.unmonitor(quiet))
      process.send(quiet, "go")
      time.sleep("200ms")
      local later = channel.select{ process.events():case_receive(), default = true }
      return { before = before.trap_links, ok = ok, after = process.get_options().trap_links,
               bad_ok = bad_ok, bad = tostring(bad), kind = ev.kind, quiet = later.default == true }
    end
    """
    app = process_app(make_app, {"crasher": crasher, "parent": parent})
    async with running(app) as system:
        out = await system.result(system.spawn("app:parent", "app:host"))
    assert out == {"before": False, "ok": True, "after": True, "bad_ok": False, "bad": out["bad"],
                   "kind": "pid.link.down", "quiet": True}
    assert "trap_links must be a boolean" in out["bad"]


async def test_listen_with_message_objects_and_unlisten(make_app: Callable[..., Path]) -> None:
    listener = """
    return function()
      local ch = process.listen("request", {message = true})
      local msg = ch:receive()
      local first = { from = msg:from(), data = msg:payload():data(), topic = msg:topic() }
      process.unlisten(ch)                                   -- the topic goes to the inbox again
      local again = process.inbox():receive()
      return { first = first, again = again:topic() }
    end
    """
    sender = """
    return function(target)
      process.send(target, "request", {n = 1})
      process.send(target, "request", {n = 2})
      return process.pid()
    end
    """
    app = process_app(make_app, {"listener": listener, "sender": sender})
    async with running(app) as system:
        target = system.spawn("app:listener", "app:host")
        await settle(system, target)
        me = await system.result(system.spawn("app:sender", "app:host", target))
        out = await system.result(target)
    assert out == {"first": {"from": me, "data": {"n": 1}, "topic": "request"}, "again": "request"}


async def test_upgrade_keeps_the_pid_and_the_inbox(make_app: Callable[..., Path]) -> None:
    v1 = """
    return function(state)
      local msg = process.inbox():receive()
      if msg:topic() == "upgrade" then
        process.upgrade("v2", { seen = msg:payload():data(), version = 1 })
      end
      return "v1 ended"
    end
    """
    v2 = """
    return function(state)
      local _, bad = process.upgrade("nope")
      local msg = process.inbox():receive()                  -- sent before the upgrade, still there
      return { state = state, next = msg:topic(), pid = process.pid(), bad = errors.is(bad, errors.NOT_FOUND) }
    end
    """
    app = process_app(make_app, {"v1": v1, "v2": v2})
    async with running(app) as system:
        pid = system.spawn("app:v1", "app:host")
        await settle(system, pid)
        await system.send(pid, "upgrade", "x")
        await system.send(pid, "after", None)
        out = await system.result(pid)
    assert out == {"state": {"seen": "x", "version": 1}, "next": "after", "pid": pid, "bad": True}


async def test_a_process_starts_a_named_workflow_by_its_task_queue_with_a_startup_message(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    from moontide.runtime import AppRuntime

    greeter = """
    return function(input)
      local msg = process.inbox():receive()
      return { name = input.name, topic = msg:topic(), data = msg:payload():data(), from = msg:from() }
    end
    """
    caller = """
    return function(queue, name)
      local spawner = process.with_options({}):with_name(name):with_message("hello", {text = "hi"})
      local wf = assert(spawner:spawn_monitored("greeter", queue, { name = "ada" }))
      local again = assert(spawner:spawn("greeter", queue, { name = "bob" }))  -- the running one
      local ev = process.events():receive()
      return { same = wf == again, result = ev.result.value, me = process.pid() }
    end
    """
    app = process_app(make_app, {"caller": caller}, workflows={"greeter": greeter})
    name = f"greeter-{uuid.uuid4().hex[:8]}"
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        out = await rt.processes.result(rt.processes.spawn("app:caller", "app:host", task_queue, name))
    assert out["same"] is True
    # the second spawn answered the running workflow, and its message reached it after the first
    assert out["result"] == {"name": "ada", "topic": "hello", "data": {"text": "hi"}, "from": out["me"]}


async def test_exec_uses_the_spawners_name_and_startup_messages(make_app: Callable[..., Path]) -> None:
    first = """
    return function(name)
      local msg = process.inbox():receive()
      local second = process.inbox():receive()
      return { topic = msg:topic(), data = msg:payload():data(), from = msg:from(), second = second:topic(),
               named = process.registry.lookup(name) == process.pid() }
    end
    """
    parent = """
    return function()
      local out, err = process.with_options({})
          :with_name("exec-1")
          :with_message("hello", {n = 1})
          :with_message("bye")
          :exec("first", "host", "exec-1")
      if out == nil then return nil, err end
      local _, free = process.registry.lookup("exec-1")
      return { out = out, me = process.pid(), free = errors.is(free, errors.NOT_FOUND) }
    end
    """
    app = process_app(make_app, {"first": first, "parent": parent})
    async with running(app) as system:
        res = await system.result(system.spawn("app:parent", "app:host"))
    assert res["out"] == {"topic": "hello", "data": {"n": 1}, "from": res["me"], "second": "bye", "named": True}
    assert res["free"] is True  # the name went with the process
