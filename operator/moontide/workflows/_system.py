"""System activities: what a workflow asks of Temporal that is no workflow command.

``process.terminate`` from workflow Lua: Temporal lets a workflow cancel
another execution, not terminate it, so the worker's client does it in an
activity. Its schedule and result are in the caller's history like any
activity, so a replay does not terminate twice.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from ..failures import error_of as failure_of
from ..protocol import TERMINATE_ACTIVITY

__all__ = ["TERMINATE_ACTIVITY", "SYSTEM_ACTIVITIES", "terminate_from_workflow"]



@activity.defn(name=TERMINATE_ACTIVITY)
async def terminate(workflow_id: str, reason: str | None, caller: str) -> bool:
    try:
        await activity.client().get_workflow_handle(workflow_id).terminate(
            reason=reason or f"terminated by {caller}")
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:  # no such execution, or it has ended
            raise ApplicationError(f"no running execution {workflow_id}: {e.message}", type="NotFound",
                                   non_retryable=True) from None
        raise  # Temporal unreachable: retried
    return True


#: Registered on every worker, next to the function activities.
SYSTEM_ACTIVITIES = [terminate]


async def terminate_from_workflow(workflow_id: str, reason: str | None, caller: str) -> None:
    """Run the terminate activity on this worker's task queue; raises MoontideError."""
    try:
        await workflow.execute_activity(
            TERMINATE_ACTIVITY, args=[workflow_id, reason, caller], start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(maximum_attempts=5, maximum_interval=timedelta(seconds=5)))
    except ActivityError as e:
        raise failure_of(e) from None
