"""A temporal.worker's worker_options (Wippy's names, en/temporal/overview.md) reach the Temporal worker.

Each option is checked where it lands: the SDK worker's configuration, and for those whose effect
Temporal records, the real dev server (history, task queue pollers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from moontide_testing import TEMPORAL_ENTRIES, eventually, running
from moontide import errors
from moontide.entries import SCHEMAS, apply_defaults
from moontide.runtime import load
from moontide.workflows import build_worker
from moontide.workflows._inline import OnLoopExecutor


def worker_config(app_dir: Path, client: Client, data: dict[str, Any] | None = None) -> dict[str, Any]:
    app = load(app_dir)
    entry = app.get("app:worker")
    if data is not None:  # an entry made elsewhere (e.g. from a custom resource) may lack the defaults
        entry = dataclasses.replace(entry, data=data)
    return dict(build_worker(client, app, entry).config())


def app_with(make_app: Callable[..., Path], options: dict[str, Any], extra: str = "") -> Path:
    return make_app({"app.yaml": TEMPORAL_ENTRIES + f"    worker_options: {json.dumps(options)}\n" + extra})


async def test_defaults_come_from_the_schema(make_app: Callable[..., Path], temporal_address: str) -> None:
    client = await Client.connect(temporal_address)
    app_dir = make_app({"app.yaml": TEMPORAL_ENTRIES})
    defaults = apply_defaults(SCHEMAS["temporal.worker"], {"client": "client"})["worker_options"]
    for data in (None, {"client": "client"}):
        config = worker_config(app_dir, client, data)
        assert config["max_concurrent_workflow_task_polls"] == defaults["max_concurrent_workflow_task_pollers"] == 5
        assert config["max_concurrent_activity_task_polls"] == defaults["max_concurrent_activity_task_pollers"]
        assert config["max_concurrent_activities"] == defaults["max_concurrent_activity_execution_size"] == 100
        assert config["max_cached_workflows"] == defaults["max_cached_workflows"]
        assert config["sticky_queue_schedule_to_start_timeout"] == timedelta(seconds=1)
        assert config["graceful_shutdown_timeout"] == timedelta(0)
        # inline_activations: the worker's own executor, never the SDK's debug mode (a debugger aid)
        assert isinstance(config["workflow_task_executor"].inner, OnLoopExecutor)
        assert config["debug_mode"] is False
        # "0" / empty: the SDK's own default
        for key in ("identity", "max_activities_per_second", "max_task_queue_activities_per_second",
                    "build_id", "deployment_config"):
            assert config.get(key) is None, key
        assert config["max_heartbeat_throttle_interval"] == timedelta(seconds=60)  # the SDK's


@pytest.mark.parametrize("option,value,key,expected", [
    ("identity", "billing-1", "identity", "billing-1"),
    ("max_concurrent_workflow_task_execution_size", 9, "max_concurrent_workflow_tasks", 9),
    ("max_concurrent_activity_execution_size", 7, "max_concurrent_activities", 7),
    ("max_concurrent_local_activity_execution_size", 6, "max_concurrent_local_activities", 6),
    ("max_concurrent_workflow_task_pollers", 3, "max_concurrent_workflow_task_polls", 3),
    ("max_concurrent_activity_task_pollers", 4, "max_concurrent_activity_task_polls", 4),
    ("worker_activities_per_second", 2.5, "max_activities_per_second", 2.5),
    ("task_queue_activities_per_second", 8, "max_task_queue_activities_per_second", 8.0),
    ("sticky_schedule_to_start_timeout", "2500ms", "sticky_queue_schedule_to_start_timeout", timedelta(seconds=2.5)),
    ("worker_stop_timeout", "3s", "graceful_shutdown_timeout", timedelta(seconds=3)),
    ("max_heartbeat_throttle_interval", "20s", "max_heartbeat_throttle_interval", timedelta(seconds=20)),
    ("default_heartbeat_throttle_interval", "5s", "default_heartbeat_throttle_interval", timedelta(seconds=5)),
    ("local_activity_worker_only", True, "no_remote_activities", True),
    ("disable_eager_activities", True, "disable_eager_activity_execution", True),
    ("disable_workflow_worker", True, "workflows", []),
    ("build_id", "v7", "build_id", "v7"),
    ("max_cached_workflows", 7, "max_cached_workflows", 7),
])
async def test_each_option_reaches_the_sdk_worker(make_app: Callable[..., Path], temporal_address: str,
                                                  option: str, value: Any, key: str, expected: Any) -> None:
    client = await Client.connect(temporal_address)
    assert worker_config(app_with(make_app, {option: value}), client)[key] == expected


def _on_threads(executor: Any) -> bool:
    """The worker's activations run on a pool of the SDK's kind (behind its replay guard)."""
    from concurrent.futures import ThreadPoolExecutor

    return isinstance(executor.inner, ThreadPoolExecutor) and executor.inner._thread_name_prefix == "temporal_workflow_"


async def test_inline_activations_false_runs_them_on_threads(make_app: Callable[..., Path], temporal_address: str) -> None:
    config = worker_config(app_with(make_app, {"inline_activations": False}), await Client.connect(temporal_address))
    assert _on_threads(config["workflow_task_executor"])


async def test_inline_activations_leave_the_sdk_debugger_aids_off(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """The SDK's debug mode would install its workflow breakpoint hook and relax the sandbox: not here."""
    hook = sys.breakpointhook
    config = worker_config(make_app({"app.yaml": TEMPORAL_ENTRIES}), await Client.connect(temporal_address))
    assert sys.breakpointhook is hook
    assert not getattr(sys.breakpointhook, "__module__", "").startswith("temporalio")
    assert config["debug_mode"] is False and isinstance(config["workflow_task_executor"].inner, OnLoopExecutor)


