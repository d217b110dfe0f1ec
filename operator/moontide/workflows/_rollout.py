"""What a worker's Lua rollout would touch: the checks before its code changes (the Kubernetes operator's gate).

``check_rollout``: would the running executions that move to the new code
replay on it? A workflow whose code changed moves its open executions to the
new code when it is ``auto_upgrade``; when ``pinned``, only those started
without Moontide's code pin (memo ``moontide.code``: a plain Temporal client)
move, the others keep the code they started with (``_codebook``). A sample of
those, newest first, is replayed on the new code (``moontide replay``'s check).

``codes_in_use``: the code digests the open executions on a worker's task
queue are pinned to, which its code history must keep.

Only a connected Temporal client and the apps: no Kubernetes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecution, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from ..lua.code import LuaCode
from ..protocol import MEMO_CODE
from ._codebook import CodeBook
from ._replay import ReplayReport, replay

__all__ = ["RolloutCheck", "changed_workflows", "check_rollout", "codes_in_use"]

#: Events that close a run: one that closed after it was listed moves to no code.
_CLOSED = frozenset({
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
})


@dataclass(frozen=True)
class RolloutCheck:
    """What ``check_rollout`` found: how many histories it replayed and those that do not replay."""

    checked: int = 0
    reports: tuple[ReplayReport, ...] = ()
    """The replays that diverged or failed, in the order they were replayed."""
    entry_of: dict[str, str] = field(default_factory=dict)
    """The workflow entry ID of each report, by its run ID."""

    @property
    def ok(self) -> bool:
        return not self.reports


def quoted(value: str) -> str:
    """A string literal for a Temporal visibility query."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _running_on(task_queue: str) -> str:
    return f'ExecutionStatus="Running" AND TaskQueue={quoted(task_queue)}'


def changed_workflows(old_app: Any, new_app: Any, worker_id: str) -> list[str]:
    """The workflow entries on worker ``worker_id`` whose code differs between the apps (those new in
    ``new_app`` have no executions yet: left out)."""
    book = CodeBook(new_app)
    changed = []
    for entry in new_app.of_kind("workflow.lua"):
        old = old_app.entries.get(entry.id)
        if not new_app.runs_on(entry, worker_id) or old is None or old.kind != "workflow.lua":
            continue
        if LuaCode.from_entry(old_app, old).digest != book.workflows[entry.id].digest:
            changed.append(entry.id)
    return changed


async def check_rollout(client: Client, old_app: Any, new_app: Any, worker_id: str, *,
                        sample: int = 20) -> RolloutCheck:
    """Replay on ``new_app``'s code at most ``sample`` (newest first) of the open executions of each workflow
    whose code changed on worker ``worker_id`` (``changed_workflows``) that would run it.
    ``old_app`` None: nothing to compare, nothing checked. Errors talking to Temporal propagate."""
    if old_app is None:
        return RolloutCheck()
    worker = new_app.get(worker_id)
    task_queue = new_app.task_queue(worker)
    histories: list[WorkflowHistory] = []
    for entry_id in changed_workflows(old_app, new_app, worker_id):
        entry = new_app.get(entry_id)
        every = new_app.versioning_behavior(entry, worker) == "auto_upgrade"
        query = f"WorkflowType={quoted(new_app.workflow_type(entry))} AND {_running_on(task_queue)}"
        moving = [wf async for wf in _moving(client.list_workflows(query), every, sample)]
        histories += await _open_histories(client, moving)
    if not histories:
        return RolloutCheck()
    book = CodeBook(new_app)
    failed = [r async for r in replay(new_app, histories, book=book) if not r.ok]
    return RolloutCheck(len(histories), tuple(failed),
                        {r.run_id: book.types.get(r.workflow_type, r.workflow_type) for r in failed})


async def _moving(listed: AsyncIterator[WorkflowExecution], every: bool, sample: int
                  ) -> AsyncIterator[WorkflowExecution]:
    """The first ``sample`` listed executions that run the newest code: all (``every``) or the unpinned."""
    if sample <= 0:
        return
    n = 0
    async for wf in listed:
        if every or not await wf.memo_value(MEMO_CODE, None):
            yield wf
            n += 1
            if n >= sample:
                return


async def _open_histories(client: Client, executions: Iterable[WorkflowExecution]) -> list[WorkflowHistory]:
    """The histories of those executions still open: one closed (or gone) since it was listed is left out."""
    out = []
    for wf in executions:
        try:
            history = await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history()
        except RPCError as e:
            if e.status == RPCStatusCode.NOT_FOUND:
                continue
            raise
        if history.events and history.events[-1].event_type not in _CLOSED:
            out.append(history)
    return out


async def codes_in_use(client: Client, app: Any, worker_id: str) -> set[str]:
    """The code digests (memo ``moontide.code``) of every open execution on worker ``worker_id``'s task queue:
    the code its workers must keep. Executions started without the memo run the newest code: they add none."""
    digests: set[str] = set()
    async for wf in client.list_workflows(_running_on(app.task_queue(app.get(worker_id)))):
        digest = await wf.memo_value(MEMO_CODE, None)
        if digest:
            digests.add(str(digest))
    return digests
