"""What a workflow execution can wait on: messages, events, timers, tickers, futures, operations.

Signals arrive as messages and are kept in arrival order until taken, so a
message that comes before the workflow asks for it, during replay or across a
worker crash is never lost or reordered. A receive on ``inbox`` takes the
first message whose topic nobody ``listen``s to; a receive on
``topic:<name>`` takes the first message of that topic (its payload), one on
``message:<name>`` the same as a whole message (``listen(topic, {message =
true})``). All state changes happen in workflow code (signal handlers,
timers, tasks), so replay rebuilds the same mailbox. Operations (``op:<n>``) are blocking requests of coroutines
started side by side (``modules/_sched.lua``); one is ready when it has ended.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Sequence
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue

from .. import errors, values
from ..protocol import CANCEL_FROM_SIGNAL, FROM_METADATA, MEMO_EVENTS, MEMO_INBOX
from ..values import message_payload
from . import _commands

__all__ = ["CANCEL_FROM_SIGNAL", "FROM_METADATA", "MEMO_EVENTS", "MEMO_INBOX", "Mailbox", "message_payload"]



_log = logging.getLogger("moontide.workflow")


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.listening: set[str] = set()
        self.events: list[dict[str, Any]] = []
        #: timer id -> when it fired (ns), None while it has not
        self.timers: dict[str, int | None] = {}
        self.deadlines: dict[str, int] = {}
        #: the tasks of timers that may still fire (time.timer's stop/reset cancel them)
        self.timer_tasks: dict[str, asyncio.Task[None]] = {}
        #: ticker id -> the tick not yet read (ns) or None, and its task (None once stopped)
        self.tickers: dict[str, list[Any]] = {}
        self.futures: dict[str, asyncio.Task[tuple[bool, Any]]] = {}
        #: futures canceled from Lua: they read as Canceled at once
        self.canceled: set[str] = set()
        #: started operations: their task gives the values to resume their coroutine with
        self.ops: dict[str, asyncio.Task[tuple[Any, ...]]] = {}
        #: what each started operation waits for (for the status query)
        self.op_what: dict[str, str] = {}
        self.received = 0
        #: messages that could not be decoded: dropped, so they never block the ones after them
        self.dropped = 0

    # -- feeding ----------------------------------------------------------
    def signal(self, topic: str, args: Sequence[RawValue], sender: str | None = None) -> None:
        """A message: a signal (its sender from the payload's metadata), or an update (``sender``: its reply pid)."""
        if args and sender is None:
            raw = args[0].payload.metadata.get(FROM_METADATA)
            sender = raw.decode("utf-8", "replace") if raw else None
        try:
            data = [values.from_payload(a.payload, "payload" if len(args) == 1 else f"payload[{i}]")
                    for i, a in enumerate(args, 1)]
        except errors.Invalid as e:
            # A signal is in the history before the workflow sees it: nobody is left
            # to answer, and raising would fail this task on every replay, wedging
            # the execution. Decided from the payload alone, so a replay drops it too.
            self.dropped += 1
            if not workflow.unsafe.is_replaying():
                info = workflow.info()
                _log.warning("[%s %s] dropped message %r from %s: %s", info.workflow_type, info.workflow_id,
                             topic, sender or "a Temporal client", e.message)
            return
        payload = data[0] if len(data) == 1 else (data or None)
        self.messages.append({"topic": topic, "from": sender, "payload": payload})
        self.received += 1

    def event(self, kind: str, sender: str | None = None, result: dict[str, Any] | None = None,
              **fields: Any) -> None:
        ev: dict[str, Any] = {"kind": kind}
        if sender is not None:
            ev["from"] = sender
        if result is not None:
            ev["result"] = result
        ev.update((k, v) for k, v in fields.items() if v is not None)
        self.events.append(ev)

    def start_timer(self, timer_id: str, seconds: float) -> None:
        self.timers[timer_id] = None
        self.deadlines[timer_id] = workflow.time_ns() + int(seconds * 1e9)

        async def fire() -> None:
            await _commands.sleep(seconds)
            self.timers[timer_id] = workflow.time_ns()
            del self.timer_tasks[timer_id]

        self.timer_tasks[timer_id] = asyncio.ensure_future(fire())

    def stop_timer(self, timer_id: str) -> bool:
        """Stop a timer that has not fired: its channel never gets a value. Whether it was running."""
        task = self.timer_tasks.pop(timer_id, None)
        if task is None:
            return False
        task.cancel()  # Temporal cancels the timer
        self.deadlines.pop(timer_id, None)
        return True

    def reset_timer(self, timer_id: str, seconds: float) -> bool:
        """Start a running timer over with a new duration; False (and nothing) once it has fired or stopped."""
        if not self.stop_timer(timer_id):
            return False
        self.start_timer(timer_id, seconds)
        return True

    def start_ticker(self, ticker_id: str, seconds: float) -> None:
        entry: list[Any] = [None, None]

        async def tick() -> None:
            while True:
                await _commands.sleep(seconds)
                entry[0] = workflow.time_ns()  # an unread tick is replaced, as Go's ticker drops them

        entry[1] = asyncio.ensure_future(tick())
        self.tickers[ticker_id] = entry

    def stop_ticker(self, ticker_id: str) -> bool:
        entry = self.tickers.get(ticker_id)
        if entry is None or entry[1] is None:
            return False
        entry[1].cancel()
        entry[1] = None
        return True

    # -- waiting ----------------------------------------------------------
    def _message_index(self, channel: str) -> int | None:
        if channel == "inbox":
            for i, m in enumerate(self.messages):
                if m["topic"] not in self.listening:
                    return i
        else:
            topic = channel.partition(":")[2]
            for i, m in enumerate(self.messages):
                if m["topic"] == topic:
                    return i
        return None

    def known(self, channel: str) -> bool:
        return (channel in ("inbox", "events") or channel.startswith(("topic:", "message:"))
                or channel in self.timers or channel in self.futures or channel in self.ops or channel in self.tickers)

    def ready(self, channel: str) -> bool:
        if channel == "events":
            return bool(self.events)
        if channel == "inbox" or channel.startswith(("topic:", "message:")):
            return self._message_index(channel) is not None
        if channel in self.timers:
            return self.timers[channel] is not None
        task = self.futures.get(channel)
        if task is not None:
            return task.done() or channel in self.canceled
        task = self.ops.get(channel)
        if task is not None:
            return task.done()
        ticker = self.tickers.get(channel)
        return ticker is not None and ticker[0] is not None

    def take(self, channel: str) -> tuple[bool, Any]:
        """(ok, value) of a ready channel; topic channels give the payload itself."""
        if channel == "events":
            return True, self.events.pop(0)
        if channel == "inbox" or channel.startswith(("topic:", "message:")):
            index = self._message_index(channel)
            assert index is not None
            message = self.messages.pop(index)
            return True, message["payload"] if channel.startswith("topic:") else message
        if channel in self.timers:
            self.deadlines.pop(channel, None)
            return True, self.timers.pop(channel)
        if channel in self.tickers:
            entry = self.tickers[channel]
            at, entry[0] = entry[0], None
            return True, at
        # a done future stays ready, like a closed channel; future:result() still works
        return self.future_outcome(channel)

    def future_outcome(self, channel: str) -> tuple[bool, Any]:
        """(ok, value or MoontideError) of a done (or canceled) future."""
        task = self.futures[channel]
        if channel in self.canceled or task.cancelled():
            return False, errors.Canceled("the call was canceled")
        return task.result()

    def describe(self, channels: Sequence[str]) -> str:
        def name(c: str) -> str:
            if c.startswith(("topic:", "message:")):
                return c.partition(":")[2] + " (listen)"
            if c in self.deadlines:
                at = datetime.datetime.fromtimestamp(self.deadlines[c] // 1_000_000_000, datetime.timezone.utc)
                return f"{c} (until {at.strftime('%Y-%m-%dT%H:%M:%SZ')})"
            if c in self.op_what:
                return f"{c} ({self.op_what[c]})"
            return c

        return ", ".join(name(c) for c in channels)

