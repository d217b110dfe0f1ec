"""The Temporal commands a Lua workflow makes, each with the Lua line that made it.

When a replay diverges from history, Temporal names only a history event
("HistoryEvent(id: 5, TimerStarted)"); ``moontide.replay`` names both sides:
what history recorded there and what the code did instead, at which line.
Activities, local activities, children, signals and continue-as-new are seen
by a workflow interceptor, timers by ``sleep`` (the SDK has no hook for them).
Only a replay check registers the interceptor and keeps the notes: workers
serving executions pay nothing for it.
Commands are described the way ``describe_event`` describes history events,
so the two compare as text.
"""

from __future__ import annotations

from typing import Any

from temporalio import workflow
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

__all__ = ["INTERCEPTOR", "describe_event", "sleep", "timer"]


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
