"""Divergence at run time: a workflow task that replays code off its history fails naming the Lua line.

When a worker replays an execution on other code than the code it started
with (an auto_upgrade execution after a deploy, an upgraded one, one started
without a pin by a plain Temporal client), Temporal detects a divergence only
as "[TMPRL1100] Nondeterminism error: ... HistoryEvent(id: 5, TimerStarted)".
``ReplayGuard`` wraps the executor that runs the worker's workflow activations
(the SDK's ``workflow_task_executor``). After each replaying activation of
such an execution (it registers itself: ``WorkflowSettings.watched``), it
compares the commands the code made so far, each noted with its Lua line
(``_commands``), with those its history recorded, fetched once from the
server. At the first difference it fails the workflow task itself, with
Temporal's cause ``NonDeterministicError`` and the report ``moontide replay``
gives: "order.lua:14: history has activity app.api:charge_card, code made
timer 24h". Temporal retries the task as it would have; the report is in the
execution's history and the worker's log.

Executions that replay the code they started with (pinned ones) and
activations that are no replay cost one dictionary lookup. The history is
fetched once per replay, within ``FETCH_SECONDS`` (the SDK's 2 s deadlock
timer runs meanwhile); a longer history than ``MAX_EVENTS`` events, or one not
fetched in time, is left to Temporal's own check.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from temporalio.api.enums.v1 import WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowHistory

from . import _commands

__all__ = ["FETCH_SECONDS", "MAX_EVENTS", "ReplayGuard"]

log = logging.getLogger("moontide.workflows")

T = TypeVar("T")

FETCH_SECONDS = 1.0
MAX_EVENTS = 10_000


class ReplayGuard(concurrent.futures.Executor):
    """Runs activations on ``inner`` and checks the replays of the executions in ``watched`` against history.

    ``diverged`` counts the workflow tasks it failed.
    """

    def __init__(self, inner: concurrent.futures.Executor, client: Client, watched: dict[str, Any]) -> None:
        self.inner = inner
        self.client = client
        self.watched = watched
        #: run ID -> its history while its replay is checked (None: not checkable: too long, not fetched)
        self._histories: dict[str, WorkflowHistory | None] = {}
        self.diverged = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        act: Any = args[0] if args else None  # the SDK submits workflow.activate(activation)
        run_id = getattr(act, "run_id", None)
        if run_id is None or not (act.is_replaying or run_id in self.watched):
            return self.inner.submit(fn, *args, **kwargs)
        if any(job.HasField("remove_from_cache") for job in act.jobs):
            self._forget(run_id)
            return self.inner.submit(fn, *args, **kwargs)
        loop = asyncio.get_running_loop()
        outer: concurrent.futures.Future[T] = concurrent.futures.Future()
        outer.set_running_or_notify_cancel()  # it ends when the check does, never cancelled half-way
        done = self.inner.submit(fn, *args, **kwargs)
        # the activation may end on a thread (inline_activations: false): the check runs on the loop
        done.add_done_callback(lambda f: loop.call_soon_threadsafe(self._checked, act, f, outer))
        return outer

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.inner.shutdown(wait, cancel_futures=cancel_futures)

    def _forget(self, run_id: str) -> None:
        self.watched.pop(run_id, None)
        self._histories.pop(run_id, None)

    def _checked(self, act: Any, done: concurrent.futures.Future[Any], outer: concurrent.futures.Future[Any]) -> None:
        run_id = act.run_id
        execution = self.watched.get(run_id)
        if execution is None or done.exception() is not None:
            _settle(outer, done)
            return
        if run_id in self._histories:
            self._verdict(act, execution, done.result())
            outer.set_result(done.result())
            return
        asyncio.get_running_loop().create_task(self._fetch_then_check(act, execution, done, outer))

    async def _fetch_then_check(self, act: Any, execution: Any, done: concurrent.futures.Future[Any],
                                outer: concurrent.futures.Future[Any]) -> None:
        history: WorkflowHistory | None = None
        if act.history_length <= MAX_EVENTS:
            try:
                handle = self.client.get_workflow_handle(execution.workflow_id, run_id=act.run_id)
                history = await asyncio.wait_for(handle.fetch_history(), FETCH_SECONDS)
            except Exception as e:  # Temporal's own check still runs
                log.warning("[%s %s] replaying other code than it started with; its history could not be "
                            "read to check the replay (%s)", execution.workflow_id, act.run_id, e)
        self._histories[act.run_id] = history
        self._verdict(act, execution, done.result())
        outer.set_result(done.result())

    def _verdict(self, act: Any, execution: Any, completion: Any) -> None:
        """Fail ``completion`` if the commands made so far leave the recorded ones; forget the run once its
        replay is over (the first activation that is no replay, or a failed task)."""
        history = self._histories.get(act.run_id)
        if history is not None and completion.HasField("successful"):
            recorded = _commands.recorded_commands(history)
            made = execution.commands
            if any(not _commands.same(recorded[i][1], made[i][0]) for i in range(min(len(recorded), len(made)))):
                report = _commands.divergence(history, execution, "")
                message = (f"{report} (this execution's history was made by other Lua: restore that code, or "
                           "guard the change with workflow.version; moontide replay checks a change first)")
                log.error("[%s %s] diverges from its history: %s", execution.workflow_id, act.run_id, message)
                completion.failed.failure.message = f"[moontide] nondeterminism: {message}"
                completion.failed.force_cause = WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
                self.diverged += 1
        if not act.is_replaying or not completion.HasField("successful"):
            self._forget(act.run_id)


def _settle(outer: concurrent.futures.Future[Any], done: concurrent.futures.Future[Any]) -> None:
    error = done.exception()
    if error is not None:
        outer.set_exception(error)
    else:
        outer.set_result(done.result())
