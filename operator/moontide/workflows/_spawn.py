"""Spawning workflows: options shared by clients and parents, and child workflows.

``process.spawn(id, host, ...)`` with a ``temporal.worker`` host starts a
workflow on that worker's task queue; inside a workflow it starts a child
workflow (durability kept: the parent's history records it). The execution
is pinned to the code it starts with (memo ``moontide.code``).

A child's end always reaches its parent as a ``pid.exit`` event (Temporal
records it anyway, so ``spawn`` and ``spawn_monitored`` are the same here).
``spawn_linked`` adds the link: a failed child gives ``pid.link.down`` and
fails the parent unless it handles events, and the parent's end cancels the
child (parent_close_policy ``request_cancel``).
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RawValue, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.workflow import ParentClosePolicy
from temporalio.exceptions import ChildWorkflowError, WorkflowAlreadyStartedError

from .. import durations, errors, values
from ._codebook import MEMO_CODE
from ._context import MEMO_CONTEXT
from ._options import ActivityDefaults, _retry
from ._search import declared, typed

if TYPE_CHECKING:
    from ._workflow import Execution

__all__ = ["client_of", "exec_child", "running_children", "spawn_options", "start_child", "workflow_id_of"]

_PID = re.compile(r"^\{(?P<client>[^@|{}]+)@[^|{}]+\|(?P<id>[^{}]+)\}$")

_REUSE = {
    "allow_duplicate": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    "allow_duplicate_failed_only": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    "reject_duplicate": WorkflowIDReusePolicy.REJECT_DUPLICATE,
    "terminate_if_running": WorkflowIDReusePolicy.TERMINATE_IF_RUNNING,
}
_CONFLICT = {
    "fail": WorkflowIDConflictPolicy.FAIL,
    "use_existing": WorkflowIDConflictPolicy.USE_EXISTING,
    "terminate_existing": WorkflowIDConflictPolicy.TERMINATE_EXISTING,
}
_CLOSE = {
    "terminate": ParentClosePolicy.TERMINATE,
    "request_cancel": ParentClosePolicy.REQUEST_CANCEL,
    "abandon": ParentClosePolicy.ABANDON,
}
_KNOWN = ("workflow_id", "id_reuse_policy", "id_conflict_policy", "execution_timeout", "run_timeout",
          "task_timeout", "retry_policy", "memo", "search_attributes", "parent_close_policy")


def _match(pid: str) -> re.Match[str]:
    m = _PID.match(str(pid).strip())
    if not m:
        raise errors.Invalid(f"{pid!r} is not a workflow pid ('{{client@worker|workflow_id}}')")
    return m


def workflow_id_of(pid: str) -> str:
    return _match(pid)["id"]


def client_of(pid: str) -> str:
    """The temporal.client entry a workflow pid names."""
    return _match(pid)["client"]


def _choice(table: dict[str, Any], value: Any, name: str) -> Any:
    key = str(value).lower()
    if key not in table:
        raise errors.Invalid(f"option {name}: {value!r} is not one of {', '.join(table)}")
    return table[key]


def spawn_options(opts: dict[str, Any], *, child: bool, app: Any, client_id: str) -> tuple[str | None, dict[str, Any]]:
    """(explicit workflow ID, keyword arguments for start_workflow / start_child_workflow).

    ``client_id``: the temporal.client of the worker that will run the
    workflow; its ``search_attributes`` field types the search attributes.
    """
    unknown = sorted(set(opts) - set(_KNOWN))
    if unknown:
        raise errors.Invalid(f"unknown spawn option {unknown[0]!r} (known: {', '.join(_KNOWN)})")
    kw: dict[str, Any] = {}
    if "id_reuse_policy" in opts:
        kw["id_reuse_policy"] = _choice(_REUSE, opts["id_reuse_policy"], "id_reuse_policy")
    if "id_conflict_policy" in opts:
        if child:
            raise errors.Invalid("option id_conflict_policy: not available for child workflows")
        kw["id_conflict_policy"] = _choice(_CONFLICT, opts["id_conflict_policy"], "id_conflict_policy")
    for name in ("execution_timeout", "run_timeout", "task_timeout"):
        if name in opts:
            kw[name] = durations.to_timedelta(opts[name])
    if "retry_policy" in opts:
        kw["retry_policy"] = _retry(opts["retry_policy"], ActivityDefaults().retry_policy)
    if "memo" in opts:
        if not isinstance(opts["memo"], dict):
            raise errors.Invalid("option memo: expected a table of fields")
        kw["memo"] = dict(opts["memo"])
    if "search_attributes" in opts:
        kw["search_attributes"] = typed(opts["search_attributes"], declared(app, client_id),
                                        where="option search_attributes", client_id=client_id)
    if "parent_close_policy" in opts:
        if not child:
            raise errors.Invalid("option parent_close_policy: only for child workflows (a spawn from a workflow)")
        kw["parent_close_policy"] = _choice(_CLOSE, opts["parent_close_policy"], "parent_close_policy")
    wid = opts.get("workflow_id")
    return (str(wid) if wid else None), kw


def _target(ex: Execution, entry_id: str, host: str) -> tuple[str, str, str, str, str]:
    """(full entry id, its workflow type, worker entry id, its client entry id, task queue) for a spawn from ``ex``.

    ``host`` names the temporal.worker by entry ID or by the task queue it polls.
    """
    assert ex.code is not None
    app = ex.book.app
    full = entry_id if ":" in entry_id else f"{ex.code.namespace}:{entry_id}"
    try:
        worker = app.temporal_worker(host, ex.code.namespace)
    except errors.NotFound as e:
        raise errors.NotFound(f"process.spawn: {e.message}") from None
    except errors.Invalid as e:
        raise errors.MoontideError(
            f"process.spawn from a workflow: host {e.message}; a workflow can only start workflows "
            "(temporal.worker hosts)", kind="Unavailable", retryable=False) from None
    ex.book.workflow(full)  # NotFound, naming the workflows there are
    entry = app.get(full)
    routed = app.routed_worker(entry)
    if routed is not None and routed != worker.id:
        raise errors.Invalid(f"process.spawn: {full} runs on worker {routed} (its meta.temporal.workflow.worker), "
                             f"not on {worker.id}")
    client_id = app.resolve(worker.data["client"], worker.namespace)
    return full, app.workflow_type(entry), worker.id, client_id, app.task_queue(worker)

def _child_options(ex: Execution, full: str, client_id: str, opts: dict[str, Any], context: dict[str, Any],
                   always_seq: bool = False) -> tuple[str, dict[str, Any]]:
    wid, kw = spawn_options(opts, child=True, app=ex.book.app, client_id=client_id)
    # spawn takes a sequence number even for an explicit ID (as it always has):
    # later numbers must not move on replay of older histories
    n = ex._next() if always_seq or not wid else 0
    wid = wid or f"{workflow.info().workflow_id}.{full.partition(':')[2]}-{n}"
    kw["memo"] = {**kw.get("memo", {}), MEMO_CODE: ex.book.workflow(full).digest}
    if context:
        kw["memo"][MEMO_CONTEXT] = context
    return wid, kw


async def start_child(ex: Execution, how: str, entry_id: str, host: str, args: list[Any],
                      opts: dict[str, Any], *, context: dict[str, Any]) -> str:
    """Start a child workflow (``context``: its ctx values); its exit arrives as a pid.exit event
    (or pid.link.down). Returns its pid."""
    full, wf_type, host_id, client_id, task_queue = _target(ex, entry_id, host)
    wid, kw = _child_options(ex, full, client_id, opts, context, always_seq=True)
    if how == "linked":  # the parent's end cancels a linked child, unless the options say otherwise
        kw.setdefault("parent_close_policy", ParentClosePolicy.REQUEST_CANCEL)
    pid = f"{{{client_id}@{host_id}|{wid}}}"
    try:
        handle = await workflow.start_child_workflow(wf_type, args=args, id=wid, task_queue=task_queue,
                                                     result_type=RawValue, **kw)
    except WorkflowAlreadyStartedError:
        raise errors.MoontideError(f"process.spawn: workflow {wid} is already running", kind="AlreadyExists",
                                   retryable=False) from None
    ex.children[pid] = kw.get("parent_close_policy", ParentClosePolicy.TERMINATE)

    async def watch() -> None:
        failure = None
        try:
            result = {"value": _child_result(full, await handle)}
        except ChildWorkflowError as e:
            from ._workflow import failure_of

            failure = failure_of(e)
            result = {"error": failure.as_dict()}
        except errors.Invalid as e:
            failure = e
            result = {"error": failure.as_dict()}
        ex.children.pop(pid, None)
        if failure is not None and how == "linked":
            ex.link_down(pid, failure)
        else:
            ex.mailbox.event("pid.exit", pid, result)

    asyncio.ensure_future(watch())
    return pid


async def exec_child(ex: Execution, entry_id: str, host: str, args: list[Any], opts: dict[str, Any], *,
                     context: dict[str, Any]) -> Any:
    """Run a child workflow to its end; its result, or MoontideError."""
    full, wf_type, _, client_id, task_queue = _target(ex, entry_id, host)
    wid, kw = _child_options(ex, full, client_id, opts, context)
    try:
        raw = await workflow.execute_child_workflow(wf_type, args=args, id=wid, task_queue=task_queue,
                                                    result_type=RawValue, **kw)
    except ChildWorkflowError as e:
        from ._workflow import failure_of

        raise failure_of(e) from None
    return _child_result(full, raw)


def _child_result(full: str, raw: RawValue) -> Any:
    """A child's result, decoded here: the SDK's failure to decode would fail the task on every replay."""
    return values.from_payload(raw.payload, "result", f"child {full}: its result cannot be decoded")


def running_children(ex: Execution) -> list[str]:
    """Children that the end of this run would terminate or cancel (all but abandoned ones)."""
    return [pid for pid, policy in ex.children.items() if policy != ParentClosePolicy.ABANDON]
