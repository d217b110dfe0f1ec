"""Links and monitors: who hears about a crash, and who goes down with it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from _procs import process_app, running, settle
from moontide_testing import eventually

CRASHER = """
return function(how)
  process.inbox():receive()            -- wait for the word
  if how == "raise" then error("boom") end
  if how == "fail" then return nil, errors.new{ kind = "Unavailable", message = "service down" } end
  return "fine"
end
"""

# Monitors a crasher, tells it to go, and returns the event it gets.
WATCHER = """
return function(how)
  local child = process.spawn_monitored("crasher", "host", how)
  process.send(child, "go", {})
  local ev = process.events():receive()
  return { kind = ev.kind, from_child = ev.from == child, result = ev.result }
end
"""


async def test_a_monitor_gets_pid_exit_with_the_error_or_the_value(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"crasher": CRASHER, "watcher": WATCHER})
    async with running(app) as system:
        raised = await system.result(system.spawn("app:watcher", "app:host", "raise"))
        failed = await system.result(system.spawn("app:watcher", "app:host", "fail"))
        fine = await system.result(system.spawn("app:watcher", "app:host", "ok"))
    assert raised["kind"] == "pid.exit" and raised["from_child"] is True
    assert raised["result"]["error"]["kind"] == "LuaError"
    assert "crasher.lua:3: boom" in raised["result"]["error"]["message"]
    assert failed["result"]["error"] == {"kind": "Unavailable", "message": "service down", "retryable": False}
    assert fine == {"kind": "pid.exit", "from_child": True, "result": {"value": "fine"}}


async def test_a_linked_process_that_does_not_handle_events_goes_down_with_its_partner(
        make_app: Callable[..., Path]) -> None:
    parent = """
    return function()
      local child = process.spawn_linked("crasher", "host", "raise")
      process.send(child, "go", {})
      process.inbox():receive()           -- never handles events: dies with the child
      return "survived"
    end
    """
    app = process_app(make_app, {"crasher": CRASHER, "parent": parent})
    async with running(app) as system:
        pid = system.spawn("app:parent", "app:host")
        ex = await system.wait(pid)
    assert ex.error is not None and ex.error.kind == "Terminated"
    assert "linked process {app:host|" in ex.error.message and "boom" in ex.error.message


async def test_a_process_that_handles_events_gets_link_down_and_lives(make_app: Callable[..., Path]) -> None:
    supervisor = """
    return function()
      local child = process.spawn_linked("crasher", "host", "raise")
      local clean = process.spawn_linked("crasher", "host", "ok")
      process.send(child, "go", {})
      local ev = process.events():receive()
      process.send(clean, "go", {})
      local ev2 = process.events():receive()
      return { kind = ev.kind, from = ev.from == child, error = ev.result.error:kind(),
               clean = ev2.kind, clean_from = ev2.from == clean, clean_value = ev2.result.value }
    end
    """
    app = process_app(make_app, {"crasher": CRASHER, "supervisor": supervisor})
    async with running(app) as system:
        out = await system.result(system.spawn("app:supervisor", "app:host"))
    assert out == {"kind": "pid.link.down", "from": True, "error": "LuaError",
                   "clean": "pid.exit", "clean_from": True, "clean_value": "fine"}


async def test_a_failure_travels_down_a_chain_of_links(make_app: Callable[..., Path]) -> None:
    link = """
    return function(depth)
      if depth > 0 then process.spawn_linked("link", "host", depth - 1) end
      if depth == 0 then process.registry.register("tail") end
      process.inbox():receive()
      error("the tail fails")
    end
    """
    app = process_app(make_app, {"link": link})
    async with running(app) as system:
        head = system.spawn("app:link", "app:host", 200)
        host = system.host("app:host")
        await eventually(lambda: len(host.actors) == 201 and "tail" in system.registry.names, bool,
                         what="201 linked processes")
        await system.send("tail", "go")
        ex = await system.wait(head)
        assert not host.actors
    assert ex.error is not None and ex.error.kind == "Terminated"


async def test_terminate_tells_monitors_and_demonitor_unlink_stop_the_news(make_app: Callable[..., Path]) -> None:
    watcher = """
    return function(target, other)
      process.monitor(target)
      process.monitor(other)
      process.demonitor(other)
      process.link(other)
      process.unlink(other)
      process.send(target, "ready", {})
      local ev = process.events():receive()
      local more = channel.select{ process.events():case_receive(), time.after("100ms"):case_receive() }
      return { kind = ev.kind, error = ev.result.error:kind(), quiet = more.channel ~= process.events() }
    end
    """
    idle = """
    return function()
      process.inbox():receive()
      process.inbox():receive()
    end
    """
    app = process_app(make_app, {"watcher": watcher, "idle": idle})
    async with running(app) as system:
        target = system.spawn("app:idle", "app:host")
        other = system.spawn("app:idle", "app:host")
        watcher_pid = system.spawn("app:watcher", "app:host", target, other)
        await settle(system, watcher_pid)
        await system.terminate(target, "test")
        await system.terminate(other, "test")
        out = await system.result(watcher_pid)
    assert out == {"kind": "pid.exit", "error": "Terminated", "quiet": True}


async def test_exec_waits_for_a_child_process(make_app: Callable[..., Path]) -> None:
    child = "return function(a, b) return a + b end"
    failing = "return function() error('nope') end"
    parent = """
    return function()
      local sum = process.exec("child", "host", 2, 3)
      local _, err = process.exec("failing", "host")
      return { sum = sum, err = err:kind() }
    end
    """
    app = process_app(make_app, {"child": child, "failing": failing, "parent": parent})
    async with running(app) as system:
        assert await system.result(system.spawn("app:parent", "app:host")) == {"sum": 5, "err": "LuaError"}
