"""What a process can wait on: its inbox, topics it listens to, events, timers, futures.

Channel ids are the ones the Lua ``channel`` module uses (docs/architecture.md):
``inbox`` (messages whose topic nobody ``listen``s to, in arrival order),
``topic:<name>`` (messages of one topic, payload only), ``message:<name>`` (the same
as whole messages: ``process.listen(topic, {message = true})``), ``events`` (pid.exit,
pid.cancel, pid.link.down), ``timer:<n>`` (from ``time.after`` and ``time.timer``;
``time.ticker``'s are timers that fire again), ``future:<n>`` (from ``funcs.async``)
and ``op:<n>`` (a coroutine's blocking request started beside others') and ``event:<n>``
(an events module subscription). Messages
are kept as JSON text and turned into Lua values only when taken, in the
receiver's own Lua state.

The mailbox is plain data; the actor decides who is woken (see ``_actor``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections import deque
from typing import Any

from .. import errors

__all__ = ["Mailbox", "Message", "topic_of"]

#: (topic, sender pid or None, payload as JSON text or None)
Message = tuple[str, "str | None", "str | None"]


def topic_of(channel: str) -> str | None:
    """The topic a ``topic:<name>`` or ``message:<name>`` channel listens to; None for others."""
    if channel.startswith("topic:"):
        return channel[6:]
    if channel.startswith("message:"):
        return channel[8:]
    return None


class Mailbox:
    __slots__ = ("messages", "listening", "events", "timers", "futures", "canceled", "ops", "senders", "received",
                 "subs")

    def __init__(self) -> None:
        self.messages: deque[Message] = deque()
        self.listening: set[str] | None = None
        self.events: deque[dict[str, Any]] | None = None
        #: timer id -> [fire time in ns or None while pending, the loop's handle (None once fired or
        #: stopped), the interval in seconds of a ticker (None for a timer)]
        self.timers: dict[str, list[Any]] | None = None
        self.futures: dict[str, concurrent.futures.Future[Any]] | None = None
        #: futures canceled from Lua: they read as Canceled at once
        self.canceled: set[str] = set()
        #: started operations (``_actor._Op``): ready once their values are in
        self.ops: dict[str, Any] | None = None
        #: senders waiting for room: (callback taking True/False, message)
        self.senders: deque[tuple[Any, Message]] | None = None
        self.received = 0
        #: the events module's subscriptions (``lua._events.Subscription``) by channel id, ``event:<n>``
        self.subs: dict[str, Any] | None = None

    # -- feeding --------------------------------------------------------------
    def event(self, ev: dict[str, Any]) -> None:
        if self.events is None:
            self.events = deque()
        self.events.append(ev)

    def listen(self, topic: str) -> None:
        if self.listening is None:
            self.listening = set()
        self.listening.add(topic)

    # -- waiting --------------------------------------------------------------
    def _index(self, channel: str) -> int | None:
        """Index of the message a receive on ``inbox``, ``topic:<name>`` or ``message:<name>`` takes."""
        if channel == "inbox":
            if not self.listening:
                return 0 if self.messages else None
            for i, m in enumerate(self.messages):
                if m[0] not in self.listening:
                    return i
            return None
        topic = topic_of(channel)
        for i, m in enumerate(self.messages):
            if m[0] == topic:
                return i
        return None

    def known(self, channel: str) -> bool:
        if channel in ("inbox", "events") or topic_of(channel) is not None:
            return True
        return (bool(self.timers and channel in self.timers) or bool(self.futures and channel in self.futures)
                or bool(self.ops and channel in self.ops) or bool(self.subs and channel in self.subs))

    def ready(self, channel: str) -> bool:
        if channel == "inbox":
            if not self.messages:
                return False
            return not self.listening or self._index(channel) is not None
        if channel == "events":
            return bool(self.events)
        if topic_of(channel) is not None:
            return self._index(channel) is not None
        if self.timers and channel in self.timers:
            return self.timers[channel][0] is not None
        if self.futures and channel in self.futures:
            return self.futures[channel].done() or channel in self.canceled
        if self.ops and channel in self.ops:
            return self.ops[channel].values is not None
        if self.subs and channel in self.subs:
            return self.subs[channel].ready()
        return False

    def take_message(self, channel: str) -> Message:
        index = self._index(channel)
        assert index is not None
        if index == 0:
            message = self.messages.popleft()
        else:
            message = self.messages[index]
            del self.messages[index]
        self.received += 1
        return message

    def take_event(self) -> dict[str, Any]:
        assert self.events
        return self.events.popleft()

    def take_timer(self, channel: str) -> int:
        assert self.timers is not None
        entry = self.timers[channel]
        fired, entry[0] = entry[0], None
        if entry[2] is None:  # a timer fires once: its channel is done; a ticker's goes on
            del self.timers[channel]
        return int(fired)

    def take_op(self, channel: str) -> tuple[Any, ...]:
        assert self.ops is not None
        return self.ops.pop(channel).values

    def future_result(self, channel: str) -> tuple[bool, Any]:
        """(ok, value or MoontideError) of a done future; it stays ready, like a closed channel."""
        assert self.futures is not None
        fut = self.futures[channel]
        if fut.cancelled() or channel in self.canceled:
            return False, errors.Canceled("the call was canceled")
        e = fut.exception()
        if e is None:
            return True, fut.result()
        if isinstance(e, errors.MoontideError):
            return False, e
        return False, errors.Internal(f"{type(e).__name__}: {e}")

    def close(self) -> None:
        """Drop everything (the process has exited): cancel timers, fail waiting senders."""
        if self.timers:
            for _, handle, _ in self.timers.values():
                if isinstance(handle, asyncio.TimerHandle):
                    handle.cancel()
            self.timers = None
        self.ops = None
        if self.futures:
            for fut in self.futures.values():
                fut.cancel()
            self.futures = None
        senders, self.senders = self.senders, None
        if senders:
            for resume, _ in senders:
                resume(False)
        self.messages.clear()
        self.events = None
