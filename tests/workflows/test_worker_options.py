"""A temporal.worker entry's worker_options reach the Temporal SDK worker, defaults from the entry schema."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client

from moontide_testing import TEMPORAL_ENTRIES
from moontide.entries import SCHEMAS, apply_defaults
from moontide.runtime import load
from moontide.workflows import build_worker


def worker_config(app_dir: Path, client: Client, data: dict[str, Any] | None = None) -> dict[str, Any]:
    app = load(app_dir)
    entry = app.get("app:worker")
    if data is not None:  # an entry made elsewhere (e.g. from a custom resource) may lack the defaults
        entry = dataclasses.replace(entry, data=data)
    return dict(build_worker(client, app, entry).config())


async def test_defaults_come_from_the_schema(make_app: Callable[..., Path], temporal_address: str) -> None:
    client = await Client.connect(temporal_address)
    app_dir = make_app({"app.yaml": TEMPORAL_ENTRIES})
    defaults = apply_defaults(SCHEMAS["temporal.worker"], {"client": "client"})["worker_options"]
    for data in (None, {"client": "client"}):
        config = worker_config(app_dir, client, data)
        assert config["max_concurrent_workflow_task_polls"] == defaults["workflow_pollers"] == 5
        assert config["max_concurrent_activity_task_polls"] == defaults["activity_pollers"]
        assert config["max_cached_workflows"] == defaults["max_cached_workflows"]
        assert config["sticky_queue_schedule_to_start_timeout"] == timedelta(seconds=1)
        assert config["debug_mode"] is True  # inline_activations


@pytest.mark.parametrize("option,value,key,expected", [
    ("workflow_pollers", 3, "max_concurrent_workflow_task_polls", 3),
    ("activity_pollers", 4, "max_concurrent_activity_task_polls", 4),
    ("max_cached_workflows", 7, "max_cached_workflows", 7),
    ("max_concurrent_workflow_tasks", 9, "max_concurrent_workflow_tasks", 9),
    ("sticky_queue_timeout", "2500ms", "sticky_queue_schedule_to_start_timeout", timedelta(seconds=2.5)),
    ("inline_activations", False, "debug_mode", False),
])
async def test_each_option_reaches_the_sdk_worker(make_app: Callable[..., Path], temporal_address: str,
                                                  option: str, value: Any, key: str, expected: Any) -> None:
    client = await Client.connect(temporal_address)
    app_dir = make_app({"app.yaml": TEMPORAL_ENTRIES + f"    worker_options: {{{option}: {value}}}\n"})
    assert worker_config(app_dir, client)[key] == expected
