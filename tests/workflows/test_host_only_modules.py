"""The events and registry modules are for functions and processes (Wippy's labels): a workflow
that reaches them gets an error naming the module, never a silent no-op, and sends go through a
function it calls (an activity: in the history, so replay takes the same path). Real Temporal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from moontide import errors
from moontide.lua import _events
from moontide.runtime import load
from moontide_testing import TEMPORAL_ENTRIES, replay_in_fresh_process, running

APP = TEMPORAL_ENTRIES + """\
  - name: bus
    kind: library.lua
    source: |
      local events = require("events")
      local registry = require("registry")
      return { events = events, registry = registry }
    modules: [events, registry]
  - name: notify
    kind: function.lua
    source: "return function(n) return events.send('orders', 'order.created', '/orders/' .. n, { n = n }) end"
    modules: [events]
  - name: wf
    kind: workflow.lua
    imports: {bus: app:bus}
    modules: [funcs, errors]
    source: |
      return function()
        local bus = require("bus")
        local out = {}
        for name, call in pairs({ send = function() return bus.events.send("orders", "k", "/p") end,
                                  subscribe = function() return bus.events.subscribe("orders") end,
                                  get = function() return bus.registry.get("app:wf") end,
                                  snapshot = function() return bus.registry.snapshot() end }) do
          local ok, err = pcall(call)
          out[name] = ok and "no error" or (errors.is(err, errors.UNAVAILABLE) and err:message() or tostring(err))
        end
        out.sent = funcs.call("app:notify", 7)   -- the way a workflow sends: through a function
        return out
      end
"""


async def test_a_workflow_gets_an_error_naming_the_module(make_app: Callable[..., Path],
                                                          temporal_address: str) -> None:
    root = make_app({"app.yaml": APP})
    async with running(root, temporal_address) as rt:
        bus = _events.bus_for(rt.app)
        got: list[str] = []
        sub = bus.subscribe("orders", None, lambda: got.append("woken"))
        pid = await rt.spawn("app:wf", None)
        out = await rt.result(pid)
        for name, module in (("send", "events"), ("subscribe", "events"), ("get", "registry"),
                             ("snapshot", "registry")):
            assert out[name].startswith(f"the {module} module is for functions and processes"), out[name]
        assert out["sent"] is True
        assert json.loads(sub.take() or "") == {"system": "orders", "kind": "order.created", "path": "/orders/7",
                                                "data": {"n": 7}}
        assert sub.take() is None  # the workflow's own attempts sent nothing
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


@pytest.mark.parametrize("module", ["events", "registry"])
def test_listing_them_in_a_workflow_is_refused_at_load(make_app: Callable[..., Path], module: str) -> None:
    root = make_app({"app.yaml": TEMPORAL_ENTRIES + f"""\
  - name: wf
    kind: workflow.lua
    source: "return function() end"
    modules: [{module}]
"""})
    with pytest.raises(errors.EntryErrors, match=f"module '{module}' is not allowed in a workflow.lua"):
        load(root)
