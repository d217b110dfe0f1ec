"""The Temporal commands a Lua workflow makes, each with the Lua line that made it.

When a replay diverges from history, Temporal names only a history event
("HistoryEvent(id: 5, TimerStarted)"); ``moontide replay`` and a worker's
``ReplayGuard`` name both sides: what history recorded there and what the code
did instead, at which line (``divergence``).
Activities, local activities, children, signals and continue-as-new are seen
by a workflow interceptor, timers by ``sleep`` (the SDK has no hook for them).
An execution keeps notes only when its replay is checked (``Execution.noting``):
a replay check, or a worker replaying other code than the execution started with.
Commands are described the way ``describe_event`` describes history events,
so the two compare as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.worker import (
    ContinueAsNewInput,
    Interceptor,
    SignalChildWorkflowInput,
    SignalExternalWorkflowInput,
    StartActivityInput,
    StartChildWorkflowInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)

from .. import durations

__all__ = ["INTERCEPTOR", "Divergence", "describe_event", "divergence", "recorded_commands", "same", "sleep", "timer"]


def timer(microseconds: int) -> str:
    return f"timer {durations.format_ns(microseconds * 1000)}"


def _note(what: str) -> None:
    execution = getattr(workflow.instance(), "execution", None)
    if execution is not None:
        execution.note(what)


async def sleep(seconds: float) -> None:
    """``workflow.sleep``, noted as a timer command (a zero sleep makes none)."""
    if seconds > 0:
        _note(timer(round(seconds * 1e6)))  # the SDK sends timers with microseconds
    await workflow.sleep(seconds)


def describe_event(event: Any) -> str | None:
    """A history event that a command made, described as ``_note`` describes the command; None for others."""
    kind = event.WhichOneof("attributes")
    a: Any = getattr(event, kind) if kind else None
    if kind == "activity_task_scheduled_event_attributes":
        return f"activity {a.activity_type.name}"
    if kind == "timer_started_event_attributes":
        return timer(a.start_to_fire_timeout.ToMicroseconds())
    if kind == "start_child_workflow_execution_initiated_event_attributes":
        return f"child workflow {a.workflow_type.name}"
    if kind == "signal_external_workflow_execution_initiated_event_attributes":
        return f"signal {a.signal_name} to {a.workflow_execution.workflow_id}"
    if kind == "marker_recorded_event_attributes" and a.marker_name == "core_local_activity":
        return "local activity"  # its type sits in an encoded payload; the position is what matters
    if kind == "workflow_execution_continued_as_new_event_attributes":
        return f"continue-as-new {a.workflow_type.name}"
    return None


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> Any:
        _note(f"activity {input.activity}")
        return self.next.start_activity(input)

    def start_local_activity(self, input: StartLocalActivityInput) -> Any:
        _note("local activity")
        return self.next.start_local_activity(input)

    async def start_child_workflow(self, input: StartChildWorkflowInput) -> Any:
        _note(f"child workflow {input.workflow}")
        return await self.next.start_child_workflow(input)

    async def signal_external_workflow(self, input: SignalExternalWorkflowInput) -> None:
        _note(f"signal {input.signal} to {input.workflow_id}")
        await self.next.signal_external_workflow(input)

    async def signal_child_workflow(self, input: SignalChildWorkflowInput) -> None:
        _note(f"signal {input.signal} to {input.child_workflow_id}")
        await self.next.signal_child_workflow(input)

    def continue_as_new(self, input: ContinueAsNewInput) -> Any:
        _note(f"continue-as-new {input.workflow or workflow.info().workflow_type}")
        return self.next.continue_as_new(input)


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class CommandInterceptor(Interceptor):
    """Notes each command a Lua workflow makes (``Execution.note``)."""

    def workflow_interceptor_class(self, input: WorkflowInterceptorClassInput) -> type[_Inbound]:
        return _Inbound


#: The one workers and replayers register (it holds no state).
INTERCEPTOR = CommandInterceptor()


_EVENT_ID = re.compile(r"HistoryEvent\(id: (\d+)")


@dataclass(frozen=True)
class Divergence:
    """Where replaying code left the recorded path."""

    history: str | None
    """The command history recorded there (``activity app.api:charge_card``); None: history had no more."""
    code: str | None
    """The command the code made instead (``timer 24h``); None: it made none there."""
    where: str | None
    """``file:line`` of the Lua that made the code's command (or where the code was when it made none)."""
    temporal: str
    """Temporal's own message."""

    def __str__(self) -> str:
        had = f"history has {self.history}" if self.history else "history has no further command"
        did = f"code made {self.code}" if self.code else "code made no command there"
        return f"{self.where or '?'}: {had}, {did}"


def recorded_commands(history: WorkflowHistory) -> list[tuple[int, str]]:
    """(event ID, description) of each command event in ``history``, in order."""
    return [(e.event_id, d) for e in history.events if (d := describe_event(e)) is not None]


def same(had: str | None, did: str | None) -> bool:
    """Whether two commands match as Temporal matches them: a timer's duration may change, its place not."""
    if had is not None and did is not None and had.startswith("timer ") and did.startswith("timer "):
        return True
    return had == did


def divergence(history: WorkflowHistory, execution: Any, message: str) -> Divergence:
    """The first command where code and history part ways (``execution``: an ``Execution`` that noted its commands)."""
    recorded = recorded_commands(history)
    made: list[tuple[str, str | None]] = list(execution.commands) if execution is not None else []
    for i in range(max(len(recorded), len(made))):
        had = recorded[i][1] if i < len(recorded) else None
        did, where = made[i] if i < len(made) else (None, None)
        if not same(had, did):
            if where is None and execution is not None and execution.thread is not None:
                where = execution.thread.where()  # it made none: where it was instead
            return Divergence(had, did, where, message)
    # the commands agree: Temporal saw a difference they do not show (e.g. an activity's ID)
    m = _EVENT_ID.search(message)
    event_id = int(m.group(1)) if m else None
    index = next((i for i, (eid, _) in enumerate(recorded) if event_id is not None and eid >= event_id), None)
    did, where = made[index] if index is not None and index < len(made) else (None, None)
    had = recorded[index][1] if index is not None else None
    return Divergence(had, did, where, message)
