"""Replay recorded histories against an app's Lua: would this code take the recorded paths?

The check before a deploy (``moontide replay``). Each history runs through
Temporal's ``Replayer`` on the app's *current* code, pins ignored (the
question is whether the new code fits what running executions recorded), on
the settings of the worker that runs its workflow type. A replay that
diverges is reported with both sides: the first command where the code and
history part ways, what history recorded there, what the code did instead
and the Lua line that did it (``_commands``).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.worker import Replayer

from .. import errors
from . import _commands, _context
from ._commands import Divergence
from ._codebook import CodeBook
from ._worker import workflow_settings
from ._workflow import WorkflowSettings, workflow_class

__all__ = ["Divergence", "ReplayReport", "fetch_histories", "history_from_file", "replay"]

@dataclass(frozen=True)
class ReplayReport:
    workflow_id: str
    run_id: str
    workflow_type: str
    divergence: Divergence | None = None
    error: str | None = None
    """A replay failure that is not a divergence (e.g. the workflow type is not in the app)."""

    @property
    def ok(self) -> bool:
        return self.divergence is None and self.error is None

    def __str__(self) -> str:
        head = f"{self.workflow_type} {self.workflow_id}"
        if self.divergence is not None:
            return f"DIVERGES {head}: {self.divergence}"
        if self.error is not None:
            return f"FAILED {head}: {self.error}"
        return f"OK {head}"


def history_from_file(path: str | Path) -> WorkflowHistory:
    """A history in Temporal's JSON (``temporal workflow show -o json``); its workflow ID is the file's stem
    unless the file says otherwise (``{"workflowId": ..., "events": [...]}``)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise errors.Invalid(f"{path}: not a history in Temporal's JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("events"), list) or not data["events"]:
        raise errors.Invalid(f"{path}: not a history in Temporal's JSON (no \"events\" list)")
    try:
        return WorkflowHistory.from_json(str(data.get("workflowId") or path.stem), data)
    except Exception as e:  # the SDK's JSON parser names the field
        raise errors.Invalid(f"{path}: not a history in Temporal's JSON: {e}") from None


async def fetch_histories(client: Client, *, workflow_ids: Iterable[str] = (), query: str | None = None,
                          limit: int | None = None) -> list[WorkflowHistory]:
    """Histories from the server: the latest run of each ID, then those of a visibility query, newest first."""
    out = [await client.get_workflow_handle(wid).fetch_history() for wid in workflow_ids]
    if query is not None:
        async for wf in client.list_workflows(query, limit=limit):
            out.append(await client.get_workflow_handle(wf.id, run_id=wf.run_id).fetch_history())
    return out[:limit] if limit is not None else out


async def replay(app: Any, histories: Iterable[WorkflowHistory], *, book: CodeBook | None = None
                 ) -> AsyncIterator[ReplayReport]:
    """A report per history, replayed on ``app``'s current Lua code: in order within each worker's
    workflow types (one Temporal ``Replayer`` per worker, which replays its histories one after another).
    ``book``: the app's code book, if the caller has one (it reads no upgrade records: pins are ignored)."""
    book = CodeBook(app) if book is None else book
    workers = app.of_kind("temporal.worker")
    groups: dict[str | None, list[WorkflowHistory]] = {}
    for history in histories:
        wf_type = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
        entry = app.entries.get(book.types.get(wf_type, wf_type))
        if entry is None or entry.kind != "workflow.lua":
            yield _report(history, error=f"no workflow.lua entry {wf_type!r} in this app")
            continue
        worker = next((w for w in workers if app.runs_on(entry, w.id)), None)
        groups.setdefault(worker.id if worker is not None else None, []).append(history)
    for worker_id, group in groups.items():
        executions: dict[str, Any] = {}
        settings = (workflow_settings(app, app.get(worker_id), newest_code=True, executions=executions)
                    if worker_id is not None else WorkflowSettings(newest_code=True, executions=executions))
        build_id = f"moontide-replay-{worker_id or 'default'}"
        # the dynamic class is told the Replayer's task queue, "replay-<build_id>"
        replayer = Replayer(workflows=[workflow_class(f"replay-{build_id}", book, settings)],
                            interceptors=[_context.INTERCEPTOR, _commands.INTERCEPTOR], build_id=build_id)
        async with replayer.workflow_replay_iterator(_aiter(group)) as results:
            async for result in results:
                run_id = _run_id(result.history)
                # one at a time: the only one there, whatever run ID the SDK gave it
                execution = executions.pop(run_id, None) or next(iter(executions.values()), None)
                executions.clear()
                failure = result.replay_failure
                if failure is None:
                    yield _report(result.history)
                elif "nondetermin" in str(failure).lower() or "TMPRL1100" in str(failure):
                    yield _report(result.history, divergence=_commands.divergence(result.history, execution, str(failure)))
                else:
                    yield _report(result.history, error=str(failure))


async def _aiter(items: list[WorkflowHistory]) -> AsyncIterator[WorkflowHistory]:
    for item in items:
        yield item


def _run_id(history: WorkflowHistory) -> str:
    return str(history.events[0].workflow_execution_started_event_attributes.original_execution_run_id)


def _report(history: WorkflowHistory, **outcome: Any) -> ReplayReport:
    wf_type = history.events[0].workflow_execution_started_event_attributes.workflow_type.name
    return ReplayReport(history.workflow_id, _run_id(history), wf_type, **outcome)
