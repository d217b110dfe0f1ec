"""``moontide run`` on the embedded server, killed with SIGKILL and started again on the same app (issue 2).

The whole local stack dies: ``moontide run`` by SIGKILL, and its Temporal dev
server by SIGKILL too, before the SIGTERM that Moontide's death sends it can
shut it down cleanly. A second ``moontide run`` on the same app directory
finds the database in ``.moontide/`` and finishes the execution started before
the kill: its timer fires, its activities ran once each.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from moontide.devserver import running_address
from moontide.runtime import Pid
from moontide_testing import HANG, TEMPORAL_ENTRIES, eventually, moontide, moontide_run

# the shared client and worker, the client without an address: the embedded server
APP = TEMPORAL_ENTRIES.replace("    address: 127.0.0.1:1\n", "") + """  - name: nap
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


async def history_of(address: str, workflow_id: str) -> list[int]:
    client = await Client.connect(address)
    return [e.event_type for e in (await client.get_workflow_handle(workflow_id).fetch_history()).events]


async def test_sigkill_of_moontide_run_and_its_server_then_a_restart_finishes_the_execution(
        make_app: Callable[..., Path], tmp_path: Path) -> None:
    app = make_app({"app.yaml": APP, "nap.lua": NAP, "stamp.lua": "return function(s) return s .. '!' end"})
    state = app / ".moontide"

    with moontide_run(app, tmp_path / "first.log", "--no-ui") as first:
        spawned = moontide("spawn", "app:nap", "app:worker", '{"id": "o-7"}', "--app", str(app))
        assert spawned.returncode == 0, spawned.stderr
        pid = spawned.stdout.strip()
        workflow_id = Pid.parse(pid).workflow_id
        address = running_address(state)
        assert address is not None
        await eventually(lambda: history_of(address, workflow_id), lambda types: EventType.EVENT_TYPE_TIMER_STARTED
                         in types, what="the workflow sleeping", timeout=HANG)
        server_pid = json.loads((state / "server.json").read_text())["pid"]
        first.kill()  # SIGKILL: no shutdown of the workers, nothing flushed
        os.kill(server_pid, signal.SIGKILL)  # and the server, before the SIGTERM it got can stop it cleanly
        first.wait()
        await eventually(lambda: running_address(state), lambda live: live is None, what="the server's port closed",
                         timeout=HANG)

    second_log = tmp_path / "second.log"
    with moontide_run(app, second_log, "--no-ui"):
        result = moontide("result", pid, "--app", str(app))
        assert result.returncode == 0, result.stderr + second_log.read_text(errors="replace")
        assert json.loads(result.stdout) == {"before": "before o-7!", "after": "after o-7!"}
        address = running_address(state)
        assert address is not None
        types = await history_of(address, workflow_id)
    assert types.count(EventType.EVENT_TYPE_TIMER_FIRED) == 1
    assert types.count(EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED) == 2  # each call completed once
    assert types[-1] == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
