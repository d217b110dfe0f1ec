"""The events and registry modules on a process host: processes and the functions they call share one bus.

Written from wippyai/docs en/lua/core/events.md: subscribe with a system pattern and a kind,
receive from ``sub:channel()`` (also in ``channel.select``), ``sub:close()`` idempotent,
``events.send`` -> true. Real lupa, a real ProcessSystem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

import _procs
from _procs import process_app, running, settle

LISTENER = """
return function()
  local sub = assert(events.subscribe("orders.*", "order.created"))
  local all = assert(events.subscribe("orders.*"))
  process.send(process.registry.lookup("driver") or "", "ready", true)
  local got, others, seen = {}, 0, {}
  while #got < 2 do
    local r = channel.select{ sub:channel():case_receive(), process.inbox():case_receive() }
    if r.channel == sub:channel() then got[#got + 1] = { system = r.value.system, path = r.value.path, data = r.value.data } end
  end
  -- the other subscription saw every order event, the created ones and the paid one
  while true do
    local r = channel.select{ all:channel():case_receive(), default = true }
    if r.default then break end
    others = others + 1
    seen[#seen + 1] = r.value.kind .. r.value.path
  end
  local closed = all:close() and all:close()
  local v, ok = all:channel():receive()
  return { seen = seen, got = got, others = others, closed = closed, after_close = ok }
end
"""

DRIVER = """
return function()
  process.registry.register("driver")
  local listener = process.spawn_monitored("listener", "host")
  local ready = process.inbox():receive()
  assert(events.send("orders.eu", "order.paid", "/orders/1"))
  assert(events.send("orders.eu", "order.created", "/orders/1", { n = 1 }))
  assert(funcs.call("app:notify", 2))                  -- from a function the process calls
  assert(events.send("billing", "order.created", "/orders/3"))
  local ev = process.events():receive()
  return ev.result.value
end
"""

NOTIFY = """
return function(n)
  return events.send("orders.us", "order.created", "/orders/" .. n, { n = n })
end
"""


@pytest.fixture(autouse=True)
def _modules(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_procs, "PROCESS_MODULES", "[process, channel, time, errors, json, funcs, events, registry]")
    monkeypatch.setattr(_procs, "FUNCTION_MODULES", "[errors, json, events]")


async def test_processes_and_their_functions_share_the_bus(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"listener": LISTENER, "driver": DRIVER}, functions={"notify": NOTIFY})
    async with running(app) as system:
        out = await system.result(system.spawn("app:driver", "app:host"))
    assert out["got"] == [{"system": "orders.eu", "path": "/orders/1", "data": {"n": 1}},
                          {"system": "orders.us", "path": "/orders/2", "data": {"n": 2}}]
    assert out["others"] == 3, out["seen"]
    assert out["closed"] is True and out["after_close"] is False


async def test_a_process_exit_ends_its_subscriptions(make_app: Callable[..., Path]) -> None:
    from moontide.lua import _events

    waiter = """
    return function()
      local sub = assert(events.subscribe("x"))
      return sub:channel():receive()
    end
    """
    app = process_app(make_app, {"waiter": waiter})
    async with running(app) as system:
        pid = system.spawn("app:waiter", "app:host")
        await settle(system, pid)
        bus = _events.bus_for(system.app)
        assert len(bus) == 1
        await system.cancel(pid)
        await system.wait(pid)
        assert len(bus) == 0


async def test_a_process_reads_the_registry(make_app: Callable[..., Path]) -> None:
    reader = """
    return function()
      local me = assert(registry.get("app:reader"))
      local hosts = assert(registry.find({ [".kind"] = "process.host" }))
      local _, err = registry.snapshot():changes():apply()
      return { kind = me.kind, source = me.data.source, hosts = #hosts, denied = err:kind() }
    end
    """
    app = process_app(make_app, {"reader": reader})
    async with running(app) as system:
        out = await system.result(system.spawn("app:reader", "app:host"))
    assert out == {"kind": "process.lua", "source": "file://reader.lua", "hosts": 1, "denied": "PermissionDenied"}
