"""Move pinned executions to an app's newest Lua (``moontide upgrade``), if their histories replay on it.

A pinned execution keeps the code it started with (``_codebook``). Upgrading
one, for each running execution asked for:

1. skip it when it runs the newest code already (pinned to it, upgraded to it
   before, ``auto_upgrade``, or started without a pin);
2. replay its history on the newest code (``moontide replay``'s check); a
   divergence refuses it, with the report, and nothing is written;
3. record the upgrade in the code store the workers read
   (``upgrade.<run_id>.json``): from now on a worker that starts or replays the
   run from its beginning runs the new code;
4. signal the run (``moontide.upgrade``): a worker holding it in its cache on
   the old code fails that workflow task, drops the run and the retried task
   replays it on the new code;
5. once the signal is in the history (after any workflow task in flight
   when it came), replay that history on the new code again: what the old code
   did between the first check and the record is in it. Should it diverge now,
   the record is taken back and the execution is refused: it never meets a
   nondeterminism error on the new code that stays.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from ..protocol import MEMO_CODE, MEMO_K8S, UPGRADE_SIGNAL
from ._codebook import CodeBook
from ._replay import ReplayReport, replay

__all__ = ["UpgradeReport", "upgrade", "versioning_behavior"]

#: How long step 5 waits for the signal to reach the history (a workflow task in flight
#: delays it: at most its timeout, 10 s by default).
SETTLE_SECONDS = 60.0


@dataclass(frozen=True)
class UpgradeReport:
    """What ``moontide upgrade`` did with one execution."""

    workflow_id: str
    run_id: str | None
    workflow_type: str | None
    outcome: str
    """``upgraded``, ``refused`` (its history does not replay on the newest code, or it cannot be upgraded)
    or ``skipped`` (nothing to do: not running, or on the newest code already)."""
    reason: str
    from_code: str | None = None
    """The digest of the code it ran before."""
    to_code: str | None = None
    """The digest of the app's newest code for it."""
    replay: ReplayReport | None = None
    """The replay check that refused it."""

    @property
    def ok(self) -> bool:
        return self.outcome != "refused"

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"workflow_id": self.workflow_id, "run_id": self.run_id,
                               "workflow_type": self.workflow_type, "outcome": self.outcome, "reason": self.reason,
                               "from": self.from_code, "to": self.to_code}
        d = self.replay.divergence if self.replay is not None else None
        if d is not None:
            out["divergence"] = {"where": d.where, "history": d.history, "code": d.code, "temporal": d.temporal}
        return out

    def __str__(self) -> str:
        return f"{self.outcome.upper()} {self.workflow_type or '?'} {self.workflow_id}: {self.reason}"


def versioning_behavior(app: Any, entry_id: str) -> str | None:
    """``pinned`` or ``auto_upgrade`` for a workflow entry, on the first worker that runs it (None: none does)."""
    entry = app.entries.get(entry_id)
    if entry is None:
        return None
    workers = [w for w in app.of_kind("temporal.worker") if app.runs_on(entry, w.id)]
    return app.versioning_behavior(entry, workers[0]) if workers else None


@dataclass
class _Run:
    workflow_id: str
    run_id: str
    workflow_type: str
    current: str
    newest: str
    history: WorkflowHistory | None = None
    previous: dict[str, Any] | None = None
    nonce: str = ""

    def report(self, outcome: str, reason: str, replayed: ReplayReport | None = None) -> UpgradeReport:
        return UpgradeReport(self.workflow_id, self.run_id, self.workflow_type, outcome, reason,
                             self.current, self.newest, replayed)


async def upgrade(app: Any, book: CodeBook, client: Client, targets: Iterable[tuple[str, str | None]], *,
                  settle: float = SETTLE_SECONDS) -> AsyncIterator[UpgradeReport]:
    """A report per (workflow ID, run ID or None: its latest run) in ``targets``, upgrading those that
    replay on ``book``'s newest code; the record goes to ``book``'s store, which the workers must read."""
    runs: list[_Run] = []
    seen: set[str] = set()  # run IDs: one asked for twice (a pid and a query) is reported once
    for workflow_id, run_id in targets:
        run = await _classify(app, book, client, workflow_id, run_id)
        if run.run_id is not None and run.run_id in seen:
            continue
        if run.run_id is not None:
            seen.add(run.run_id)
        if isinstance(run, UpgradeReport):
            yield run
        else:
            runs.append(run)
    if not runs:
        return
    # 2. the check, then 3-4. the record and the signal
    for run in runs:
        run.history = await client.get_workflow_handle(run.workflow_id, run_id=run.run_id).fetch_history()
    checked = await _check(app, book, runs)
    #: recorded, not yet confirmed by step 5: taken back should this end early (Ctrl-C, Temporal gone)
    unconfirmed: list[_Run] = []
    try:
        for run in runs:
            report = checked[run.workflow_id]
            if not report.ok:
                yield run.report("refused", f"its history does not replay on the newest code: {_why(report)}",
                                 report)
                continue
            unconfirmed.append(run)
            closed = await _record(book, client, run)
            if closed is not None:
                unconfirmed.remove(run)
                yield closed
        # 5. the history through the signal, checked again
        settled: list[_Run] = []
        for run in list(unconfirmed):
            history = await _through_signal(client, run, settle)
            if history is None:
                book.record_upgrade(run.run_id, run.previous)
                unconfirmed.remove(run)
                yield run.report("refused", f"its upgrade signal did not reach its history in {settle:.0f}s (a "
                                            "workflow task in flight that does not end?): not upgraded, try again")
                continue
            run.history = history
            settled.append(run)
        again = await _check(app, book, settled) if settled else {}
        for run in settled:
            report = again[run.workflow_id]
            if not report.ok:
                book.record_upgrade(run.run_id, run.previous)  # back to its old code
            unconfirmed.remove(run)
            if report.ok:
                yield run.report("upgraded", f"{run.current[:12]} -> {run.newest[:12]}")
            else:
                yield run.report("refused", "it went on while it was checked and its history no longer replays "
                                            f"on the newest code: {_why(report)}", report)
    finally:
        for run in unconfirmed:
            book.record_upgrade(run.run_id, run.previous)