async def test_inline_activations_fall_back_to_threads_where_wait_for_would_lose_results(
        make_app: Callable[..., Path], temporal_address: str, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """From Python 3.12 on, the SDK's deadlock ``wait_for`` cancels a task whose result comes with its
    timeout (tests/workflows/test_on_loop_executor.py): there the worker keeps the SDK's threads, and says so."""
    from moontide.workflows import _worker

    monkeypatch.setattr(_worker, "INLINE_ACTIVATIONS_SUPPORTED", False)
    with caplog.at_level(logging.WARNING, logger=_worker.__name__):
        config = worker_config(make_app({"app.yaml": TEMPORAL_ENTRIES}), await Client.connect(temporal_address))
    assert _on_threads(config["workflow_task_executor"]) and config["debug_mode"] is False
    assert any("app:worker: worker_options.inline_activations needs Python 3.11" in r.getMessage()
               for r in caplog.records), [r.getMessage() for r in caplog.records]


async def test_the_options_that_cap_nothing_here_load_and_change_nothing(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    # Wippy's page sets them; Moontide runs no sessions and never aliases a registration
    base = worker_config(make_app({"app.yaml": TEMPORAL_ENTRIES}, name="base"), await Client.connect(temporal_address))
    config = worker_config(app_with(make_app, {"max_concurrent_session_execution_size": 5,
                                               "disable_registration_aliasing": True,
                                               "default_versioning_behavior": "auto_upgrade"}),
                           await Client.connect(temporal_address))  # one worker per client and task queue
    made = ("client", "workflows", "activities", "activity_executor", "workflow_task_executor")  # one per worker
    assert {k: v for k, v in config.items() if k not in made} == {k: v for k, v in base.items() if k not in made}
    assert type(config["workflow_task_executor"].inner) is type(base["workflow_task_executor"].inner)


async def test_build_id_comes_from_the_environment_when_the_worker_starts(
        make_app: Callable[..., Path], temporal_address: str, monkeypatch: pytest.MonkeyPatch) -> None:
    client = await Client.connect(temporal_address)
    app_dir = app_with(make_app, {"build_id": "${env:MOONTIDE_TEST_BUILD}"})
    monkeypatch.delenv("MOONTIDE_TEST_BUILD", raising=False)
    with pytest.raises(errors.Invalid, match=r"app:worker: worker_options.build_id: environment variable "
                                             r"MOONTIDE_TEST_BUILD is not set"):
        worker_config(app_dir, client)
    monkeypatch.setenv("MOONTIDE_TEST_BUILD", "2024.06.1")
    assert worker_config(app_dir, await Client.connect(temporal_address))["build_id"] == "2024.06.1"


WORKFLOW = """
  - name: wf
    kind: workflow.lua
    source: |
      return function()
        logger.info("before the nap")
        time.sleep("50ms")
        return funcs.call("echo", "done")
      end
    modules: [funcs, time, logger]
  - name: echo
    kind: function.lua
    source: "return function(v) return v end"
"""


async def test_identity_build_id_and_deployment_are_recorded_by_temporal(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app_dir = app_with(make_app, {"identity": "billing-worker-1", "deployment_name": "billing",
                                  "build_id": "billing-42"}, WORKFLOW)
    async with running(app_dir, temporal_address) as rt:
        pid = await rt.spawn("app:wf")
        assert await rt.result(pid) == "done"
        history = await (await rt.handle(pid)).fetch_history()
        desc = await (await rt.handle(pid)).describe()
    completed = [e.workflow_task_completed_event_attributes for e in history.events
                 if e.HasField("workflow_task_completed_event_attributes")]
    assert completed and {c.identity for c in completed} == {"billing-worker-1"}
    assert {c.worker_version.build_id for c in completed} == {"billing-42"}
    assert {c.worker_deployment_name for c in completed} == {"billing"}
    assert desc.raw_description.workflow_execution_info.worker_deployment_name == "billing"


async def pollers(client: Client, queue: str, kind: int) -> list[str]:
    resp = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
        namespace=client.namespace, task_queue=TaskQueue(name=queue), task_queue_type=kind))
    return [p.identity for p in resp.pollers]


async def test_disable_workflow_worker_and_local_activity_worker_only_change_what_is_polled(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    # worker a: activities only; worker b (its own queue): workflows and local activities only
    extra = f"""
  - name: b
    kind: temporal.worker
    client: client
    task_queue: {task_queue}-b
    worker_options: {{identity: b, local_activity_worker_only: true}}
"""
    app_dir = app_with(make_app, {"identity": "a", "disable_workflow_worker": True}, extra)
    client = await Client.connect(temporal_address)
    async with running(app_dir, temporal_address):
        wf, act = TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY
        await eventually(lambda: pollers(client, task_queue, act), lambda p: "a" in p, what="a polls activities")
        await eventually(lambda: pollers(client, f"{task_queue}-b", wf), lambda p: "b" in p,
                         what="b polls workflow tasks")
        assert await pollers(client, task_queue, wf) == []
        assert await pollers(client, f"{task_queue}-b", act) == []


@pytest.mark.parametrize("on", [False, True])
async def test_enable_logging_in_replay(make_app: Callable[..., Path], temporal_address: str, on: bool,
                                        caplog: pytest.LogCaptureFixture) -> None:
    # no workflow cache: every activation replays the history from the start, logging again only when on
    app_dir = app_with(make_app, {"max_cached_workflows": 0, "enable_logging_in_replay": on}, WORKFLOW)
    with caplog.at_level(logging.INFO, logger="moontide.workflow"):
        async with running(app_dir, temporal_address) as rt:
            assert await rt.result(await rt.spawn("app:wf")) == "done"
    lines = [r for r in caplog.records if "before the nap" in r.getMessage()]
    assert len(lines) == (3 if on else 1), [r.getMessage() for r in lines]
