"""A ``temporal.worker`` entry as a running Temporal worker of Lua workflows and functions."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.common import WorkerDeploymentVersion
from temporalio.worker import Worker, WorkerDeploymentConfig

from .. import durations
from ..entries import SCHEMAS, apply_defaults, expand_env
from ._codebook import CodeBook
from . import _commands, _context
from ._functions import Functions, activity_for
from ._inline import INLINE_ACTIVATIONS_SUPPORTED, OnLoopExecutor
from ._replay_guard import ReplayGuard
from ._system import SYSTEM_ACTIVITIES
from ._workflow import WorkflowSettings, workflow_class

__all__ = ["build_worker", "workflow_settings"]

log = logging.getLogger(__name__)


def build_worker(client: Client, app: Any, worker_entry: Any, *, code_store: Path | None = None,
                 processes: Any = None) -> Worker:
    """A Temporal ``Worker`` serving the workflow.lua and function.lua entries of ``app`` this worker runs.

    A workflow or function runs on every worker unless its ``meta.temporal``
    names one (Wippy's routing, ``App.runs_on``); local activities run in the
    worker of the workflow that calls them.

    ``processes`` (an ``AppRuntime``) answers process.spawn/exec/send/cancel/terminate
    from function code; it must run on the event loop this is called from.
    """
    opts = _options(worker_entry)
    memory_limit = int(opts["memory_limit_mb"]) << 20
    watched: dict[str, Any] = {}  # executions replaying other code than they started with (ReplayGuard)
    settings = workflow_settings(app, worker_entry, watched=watched)
    book = CodeBook(app, store_dir=code_store)
    max_activities = int(opts["max_concurrent_activity_execution_size"])
    loop = asyncio.get_running_loop() if processes is not None else None
    functions = Functions(book.functions, pool_size=max_activities, memory_limit=memory_limit,
                          processes=processes, loop=loop, app=app)
    served = frozenset(e.id for e in app.of_kind("function.lua") if app.runs_on(e, worker_entry.id))
    task_queue = app.task_queue(worker_entry)
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[] if opts["disable_workflow_worker"] else [workflow_class(task_queue, book, settings)],
        # function activities are async: pure functions run inline on the event loop,
        # the others on functions.executor (also the executor of sync activities here)
        activities=[activity_for(functions, served), *SYSTEM_ACTIVITIES],
        activity_executor=functions.executor,
        # the ctx module's values, from workflows to their activities; commands noted with their Lua line
        interceptors=[_context.INTERCEPTOR, _commands.INTERCEPTOR],
        max_cached_workflows=int(opts["max_cached_workflows"]),
        max_concurrent_workflow_tasks=int(opts["max_concurrent_workflow_task_execution_size"]),
        max_concurrent_activities=max_activities,
        max_concurrent_local_activities=int(opts["max_concurrent_local_activity_execution_size"]),
        max_concurrent_workflow_task_polls=int(opts["max_concurrent_workflow_task_pollers"]),
        max_concurrent_activity_task_polls=int(opts["max_concurrent_activity_task_pollers"]),
        no_remote_activities=bool(opts["local_activity_worker_only"]),
        disable_eager_activity_execution=bool(opts["disable_eager_activities"]),
        # Temporal's 10 s default made recovery after a worker SIGKILL take ~12.6 s.
        sticky_queue_schedule_to_start_timeout=_duration(opts["sticky_schedule_to_start_timeout"]),
        graceful_shutdown_timeout=_duration(opts["worker_stop_timeout"]),
        # what runs activations, checking replays of other code against history (ReplayGuard)
        workflow_task_executor=ReplayGuard(  # type: ignore[arg-type]  # the SDK uses only submit()
            _activation_executor(bool(opts["inline_activations"]), worker_entry.id,
                                 int(opts["max_concurrent_workflow_task_execution_size"])),
            client, watched),
        **_optional(opts, worker_entry.id),
    )


def _options(worker_entry: Any) -> dict[str, Any]:
    # the schema's defaults fill what the entry leaves out (entries loaded from files have them already)
    return dict(apply_defaults(SCHEMAS["temporal.worker"], worker_entry.data)["worker_options"])


def workflow_settings(app: Any, worker_entry: Any, **extra: Any) -> WorkflowSettings:
    """How ``worker_entry`` runs Lua workflows (``extra``: e.g. what a replay check sets)."""
    opts = _options(worker_entry)
    return WorkflowSettings(instruction_budget=int(opts["instruction_budget"]),
                            memory_limit=int(opts["memory_limit_mb"]) << 20, worker_id=worker_entry.id,
                            client_id=app.resolve(worker_entry.data["client"], worker_entry.namespace),
                            log_in_replay=bool(opts["enable_logging_in_replay"]),
                            auto_upgrade=frozenset(e.id for e in app.of_kind("workflow.lua")
                                                   if app.versioning_behavior(e, worker_entry) == "auto_upgrade"),
                            **extra)


def _activation_executor(inline: bool, worker_id: str, max_tasks: int) -> concurrent.futures.Executor:
    """What runs the worker's workflow activations: the event loop (``inline_activations``), or threads
    as the SDK's own pool (``temporal_workflow_`` threads, one per concurrent task)."""
    if inline and INLINE_ACTIVATIONS_SUPPORTED:
        return OnLoopExecutor()
    if inline:
        log.warning("%s: worker_options.inline_activations needs Python 3.11; on Python %d.%d workflow "
                    "activations run on the SDK's threads", worker_id, *sys.version_info[:2])
    return concurrent.futures.ThreadPoolExecutor(max_workers=max_tasks or 500, thread_name_prefix="temporal_workflow_")


def _duration(text: str) -> timedelta:
    return timedelta(microseconds=durations.parse(text) / 1000)


def _optional(opts: dict[str, Any], worker_id: str) -> dict[str, Any]:
    """Worker arguments whose "not set" (0 or empty) means the SDK's own default."""
    kw: dict[str, Any] = {}
    if opts["identity"]:
        kw["identity"] = str(opts["identity"])
    if opts["worker_activities_per_second"]:
        kw["max_activities_per_second"] = float(opts["worker_activities_per_second"])
    if opts["task_queue_activities_per_second"]:
        kw["max_task_queue_activities_per_second"] = float(opts["task_queue_activities_per_second"])
    for name in ("max_heartbeat_throttle_interval", "default_heartbeat_throttle_interval"):
        if durations.parse(opts[name]):
            kw[name] = _duration(opts[name])
    build_id = expand_env(opts["build_id"], f"{worker_id}: worker_options.build_id")
    if opts["deployment_name"]:
        # the worker's deployment version, reported to Temporal; not worker versioning (use_versioning)
        kw["deployment_config"] = WorkerDeploymentConfig(
            version=WorkerDeploymentVersion(deployment_name=str(opts["deployment_name"]), build_id=build_id),
            use_worker_versioning=False)
    elif build_id:
        kw["build_id"] = build_id
    return kw