async def _classify(app: Any, book: CodeBook, client: Client, workflow_id: str,
                    run_id: str | None) -> _Run | UpgradeReport:
    """The run to check, or the report of one that needs no check (skipped) or cannot have it (refused)."""
    try:
        desc = await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
    except RPCError as e:
        if e.status == RPCStatusCode.NOT_FOUND:
            return UpgradeReport(workflow_id, run_id, None, "refused", "no such workflow execution")
        raise
    wf_type = desc.workflow_type
    status = desc.status.name if desc.status else "UNKNOWN"

    def skipped(reason: str) -> UpgradeReport:
        return UpgradeReport(workflow_id, desc.run_id, wf_type, "skipped", reason)

    if status != "RUNNING":
        return skipped(f"not running ({status})")
    entry_id = book.types.get(wf_type, wf_type)
    if entry_id not in book.workflows:
        return UpgradeReport(workflow_id, desc.run_id, wf_type, "refused", f"no workflow.lua entry {wf_type!r} "
                                                                             "in this app")
    newest = book.workflows[entry_id].digest
    if versioning_behavior(app, entry_id) == "auto_upgrade":
        return skipped("auto_upgrade: it runs the newest code from its next workflow task on")
    pinned = await desc.memo_value(MEMO_CODE, None)
    if not pinned:
        return skipped("not pinned (started without Moontide's memo): it runs its worker's newest code")
    workflow_cr = await desc.memo_value(MEMO_K8S, None)
    if workflow_cr:
        # its workers are pods: they read code from their ConfigMap, never from this code store
        return UpgradeReport(workflow_id, desc.run_id, wf_type, "refused",
                             f"started by the Kubernetes operator (Workflow {workflow_cr}): its worker pods do "
                             "not read upgrades recorded here")
    current = book.upgraded(desc.run_id) or str(pinned)
    if current == newest:
        return UpgradeReport(workflow_id, desc.run_id, wf_type, "skipped", "already on the newest code",
                             current, newest)
    return _Run(workflow_id, desc.run_id, wf_type, current, newest)


async def _check(app: Any, book: CodeBook, runs: list[_Run]) -> dict[str, ReplayReport]:
    """Each run's history replayed on the newest code, by workflow ID (one run of an ID is running)."""
    histories = [run.history for run in runs if run.history is not None]
    return {report.workflow_id: report async for report in replay(app, histories, book=book)}


async def _record(book: CodeBook, client: Client, run: _Run) -> UpgradeReport | None:
    """Record the upgrade and signal the run (None), or the report of a run that closed meanwhile."""
    run.previous = book.upgrade_of(run.run_id)
    run.nonce = uuid.uuid4().hex
    book.record_upgrade(run.run_id, {
        "workflow_id": run.workflow_id, "workflow_type": run.workflow_type, "from": run.current, "to": run.newest,
        "at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})
    try:
        await client.get_workflow_handle(run.workflow_id, run_id=run.run_id).signal(
            UPGRADE_SIGNAL, {"to": run.newest, "request": run.nonce})
    except RPCError as e:
        book.record_upgrade(run.run_id, run.previous)
        if e.status == RPCStatusCode.NOT_FOUND:  # it closed after the check
            return run.report("skipped", "not running (it closed while it was checked)")
        raise
    return None


async def _through_signal(client: Client, run: _Run, settle: float) -> WorkflowHistory | None:
    """The run's history once it holds this upgrade's signal; None if it does not within ``settle`` seconds."""
    handle = client.get_workflow_handle(run.workflow_id, run_id=run.run_id)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settle
    pause = 0.05
    while True:
        history = await handle.fetch_history()
        for event in history.events:
            if event.HasField("workflow_execution_signaled_event_attributes"):
                attrs = event.workflow_execution_signaled_event_attributes
                if attrs.signal_name == UPGRADE_SIGNAL and any(run.nonce.encode() in p.data
                                                               for p in attrs.input.payloads):
                    return history
        if loop.time() >= deadline:
            return None
        await asyncio.sleep(pause)
        pause = min(pause * 2, 1.0)


def _why(report: ReplayReport) -> str:
    if report.divergence is not None:
        return str(report.divergence)
    return report.error or "?"
