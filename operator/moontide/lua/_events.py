"""The events module's bus (Wippy's event bus): best-effort publish/subscribe inside one app runtime.

One bus per app (``bus_for``): the functions and processes an ``AppRuntime`` (or a
``ProcessSystem``) runs share it; other worker processes, pods and apps do not see
its events, and nothing is kept for a subscriber that comes later. An event is
JSON text from the moment it is sent (``{"system", "kind", "path", "data"?}``) and
becomes a Lua table only in the subscriber's own Lua state, so no two executions
share a table. A subscription keeps up to ``QUEUE`` unread events; past that the
newest are dropped (the bus never blocks a sender).

Sends come from function threads and from the process hosts' loop: the bus is
locked, and each subscription's ``notify`` is called from the sender's thread
(the subscriber hops to its own thread or loop).
"""

from __future__ import annotations

import json
import re
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from .. import errors

__all__ = ["QUEUE", "EventBus", "Subscription", "bus_for", "event_json"]

#: Unread events a subscription keeps; past that, new ones are dropped for it.
QUEUE = 1024


def _pattern(system: str) -> re.Pattern[str] | None:
    """A system pattern: ``*`` stands for any run of characters (``orders.*``, ``*``); None for a plain name."""
    if "*" not in system:
        return None
    return re.compile(".*".join(re.escape(part) for part in system.split("*")), re.S)


class Subscription:
    """What one execution subscribed to: events queued as JSON text until it takes them."""

    __slots__ = ("system", "kind", "_match", "queue", "closed", "notify", "dropped")

    def __init__(self, system: str, kind: str | None, notify: Callable[[], None]) -> None:
        self.system = system
        self.kind = kind or None
        self._match = _pattern(system)
        self.queue: deque[str] = deque()
        self.closed = False
        self.notify = notify
        self.dropped = 0

    def matches(self, system: str, kind: str) -> bool:
        if self.kind is not None and kind != self.kind:
            return False
        return system == self.system if self._match is None else self._match.fullmatch(system) is not None

    def take(self) -> str | None:
        """The oldest unread event, or None (none yet, or closed and drained)."""
        try:
            return self.queue.popleft()
        except IndexError:
            return None

    def ready(self) -> bool:
        """An event is there, or the subscription is closed (its channel then answers nil, false)."""
        return bool(self.queue) or self.closed


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, Subscription] = {}

    def subscribe(self, system: str, kind: str | None, notify: Callable[[], None]) -> Subscription:
        sub = Subscription(system, kind, notify)
        with self._lock:
            self._subs[id(sub)] = sub
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs.pop(id(sub), None)
        sub.closed = True

    def send(self, system: str, kind: str, path: str, data_json: str | None) -> int:
        """Queue the event for every open subscription it matches; how many took it."""
        text = event_json(system, kind, path, data_json)
        with self._lock:
            targets = [s for s in self._subs.values() if not s.closed and s.matches(system, kind)]
        took = []
        for sub in targets:
            if len(sub.queue) >= QUEUE:
                sub.dropped += 1
                continue
            sub.queue.append(text)
            took.append(sub)
        for sub in took:  # once every queue has it: a subscriber woken by one finds it in its others too
            sub.notify()
        return len(took)

    def __len__(self) -> int:
        with self._lock:
            return len(self._subs)


def event_json(system: str, kind: str, path: str, data_json: str | None) -> str:
    head = json.dumps({"system": system, "kind": kind, "path": path})
    if data_json is None or data_json == "null":
        return head
    return head[:-1] + ', "data": ' + data_json + "}"


def check_text(value: Any, what: str, *, empty_ok: bool = False) -> str:
    """An events argument: a string, non-empty unless ``empty_ok``; Invalid otherwise (Wippy's errors)."""
    if not isinstance(value, str):
        raise errors.Invalid(f"events: {what} must be a string")
    if not value and not empty_ok:
        raise errors.Invalid(f"events: {what} cannot be empty")
    return value


#: id(app) -> its bus; an entry goes away with its app
_buses: dict[int, EventBus] = {}
_buses_lock = threading.Lock()


def bus_for(owner: Any) -> EventBus:
    """The bus of ``owner`` (an ``entries.App``, or whatever stands for one app runtime)."""
    key = id(owner)
    with _buses_lock:
        bus = _buses.get(key)
        if bus is None:
            bus = _buses[key] = EventBus()
            weakref.finalize(owner, _forget, key)
        return bus


def _forget(key: int) -> None:
    with _buses_lock:
        _buses.pop(key, None)

