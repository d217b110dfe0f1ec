"""Spawning from a workflow: child workflows, their exits, links and monitors.

``process.spawn(id, host, ...)`` with a ``temporal.worker`` host (entry ID or
task queue) starts a child workflow on that worker's task queue (durability
kept: the parent's history records it). The execution is pinned to the code
it starts with (memo ``moontide.code``). Options are Wippy's (``_options``).

Every child is monitored: its end reaches the parent as a ``pid.exit`` event
(Wippy's workflows do the same for ``spawn``), unless ``process.unmonitor``
stopped that. ``spawn_linked`` (or ``process.link``) adds the link: a failed
child gives ``pid.link.down`` and fails the parent unless it traps links, and
the parent's end cancels a child spawned linked (parent_close_policy
``request_cancel``).

Temporal has no ID conflict policy for children; it is applied here: a start
of a running ID answers that workflow's pid (``use_existing``, the default for
an explicit ID or a ``with_name``; it is then no child of this one), fails
with AlreadyExists (``fail``), or terminates it and starts again
(``terminate_existing``). Startup messages (``:with_message``) are signals
sent right after the start, in order, to the child or the running one.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RawValue
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError
from temporalio.workflow import ParentClosePolicy

from .. import errors, values
from ..failures import error_of as failure_of
from ..protocol import MEMO_CODE, MEMO_CONTEXT, WorkflowPid, is_workflow_pid
from ._mailbox import message_payload
from ._options import SpawnOptions, spawn_options
from ._system import terminate_from_workflow

if TYPE_CHECKING:
    from ._workflow import Execution

__all__ = ["Child", "client_of", "exec_child", "running_children", "start_child", "workflow_id_of"]



@dataclass
class Child:
    """A running child workflow, as its parent sees it."""

    policy: Any
    """Its parent close policy: what the end of this run does to it."""
    monitored: bool = True
    linked: bool = False


def _match(pid: str) -> WorkflowPid:
    if not is_workflow_pid(str(pid).strip()):
        raise errors.Invalid(f"{pid!r} is not a workflow pid ('{{client@worker|workflow_id}}')")
    return WorkflowPid.parse(pid)


def workflow_id_of(pid: str) -> str:
    return _match(pid).workflow_id


def client_of(pid: str) -> str:
    """The temporal.client entry a workflow pid names."""
    return _match(pid).client


def _target(ex: Execution, entry_id: str, host: str, what: str) -> tuple[str, str, str, str, str]:
    """(full entry id, its workflow type, worker entry id, its client entry id, task queue) for a spawn from ``ex``.

    ``host`` names the temporal.worker by entry ID or by the task queue it polls; "" is
    the worker the workflow is routed to, else this one's (``workflow.exec``).
    """
    assert ex.code is not None
    app = ex.book.app
    full = entry_id if ":" in entry_id else f"{ex.code.namespace}:{entry_id}"
    ex.book.workflow(full)  # NotFound, naming the workflows there are
    entry = app.get(full)
    routed = app.routed_worker(entry)
    host = host or routed or ex.settings.worker_id
    try:
        worker = app.temporal_worker(host, ex.code.namespace)
    except errors.NotFound as e:
        raise errors.NotFound(f"{what}: {e.message}") from None
    except errors.Invalid as e:
        raise errors.Unavailable(
            f"{what} from a workflow: host {e.message}; a workflow can only start workflows "
            "(temporal.worker hosts)", retryable=False) from None
    if routed is not None and routed != worker.id:
        raise errors.Invalid(f"{what}: {full} runs on worker {routed} (its meta.temporal.workflow.worker), "
                             f"not on {worker.id}")
    client_id = app.resolve(worker.data["client"], worker.namespace)
    return full, app.workflow_type(entry), worker.id, client_id, app.task_queue(worker)


def _child_options(ex: Execution, full: str, wf_type: str, client_id: str, opts: dict[str, Any],
                   name: str | None, context: dict[str, Any], always_seq: bool = False) -> tuple[str, SpawnOptions]:
    spec = spawn_options(opts, child=True, app=ex.book.app, client_id=client_id, name=name)
    if spec.workflow_type not in (None, wf_type):
        raise errors.Invalid(f"option workflow.name: {full} runs as workflow type {wf_type!r}; starting it as "
                             f"{spec.workflow_type!r} is not supported")
    if spec.namespace not in (None, workflow.info().namespace):
        raise errors.Invalid(f"option workflow.namespace: a child workflow starts in its parent's namespace "
                             f"({workflow.info().namespace}), not {spec.namespace!r}")
    # spawn takes a sequence number even for an explicit ID (as it always has):
    # later numbers must not move on replay of older histories
    n = ex._next() if always_seq or not spec.workflow_id else 0
    wid = spec.workflow_id or f"{workflow.info().workflow_id}.{full.partition(':')[2]}-{n}"
    spec.kw["memo"] = {**spec.kw.get("memo", {}), MEMO_CODE: ex.book.workflow(full).digest}
    if context:
        spec.kw["memo"][MEMO_CONTEXT] = context
    return wid, spec


async def start_child(ex: Execution, how: str, entry_id: str, host: str, args: list[Any], opts: dict[str, Any],
                      name: str | None = None, messages: list[tuple[str, str]] = (),  # type: ignore[assignment]
                      *, context: dict[str, Any]) -> str:
    """Start a child workflow (``context``: its ctx values); its exit arrives as a pid.exit event
    (or pid.link.down). Returns its pid."""
    full, wf_type, host_id, client_id, task_queue = _target(ex, entry_id, host, "process.spawn")
    wid, spec = _child_options(ex, full, wf_type, client_id, opts, name, context, always_seq=True)
    kw = spec.kw
    linked = how in ("linked", "linked_monitored")
    if linked:  # the parent's end cancels a linked child, unless the options say otherwise
        kw.setdefault("parent_close_policy", ParentClosePolicy.REQUEST_CANCEL)
    pid = str(WorkflowPid(client_id, host_id, wid))
    queue = spec.task_queue or task_queue
    try:
        handle = await workflow.start_child_workflow(wf_type, args=args, id=wid, task_queue=queue,
                                                     result_type=RawValue, **kw)
    except WorkflowAlreadyStartedError:
        if spec.conflict == "fail":
            raise errors.AlreadyExists(f"process.spawn: workflow {wid} is already running") from None
        if spec.conflict == "use_existing":
            # the running one's pid (no child of this run: no pid.exit); it still gets the messages
            for topic, payload in messages:
                await workflow.get_external_workflow_handle(wid).signal(topic, message_payload(payload, ex.pid))
            return pid
        await terminate_from_workflow(wid, f"replaced by a spawn from {ex.pid} (terminate_existing)", ex.pid)
        handle = await workflow.start_child_workflow(wf_type, args=args, id=wid, task_queue=queue,
                                                     result_type=RawValue, **kw)
    child = ex.children[pid] = Child(kw.get("parent_close_policy", ParentClosePolicy.TERMINATE), linked=linked)
    for topic, payload in messages:
        await handle.signal(topic, message_payload(payload, ex.pid))

    async def watch() -> None:
        failure = None
        try:
            result = {"value": _child_result(full, await handle)}
        except ChildWorkflowError as e:
            failure = failure_of(e)
            result = {"error": failure.as_dict()}
        except errors.Invalid as e:
            failure = e
            result = {"error": failure.as_dict()}
        if ex.children.get(pid) is child:
            del ex.children[pid]
        if failure is not None and child.linked:
            ex.link_down(pid, failure)
        elif child.monitored:
            ex.mailbox.event("pid.exit", pid, result)

    asyncio.ensure_future(watch())
    return pid


async def exec_child(ex: Execution, entry_id: str, host: str, args: list[Any], opts: dict[str, Any], *,
                     context: dict[str, Any], name: str | None = None,
                     messages: list[tuple[str, str]] = ()) -> Any:  # type: ignore[assignment]
    """Run a child workflow to its end (``name``: its workflow ID; ``messages``: signals it gets first);
    its result, or MoontideError."""
    what = "workflow.exec" if host == "" else "process.exec"
    full, wf_type, _, client_id, task_queue = _target(ex, entry_id, host, what)
    wid, spec = _child_options(ex, full, wf_type, client_id, opts, name, context)
    try:
        # start, then wait: the commands execute_child_workflow gives, with the messages between
        handle = await workflow.start_child_workflow(wf_type, args=args, id=wid,
                                                     task_queue=spec.task_queue or task_queue,
                                                     result_type=RawValue, **spec.kw)
        for topic, payload in messages:
            await handle.signal(topic, message_payload(payload, ex.pid))
        raw = await handle
    except WorkflowAlreadyStartedError:
        raise errors.AlreadyExists(f"{what}: workflow {wid} is already running; {what} starts a new one and "
                                   "waits for it (reach a running one by its pid)") from None
    except ChildWorkflowError as e:
        raise failure_of(e) from None
    return _child_result(full, raw)


def _child_result(full: str, raw: RawValue) -> Any:
    """A child's result, decoded here: the SDK's failure to decode would fail the task on every replay."""
    return values.from_payload(raw.payload, "result", f"child {full}: its result cannot be decoded")


def running_children(ex: Execution) -> list[str]:
    """Children that the end of this run would terminate or cancel (all but abandoned ones)."""
    return [pid for pid, child in ex.children.items() if child.policy != ParentClosePolicy.ABANDON]

