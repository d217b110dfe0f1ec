"""Process pids from outside the app: send, cancel, terminate, status and result through Temporal.

A process lives in the memory of one host run; the one way into it from
another program (``moontide send`` in another shell, another machine) is that
run's task queue, ``moontide.deliver/<host>/<run>`` (``deliver_task_queue``),
served by the host's ``DeliverWorkers``. Temporal hands a worker nothing
without a workflow, so each request is a short workflow, ``moontide.control``,
on that queue: it runs the ``moontide.control`` local activity, which answers
from the ``ProcessSystem``. Requests leave small closed workflows behind
(``moontide.control-<uuid>``), kept for the namespace's retention.

``result`` polls: each request waits at most ``WAIT_SLICE`` seconds for the
exit, so a host that goes away while someone waits is noticed by the next
request instead of never.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeout

from .. import errors
from ..failures import application_error
from ..protocol import CONTROL, ProcessPid as LocalPid, deliver_task_queue

if TYPE_CHECKING:
    from ._system import ProcessSystem

__all__ = ["CONTROL", "ControlWorkflow", "control", "control_activity", "polled", "process_result"]

#: Workflow and activity type of a request to a process host.
#: Longest one ``result`` request waits for the exit before asking again (seconds).
WAIT_SLICE = 20.0
#: How long a request may take before its host counts as not running (seconds).
ANSWER_TIMEOUT = 10.0

#: The error classes callers catch by type (``except errors.NotFound``), by kind.


@workflow.defn(name=CONTROL, sandboxed=False)
class ControlWorkflow:
    """Runs one request against the host whose queue it was started on."""

    @workflow.run
    async def run(self, op: str, pid: str, args: list[Any]) -> Any:
        # once: a send must not be delivered twice
        return await workflow.execute_local_activity(
            CONTROL, args=[op, pid, args], start_to_close_timeout=timedelta(seconds=WAIT_SLICE + 10),
            retry_policy=RetryPolicy(maximum_attempts=1))


def control_activity(system: ProcessSystem) -> Any:
    """The ``moontide.control`` activity: (op, pid, args) answered by ``system``."""

    @activity.defn(name=CONTROL)
    async def answer(op: str, pid: str, args: list[Any]) -> Any:
        try:
            return await system.request(op, pid, args)
        except errors.MoontideError as e:
            raise application_error(e, non_retryable=True) from None

    return answer


async def control(client: Client, op: str, pid: str, *args: Any, timeout: float = ANSWER_TIMEOUT) -> Any:
    """Ask the host run of process ``pid`` (wherever it runs); its answer, or its MoontideError.

    NotFound when the host run is not running (no worker polls its queue, or
    none answered within ``timeout`` seconds).
    """
    p = LocalPid.parse(pid)
    queue = deliver_task_queue(pid)
    gone = errors.NotFound(f"no process {pid}: its host {p.host} (run {p.run}) is not running "
                           f"(nothing serves task queue {queue!r})")
    if not await polled(client, queue):
        raise gone
    try:
        return await client.execute_workflow(CONTROL, args=[op, pid, list(args)], id=f"{CONTROL}-{uuid.uuid4().hex}",
                                             task_queue=queue, execution_timeout=timedelta(seconds=timeout))
    except WorkflowFailureError as e:
        cause: BaseException | None = e.cause
        while cause is not None and not isinstance(cause, (ApplicationError, TemporalTimeout)):
            cause = cause.__cause__
        if isinstance(cause, ApplicationError):
            details = cause.details[0] if cause.details else None
            kind = cause.type or "Internal"
            raise errors.of_kind(kind, cause.message, retryable=False, details=details) from None
        if isinstance(cause, TemporalTimeout):
            raise errors.NotFound(f"{gone.message}; or it did not answer within {timeout:g}s") from None
        raise errors.Unavailable(f"{op} {pid}: {e.cause or e}") from None


async def process_result(client: Client, pid: str) -> dict[str, Any]:
    """Wait for process ``pid`` to end: ``{"value": v}`` or ``{"error": {kind, message, ...}}``."""
    while True:
        out = await control(client, "wait", pid, WAIT_SLICE, timeout=WAIT_SLICE + ANSWER_TIMEOUT)
        if out.pop("done"):
            return dict(out)


async def polled(client: Client, queue: str) -> bool:
    """Whether any worker polls ``queue`` (recently: the server forgets pollers after a few minutes)."""
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
    return bool(resp.pollers)
