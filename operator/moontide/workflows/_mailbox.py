"""What a workflow execution can wait on: messages, events, timers, futures.

Signals arrive as messages and are kept in arrival order until taken, so a
message that comes before the workflow asks for it, during replay or across a
worker crash is never lost or reordered. A receive on ``inbox`` takes the
first message whose topic nobody ``listen``s to; a receive on
``topic:<name>`` takes the first message of that topic (its payload), one on
``message:<name>`` the same as a whole message (``listen(topic, {message = true})``). All state changes
happen in workflow code (signal handlers, timers, tasks), so replay rebuilds
the same mailbox.
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

__all__ = ["CANCEL_FROM_SIGNAL", "FROM_METADATA", "MEMO_EVENTS", "MEMO_INBOX", "Mailbox", "message_payload"]

#: Payload metadata naming the sender pid of a message (absent from plain Temporal clients).
FROM_METADATA = "moontide-from"
#: Signal a canceller sends just before its cancel request, naming itself (its pid):
#: Temporal's cancel request carries a reason to the workflow, but not who sent it.
CANCEL_FROM_SIGNAL = "moontide.cancel_from"
#: Memo keys carrying unread messages and process events from a run to the one it continues as.
MEMO_INBOX = "moontide.inbox"
MEMO_EVENTS = "moontide.events"


_log = logging.getLogger("moontide.workflow")


def message_payload(payload_json: str, sender: str | None) -> RawValue:
    """A message as one JSON payload; the sender rides in the payload's metadata."""
    return RawValue(values.json_payload(payload_json, {FROM_METADATA: sender.encode()} if sender else None))


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []
        self.listening: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.timers: dict[str, int | None] = {}
        self.deadlines: dict[str, int] = {}
        self.futures: dict[str, asyncio.Task[tuple[bool, Any]]] = {}
        self.received = 0
        #: messages that could not be decoded: dropped, so they never block the ones after them
        self.dropped = 0

    # -- feeding ----------------------------------------------------------
    def signal(self, topic: str, args: Sequence[RawValue]) -> None:
        sender = None
        if args:
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
            await workflow.sleep(seconds)
            self.timers[timer_id] = workflow.time_ns()

        asyncio.ensure_future(fire())

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
                or channel in self.timers or channel in self.futures)

    def ready(self, channel: str) -> bool:
        if channel == "events":
            return bool(self.events)
        if channel == "inbox" or channel.startswith(("topic:", "message:")):
            return self._message_index(channel) is not None
        if channel in self.timers:
            return self.timers[channel] is not None
        task = self.futures.get(channel)
        return task is not None and task.done()

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
        # a done future stays ready, like a closed channel; future:result() still works
        return self.futures[channel].result()

    def describe(self, channels: Sequence[str]) -> str:
        def name(c: str) -> str:
            if c.startswith(("topic:", "message:")):
                return c.partition(":")[2] + " (listen)"
            if c in self.deadlines:
                at = datetime.datetime.fromtimestamp(self.deadlines[c] // 1_000_000_000, datetime.timezone.utc)
                return f"{c} (until {at.strftime('%Y-%m-%dT%H:%M:%SZ')})"
            return c

        return ", ".join(name(c) for c in channels)

