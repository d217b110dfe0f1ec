"""`moontide run` runs processes and services with the workers; the CLI reaches their pids in another shell."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Callable

from _procs import process_app
from moontide_testing import moontide, moontide_run

KEEPER = """
return function(name)
  local seen = 0
  while true do
    local msg = process.inbox():receive()
    seen = seen + 1
    if msg:topic() == "stop" then return { name = name, seen = seen, last = msg:payload():data() } end
  end
end
"""
IDLE = "return function() process.inbox():receive() end"
BROKEN = "return function() error('no database') end"
SERVICES = """
- name: base_svc
  kind: process.service
  process: idle
  host: host
  lifecycle: {auto_start: true, stop_timeout: 2s}
- name: top_svc
  kind: process.service
  process: idle
  host: host
  lifecycle: {auto_start: true, depends_on: [base_svc, worker], stop_timeout: 2s}
- name: keeper_svc
  kind: process.service
  process: keeper
  host: host
  input: ["k1"]
  lifecycle: {auto_start: true}
- name: victim_svc
  kind: process.service
  process: idle
  host: host
  lifecycle: {auto_start: true, restart: {max_attempts: 1}}
"""


def test_run_spawn_runs_a_process_and_prints_its_result(make_app: Callable[..., Path]) -> None:
    adder = """
    return function(a, b)
      local helper = process.spawn("idle", "host")
      process.send(helper, "x", {})
      return { sum = a + b, me = process.pid() }
    end
    """
    app = process_app(make_app, {"adder": adder, "idle": IDLE, "broken": BROKEN})
    cmd = ["run", str(app), "--spawn", "app:adder", "--host", "app:host", "--input", "2", "--input", "40"]
    done = moontide(*cmd)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["sum"] == 42 and out["me"].startswith("{app:host|")
    failed = moontide(*cmd[:3], "app:broken")
    assert failed.returncode == 1
    assert "process {app:host|" in failed.stderr and "[LuaError] broken.lua:1: no database" in failed.stderr
    # `moontide spawn` starts workflows on a running app; a process is spawned by the app that hosts it
    refused = moontide("spawn", "app:adder", "app:host", "--app", str(app))
    assert refused.returncode == 2 and "[Invalid]" in refused.stderr and "--spawn app:adder" in refused.stderr


def test_run_serves_services_in_order_and_the_cli_reaches_their_pids(make_app: Callable[..., Path],
                                                                     temporal_address: str, tmp_path: Path) -> None:
    app = process_app(make_app, {"keeper": KEEPER, "idle": IDLE}, workflows={"noop": "return function() end"},
                      entries=SERVICES)
    at = ["--app", str(app), "--temporal", temporal_address]
    log = tmp_path / "run.log"
    with moontide_run(app, log, "--temporal", temporal_address) as run:
        services = {s["id"]: s for s in json.loads(moontide("ps", "--app", str(app), "--json").stdout)["services"]}
        assert {s["state"] for s in services.values()} == {"Running"}
        keeper, victim = services["app:keeper_svc"]["pid"], services["app:victim_svc"]["pid"]

        assert moontide("send", keeper, "note", '{"x": 1}', *at).returncode == 0
        status = moontide("status", keeper, *at)
        assert status.returncode == 0, status.stderr
        assert "RUNNING" in status.stdout and "app:keeper on app:host" in status.stdout
        assert "waiting in receive on inbox" in status.stdout and "1 received" in status.stdout
        assert moontide("send", keeper, "stop", '{"bye": true}', *at).returncode == 0
        result = moontide("result", keeper, *at)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == {"name": "k1", "seen": 2, "last": {"bye": True}}

        assert moontide("terminate", victim, "--reason", "from the cli", *at).returncode == 0
        failed = moontide("result", victim, *at)
        assert failed.returncode == 1 and "[Terminated]" in failed.stderr and "from the cli" in failed.stderr
        bad = moontide("send", "{app:host|abcdef.1}", "x", *at)
        assert bad.returncode == 2 and "[NotFound]" in bad.stderr and "is not running" in bad.stderr
        run.send_signal(signal.SIGTERM)
        code = run.wait(60)
    text = log.read_text(errors="replace")
    assert code in (0, 130), text
    assert "Traceback" not in text
    lines = text.splitlines()

    def first(words: str) -> int:
        return next(i for i, ln in enumerate(lines) if words in ln)
    # started in depends_on order (top after base), stopped in reverse
    assert first("service app:base_svc: Starting -> Running") < first("service app:top_svc: Stopped -> Starting")
    assert first("service app:top_svc: Stopping -> Stopped") < first("service app:base_svc: Running -> Stopping")
