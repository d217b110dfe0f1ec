"""`moontide ps`: what a person sees."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide.cli import main
from moontide.runtime import STATE_DIR

SERVICE = """
- name: worker_svc
  kind: process.service
  process: idle
  host: host
  lifecycle:
    auto_start: true
    restart: {initial_delay: 10ms, max_attempts: 2}
- name: broken_svc
  kind: process.service
  process: broken
  host: host
  lifecycle:
    auto_start: true
    restart: {initial_delay: 10ms, max_attempts: 1}
"""
IDLE = "return function() process.inbox():receive() end"
BROKEN = "return function() error('no database') end"


def test_ps_without_a_running_app_lists_declared_services(make_app: Callable[..., Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    app = process_app(make_app, {"idle": IDLE, "broken": BROKEN}, entries=SERVICE)
    assert main(["ps", "--app", str(app)]) == 0
    out = capsys.readouterr().out
    assert "no Moontide app is running" in out
    assert "app:worker_svc  Stopped" in out and "app:broken_svc  Stopped" in out


async def test_ps_shows_states_restarts_last_errors_and_processes(make_app: Callable[..., Path],
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    app = process_app(make_app, {"idle": IDLE, "broken": BROKEN}, entries=SERVICE)
    async with running(app, state_dir=app / STATE_DIR) as system:
        extra = system.spawn("app:idle", "app:host")
        await settle(system, extra)
        system.write_status()
        assert main(["ps", "--app", str(app)]) == 0
        out = capsys.readouterr().out
        assert main(["ps", "--app", str(app), "--json"]) == 0
        data = json.loads(capsys.readouterr().out)
    lines = out.splitlines()
    assert lines[0].split() == ["SERVICE", "STATE", "RESTARTS", "PID", "UPTIME", "LAST", "ERROR"]
    worker = next(ln for ln in lines if ln.startswith("app:worker_svc"))
    assert "Running" in worker and system.service("app:worker_svc").pid in worker
    broken = next(ln for ln in lines if ln.startswith("app:broken_svc"))
    assert "Failed" in broken and " 1 " in broken and "[LuaError] broken.lua:1: no database" in broken
    assert "host app:host: 2 processes" in out
    assert extra in out and "waiting in receive on inbox" in out
    assert "recent failures:" in out
    services = {s["id"]: s for s in data["services"]}
    assert services["app:broken_svc"]["state"] == "Failed" and services["app:broken_svc"]["restarts"] == 1
    # once the app stops, ps says so
    assert main(["ps", "--app", str(app)]) == 0
    assert "no Moontide app is running" in capsys.readouterr().out
