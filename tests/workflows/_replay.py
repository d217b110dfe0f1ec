"""Replay a workflow's history in a fresh Python process, as a new worker would after a crash.

``await replays_in_fresh_process(rt, pid, app_dir)`` fetches the execution's
history and runs this file as a script on it: a new process (other string
hashes, other addresses, a new Lua state) builds the app's workflow class
and replays the history with Temporal's ``Replayer``, which fails on any
command that differs from the history (nondeterminism). The script exits 0
when the replay matched, 1 printing the failure otherwise.

    python _replay.py APP_DIR HISTORY_JSON WORKFLOW_ID
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

#: The worker and client of the test apps (moontide_testing.TEMPORAL_ENTRIES): pids are made of them.
WORKER, CLIENT = "app:worker", "app:client"


async def replays_in_fresh_process(rt: Any, pid: Any, app_dir: Path) -> str:
    """Replay ``pid``'s history so far in a new process; its output (fails the test on a mismatch)."""
    handle = await rt.handle(pid)
    history = await handle.fetch_history()
    path = app_dir / f"history-{pid.workflow_id}.json"
    path.write_text(history.to_json())
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, str(app_dir), str(path), pid.workflow_id,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"the replay of {pid.workflow_id} in a fresh process failed:\n{text}"
    return text


async def replay(app_dir: Path, history: Any) -> BaseException | None:
    """Replay ``history`` with the app's workflow class here: None if the Lua made the same commands."""
    from temporalio.worker import Replayer

    from moontide.runtime import load
    from moontide.workflows import CodeBook, WorkflowSettings, workflow_class

    settings = WorkflowSettings(worker_id=WORKER, client_id=CLIENT)
    build_id = f"replay-{time.monotonic_ns()}"
    # the Replayer shows workflow code the task queue "replay-<build id>"
    cls = workflow_class(f"replay-{build_id}", CodeBook(load(app_dir)), settings)
    result = await Replayer(workflows=[cls], build_id=build_id).replay_workflow(history, raise_on_replay_failure=False)
    return result.replay_failure


async def _main(app_dir: str, history_file: str, workflow_id: str) -> int:
    from temporalio.client import WorkflowHistory

    history = WorkflowHistory.from_json(workflow_id, Path(history_file).read_text())
    failure = await replay(Path(app_dir), history)
    if failure is not None:
        print(f"replay failed: {failure!r}")
        return 1
    print(f"replayed {len(history.events)} events")
    return 0


if __name__ == "__main__":
    code = asyncio.run(_main(*sys.argv[1:4]))
    sys.stdout.flush()
    # not sys.exit: the SDK's core threads can crash the interpreter's finalization
    os._exit(code)
