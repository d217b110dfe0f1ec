"""A ``temporal.worker`` entry as a running Temporal worker of Lua workflows and functions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from .. import durations
from ..entries import SCHEMAS, apply_defaults
from ._codebook import CodeBook
from ._functions import Functions, activity_for
from ._system import SYSTEM_ACTIVITIES
from ._workflow import WorkflowSettings, workflow_class

__all__ = ["build_worker"]


def build_worker(client: Client, app: Any, worker_entry: Any, *, code_store: Path | None = None,
                 processes: Any = None) -> Worker:
    """A Temporal ``Worker`` serving every workflow.lua and function.lua entry of ``app``.

    ``processes`` (an ``AppRuntime``) answers process.spawn/exec/send/cancel/terminate
    from function code; it must run on the event loop this is called from.
    """
    # the schema's defaults fill what the entry leaves out (entries loaded from files have them already)
    opts = apply_defaults(SCHEMAS["temporal.worker"], worker_entry.data)["worker_options"]
    memory_limit = int(opts["memory_limit_mb"]) << 20
    settings = WorkflowSettings(instruction_budget=int(opts["instruction_budget"]),
                                memory_limit=memory_limit, worker_id=worker_entry.id,
                                client_id=app.resolve(worker_entry.data["client"], worker_entry.namespace))
    book = CodeBook(app, store_dir=code_store)
    max_activities = int(opts["max_concurrent_activities"])
    loop = asyncio.get_running_loop() if processes is not None else None
    functions = Functions(book.functions, pool_size=max_activities, memory_limit=memory_limit,
                          processes=processes, loop=loop)
    task_queue = worker_entry.data.get("task_queue") or worker_entry.id
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[workflow_class(task_queue, book, settings)],
        # function activities are async: pure functions run inline on the event loop,
        # the others on functions.executor (also the executor of sync activities here)
        activities=[activity_for(functions), *SYSTEM_ACTIVITIES],
        activity_executor=functions.executor,
        max_cached_workflows=int(opts["max_cached_workflows"]),
        max_concurrent_workflow_tasks=int(opts["max_concurrent_workflow_tasks"]),
        max_concurrent_activities=max_activities,
        max_concurrent_workflow_task_polls=int(opts["workflow_pollers"]),
        max_concurrent_activity_task_polls=int(opts["activity_pollers"]),
        # Temporal's 10 s default made recovery after a worker SIGKILL take ~12.6 s.
        sticky_queue_schedule_to_start_timeout=timedelta(
            microseconds=durations.parse(opts["sticky_queue_timeout"]) / 1000),
        # The SDK's one switch for running activations on the event loop (no thread
        # hand-off each time): its other effects are for Python debuggers, which Lua
        # never meets, and the deadlock detector it turns off is the instruction budget's job.
        debug_mode=bool(opts["inline_activations"]),
    )
