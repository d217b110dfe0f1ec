"""``moontide run`` on the embedded server, killed with SIGKILL and started again on the same app (issue 2).

The whole local stack dies: ``moontide run`` by SIGKILL, and its Temporal dev
server by SIGKILL too, before the SIGTERM that Moontide's death sends it can
shut it down cleanly. A second ``moontide run`` on the same app directory
finds the database in ``.moontide/`` and finishes the execution started before
the kill: its timer fires, its activities ran once each.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from moontide.devserver import running_address
from moontide.runtime import Pid

MOONTIDE = str(Path(sys.executable).with_name("moontide"))
HANG = 120  # a guard against a hang, not a speed check

APP = """
version: "1.0"
namespace: app
entries:
  - name: client
    kind: temporal.client
  - name: worker
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE
  - name: nap
    kind: workflow.lua
    source: file://nap.lua
    modules: [funcs, time]
  - name: stamp
    kind: function.lua
    source: file://stamp.lua
"""

NAP = """
return function(order)
  local before = funcs.call("stamp", "before " .. order.id)
  time.sleep("4s")
  return { before = before, after = funcs.call("stamp", "after " .. order.id) }
end
"""


@contextmanager
def moontide_run(app: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``moontide run APP`` (the embedded server: the client has no address), ready when it says serving."""
    with open(log, "ab") as out:
        proc = subprocess.Popen([MOONTIDE, "run", str(app), "--no-ui"], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + HANG
        while "serving" not in log.read_text(errors="replace"):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(HANG)


def moontide(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MOONTIDE, *args], capture_output=True, text=True, timeout=HANG)


async def history_types(address: str, workflow_id: str) -> list[int]:
    client = await Client.connect(address)
    return [e.event_type for e in (await client.get_workflow_handle(workflow_id).fetch_history()).events]


def wait_until(what: str, probe: Callable[[], bool]) -> None:
    deadline = time.monotonic() + HANG
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not in {HANG}s"
        time.sleep(0.1)


def test_sigkill_of_moontide_run_and_its_server_then_a_restart_finishes_the_execution(
        make_app: Callable[..., Path], tmp_path: Path) -> None:
    app = make_app({"app.yaml": APP, "nap.lua": NAP, "stamp.lua": "return function(s) return s .. '!' end"})
    state = app / ".moontide"

    with moontide_run(app, tmp_path / "first.log") as first:
        spawned = moontide("spawn", "app:nap", "app:worker", '{"id": "o-7"}', "--app", str(app))
        assert spawned.returncode == 0, spawned.stderr
        pid = spawned.stdout.strip()
        workflow_id = Pid.parse(pid).workflow_id
        address = running_address(state)
        assert address is not None

        def sleeping() -> bool:
            types = asyncio.run(history_types(address, workflow_id))
            return EventType.EVENT_TYPE_TIMER_STARTED in types

        wait_until("the workflow sleeping", sleeping)
        server_pid = json.loads((state / "server.json").read_text())["pid"]
        first.kill()  # SIGKILL: no shutdown of the workers, nothing flushed
        os.kill(server_pid, signal.SIGKILL)  # and the server, before the SIGTERM it got can stop it cleanly
        first.wait()
        wait_until("the server's port closed", lambda: running_address(state) is None)

    with moontide_run(app, tmp_path / "second.log"):
        result = moontide("result", pid, "--app", str(app))
        assert result.returncode == 0, result.stderr + (tmp_path / "second.log").read_text(errors="replace")
        assert json.loads(result.stdout) == {"before": "before o-7!", "after": "after o-7!"}
        address = running_address(state)
        assert address is not None
        types = asyncio.run(history_types(address, workflow_id))
    assert types.count(EventType.EVENT_TYPE_TIMER_FIRED) == 1
    assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 2  # each call completed once
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
