"""The events module (Wippy's event bus) in function code: real lupa, real threads, no Temporal.

Processes and workflows meet it in tests/processes/test_events_processes.py and
tests/workflows/test_wippy_modules.py.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from lua_helpers import code_of

from moontide import errors
from moontide.lua import _events
from moontide.workflows import Functions

MODULES = ["events", "channel", "time", "errors"]


def _functions(**sources: str) -> Functions:
    return Functions({f"test:{name}": code_of(src, modules=MODULES, id=f"test:{name}") for name, src in sources.items()})


def test_a_function_receives_what_it_sent_to_a_pattern_it_subscribed_to() -> None:
    fns = _functions(entry="""
    return function()
      local sub, err = events.subscribe("orders.*")
      assert(sub, err)
      local other = assert(events.subscribe("orders.eu", "order.paid"))
      assert(events.send("orders.eu", "order.created", "/orders/1", { total = 99.5, items = { "a", "b" } }) == true)
      assert(events.send("billing", "order.created", "/orders/2"))          -- matches no subscription
      assert(events.send("orders.us", "order.paid", "/orders/3"))
      local ch = sub:channel()
      local a = ch:receive()
      local b = ch:receive()
      local picked = channel.select{ other:channel():case_receive(), default = true }
      local none = channel.select{ other:channel():case_receive(), default = true }
      return { a = a, b = b, picked = picked.default or false, none = none.default or false }
    end
    """)
    got = fns.call("test:entry", [])
    assert got["a"] == {"system": "orders.eu", "kind": "order.created", "path": "/orders/1",
                        "data": {"total": 99.5, "items": ["a", "b"]}}
    assert got["b"] == {"system": "orders.us", "kind": "order.paid", "path": "/orders/3"}  # no data: no field
    assert got["picked"] is True and got["none"] is True  # order.paid of orders.eu never came


def test_close_is_idempotent_and_drains_what_was_queued() -> None:
    fns = _functions(entry="""
    return function()
      local sub = assert(events.subscribe("s"))
      events.send("s", "k", "/p", 1)
      local first = sub:close()
      local second = sub:close()
      events.send("s", "k", "/p", 2)           -- after the close: not delivered
      local ch = sub:channel()
      local v1, ok1 = ch:receive()
      local v2, ok2 = ch:receive()
      local r = channel.select{ ch:case_receive() }
      return { first = first, second = second, v1 = v1.data, ok1 = ok1, v2 = v2 == nil, ok2 = ok2, sel_ok = r.ok }
    end
    """)
    assert fns.call("test:entry", []) == {"first": True, "second": True, "v1": 1, "ok1": True, "v2": True,
                                          "ok2": False, "sel_ok": False}


def test_errors_follow_wippys_table() -> None:
    fns = _functions(entry="""
    return function()
      local out = {}
      local function kind(v, err) return v == nil and err:kind() or "ok" end
      out.sub_empty = kind(events.subscribe(""))
      out.sub_number = kind(events.subscribe(5))
      out.send_system = kind(events.send("", "k", "/p"))
      out.send_kind = kind(events.send("s", "", "/p"))
      out.send_path = kind(events.send("s", "k", ""))
      out.send_fn = kind(events.send("s", "k", "/p", function() end))
      return out
    end
    """)
    assert fns.call("test:entry", []) == {k: "Invalid" for k in (
        "sub_empty", "sub_number", "send_system", "send_kind", "send_path", "send_fn")}


def test_a_waiting_function_wakes_for_an_event_another_function_sends() -> None:
    fns = _functions(
        waiter="""
        return function()
          local sub = assert(events.subscribe("jobs"))
          local ready = assert(events.send("sync", "subscribed", "/"))
          local got = {}
          for i = 1, 2 do
            local r = channel.select{ sub:channel():case_receive(), time.after("30s"):case_receive() }
            got[i] = r.value.data
          end
          sub:close()
          return got
        end
        """,
        send="""
        return function(n)
          return events.send("jobs", "job.done", "/jobs/" .. n, { n = n })
        end
        """,
    )
    bus = _events.bus_for(fns)
    subscribed = threading.Event()
    watcher = bus.subscribe("sync", None, subscribed.set)
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.setdefault("v", fns.call("test:waiter", [])))
    t.start()
    assert subscribed.wait(30)
    assert fns.call("test:send", [1]) is True
    assert fns.call("test:send", [2]) is True
    t.join(30)
    assert result["v"] == [{"n": 1}, {"n": 2}]
    bus.unsubscribe(watcher)
    assert len(bus) == 0  # the waiter's subscription went with its call


def test_subscriptions_end_with_the_call() -> None:
    fns = _functions(spy="""
    return function()
      assert(events.subscribe("*"))
      return true
    end
    """)
    assert fns.call("test:spy", []) is True
    assert len(_events.bus_for(fns)) == 0


def test_the_bus_drops_past_its_queue_and_never_blocks_a_sender() -> None:
    bus = _events.EventBus()
    sub = bus.subscribe("s", None, lambda: None)
    for i in range(_events.QUEUE + 5):
        bus.send("s", "k", "/", str(i))
    assert len(sub.queue) == _events.QUEUE and sub.dropped == 5


@pytest.mark.parametrize(("pattern", "system", "match"), [
    ("orders.*", "orders.eu", True), ("orders.*", "orders", False), ("*", "anything", True),
    ("orders", "orders", True), ("orders", "orders.eu", False), ("a.*.c", "a.b.c", True), ("o+", "oo", False),
])
def test_system_patterns(pattern: str, system: str, match: bool) -> None:
    assert _events.Subscription(pattern, None, lambda: None).matches(system, "k") is match


def test_without_an_app_the_host_says_so() -> None:
    from moontide.lua import Runtime
    from moontide.lua.host import FunctionHost

    with pytest.raises(errors.MoontideError, match="no app runtime") as e:
        FunctionHost(Runtime()).op_events_send("s", "k", "/p")
    assert e.value.kind == "Internal"
