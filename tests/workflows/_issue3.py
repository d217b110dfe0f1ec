"""Helpers for the issue-3 tests (process API on Temporal): apps, worker processes, history.

An app here is the conftest's client+worker pair plus workflow.lua and
function.lua entries, each from its own ``<name>.lua`` file that returns one
function. Workers run in-process (``conftest.running``) or as a real
``moontide run`` subprocess when a test needs to SIGKILL them.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from moontide_testing import COMMON_FUNCTIONS, TEMPORAL_ENTRIES, WorkerProcess, free_port, moontide, temporal_binary
from moontide_testing import eventually as _eventually
from moontide.runtime import AppRuntime, Pid

T = TypeVar("T")

WORKFLOW_MODULES = "[funcs, time, process, channel, workflow, errors, json, logger]"
FUNCTION_MODULES = "[funcs, time, errors, json, logger, process]"

def make_flows(make_app: Callable[..., Path], workflows: dict[str, str], functions: dict[str, str] | None = None,
               *, name: str = "app") -> Path:
    """An app with namespace ``app``: ``app:<name>`` workflows and functions, on worker ``app:worker``."""
    files: dict[str, str] = {}
    lines = [textwrap.dedent(TEMPORAL_ENTRIES).strip("\n")]
    for wf, src in workflows.items():
        files[f"{wf}.lua"] = textwrap.dedent(src)
        lines.append(f"  - name: {wf}\n    kind: workflow.lua\n    source: file://{wf}.lua\n"
                     f"    modules: {WORKFLOW_MODULES}")
    for fn, src in {**COMMON_FUNCTIONS, **(functions or {})}.items():
        files[f"{fn}.lua"] = textwrap.dedent(src)
        lines.append(f"  - name: {fn}\n    kind: function.lua\n    source: file://{fn}.lua\n"
                     f"    modules: {FUNCTION_MODULES}")
    files["app.yaml"] = "\n".join(lines) + "\n"
    return make_app(files, name=name)


async def eventually(probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], *, timeout: float = 30,
                     what: str = "condition") -> T:
    """``moontide_testing.eventually``, where a probe that raises means "not yet" (a query while no worker runs)."""
    return await _eventually(probe, ok, what=what, timeout=timeout, tolerate=(Exception,))


async def lua_state(rt: AppRuntime, pid: Pid | str) -> dict[str, Any]:
    """The built-in status query's answer (``moontide.status``)."""
    st = await rt.status(pid)
    return dict(st.get("lua") or {})


async def wait_blocking(rt: AppRuntime, pid: Pid | str, text: str, *, timeout: float = 30) -> dict[str, Any]:
    """Wait until the execution's Lua is blocked at a point whose description contains ``text``."""
    return await eventually(lambda: lua_state(rt, pid), lambda s: text in str(s.get("blocking", "")),
                            timeout=timeout, what=f"blocking on {text!r}")


async def history(client: Client, workflow_id: str, run_id: str | None = None) -> list[Any]:
    handle = client.get_workflow_handle(workflow_id, run_id=run_id)
    return [e async for e in handle.fetch_history_events()]


async def activities(client: Client, workflow_id: str, run_id: str | None = None) -> list[str]:
    """Activity types scheduled by the execution, in order."""
    return [e.activity_task_scheduled_event_attributes.activity_type.name
            for e in await history(client, workflow_id, run_id)
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


async def signal_names(client: Client, workflow_id: str) -> list[str]:
    return [e.workflow_execution_signaled_event_attributes.signal_name
            for e in await history(client, workflow_id)
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]


@contextlib.asynccontextmanager
async def worker_process(app_dir: Path, address: str) -> AsyncIterator[WorkerProcess]:
    w = await WorkerProcess(app_dir, address).start()
    try:
        yield w
    finally:
        w.stop()


async def run_cli_async(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The ``moontide`` command as a user runs it, off the event loop."""
    return await asyncio.to_thread(moontide, *args, timeout=timeout)


async def temporal_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """The ``temporal`` CLI (a plain Temporal client)."""
    return await asyncio.to_thread(subprocess.run, [temporal_binary(), *args], capture_output=True, text=True,
                                   timeout=timeout)


@contextlib.contextmanager
def dev_server_with(*extra: str) -> Any:
    """Like conftest.dev_server (in-memory, free ports), with extra ``temporal server start-dev`` flags."""
    import socket

    port = free_port()
    cmd = [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
           "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error", *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"temporal dev server exited ({proc.returncode}): {cmd}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("temporal dev server did not start in 60 s")
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def replay_failure(app_dir: Path, rt: AppRuntime, pid: Pid | str) -> BaseException | None:
    """Replay the execution's history with ``temporalio.worker.Replayer``: None if the Lua took the same path."""
    from temporalio.worker import Replayer

    from moontide.runtime import load
    from moontide.workflows import CodeBook, WorkflowSettings, workflow_class

    history = await (await rt.handle(pid)).fetch_history()
    build_id = f"replay-{time.monotonic_ns()}"  # the dynamic class is told the Replayer's task queue
    settings = WorkflowSettings(client_id="app:client", worker_id="app:worker")
    replayer = Replayer(workflows=[workflow_class(f"replay-{build_id}", CodeBook(load(app_dir)), settings)],
                        build_id=build_id)
    return (await replayer.replay_workflow(history, raise_on_replay_failure=False)).replay_failure
