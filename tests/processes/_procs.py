"""Helpers for the process tests: apps of process.lua entries on one process.host, and a running system.

An app here has namespace ``app``, a ``process.host`` named ``host`` and one
``process.lua`` entry per ``<name>.lua`` file (``app:<name>``), each returning
one function. Everything is real: lupa, the scheduler, and (where a test needs
workflows) the session's Temporal dev server.
"""

from __future__ import annotations

import contextlib
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from moontide.processes import ProcessSystem
from moontide.runtime import load
from moontide_testing import eventually

PROCESS_MODULES = "[process, channel, time, errors, json, logger, funcs, uuid]"
FUNCTION_MODULES = "[time, errors, json, logger, process]"
WORKFLOW_MODULES = "[funcs, time, process, channel, workflow, errors, json, logger]"


def process_app(make_app: Callable[..., Path], processes: dict[str, str], *, functions: dict[str, str] | None = None,
                workflows: dict[str, str] | None = None, entries: str = "", host: str = "",
                name: str = "app") -> Path:
    """Write the app; ``entries`` is more YAML list items (services, workers), ``host`` more host fields.

    With ``workflows``, the app also has ``app:client`` and ``app:worker`` (this test's task queue).
    """
    files: dict[str, str] = {}
    lines = ['version: "1.0"', "namespace: app", "entries:", "  - name: host", "    kind: process.host"]
    lines += ["    " + ln for ln in textwrap.dedent(host).strip("\n").splitlines() if ln.strip()]
    for proc, src in processes.items():
        files[f"{proc}.lua"] = textwrap.dedent(src)
        lines.append(f"  - name: {proc}\n    kind: process.lua\n    source: file://{proc}.lua\n"
                     f"    modules: {PROCESS_MODULES}")
    for fn, src in (functions or {}).items():
        files[f"{fn}.lua"] = textwrap.dedent(src)
        lines.append(f"  - name: {fn}\n    kind: function.lua\n    source: file://{fn}.lua\n"
                     f"    modules: {FUNCTION_MODULES}")
    for wf, src in (workflows or {}).items():
        files[f"{wf}.lua"] = textwrap.dedent(src)
        lines.append(f"  - name: {wf}\n    kind: workflow.lua\n    source: file://{wf}.lua\n"
                     f"    modules: {WORKFLOW_MODULES}")
    if workflows:
        lines.append("  - name: client\n    kind: temporal.client\n    address: 127.0.0.1:1\n"
                     "  - name: worker\n    kind: temporal.worker\n    client: client\n    task_queue: TASK_QUEUE")
    if entries:
        lines.append(textwrap.indent(textwrap.dedent(entries).strip("\n"), "  "))
    files["app.yaml"] = "\n".join(lines) + "\n"
    return make_app(files, name=name)


@contextlib.asynccontextmanager
async def running(app_dir: Path, *, auto_start: bool = True, **kw: Any) -> AsyncIterator[ProcessSystem]:
    """The app's ProcessSystem, started (auto_start services up unless told not to) and stopped at the end."""
    system = ProcessSystem(load(app_dir), **kw)
    try:
        await system.start(auto_start=auto_start)
        yield system
    finally:
        await system.stop()


async def settle(system: ProcessSystem, pid: str, state_prefix: str = "waiting", timeout: float = 10) -> None:
    """Until process ``pid`` waits for something (its state starts with ``state_prefix``)."""
    def state() -> str:
        actor = system.actor(pid)
        return "gone" if actor is None else actor.info()["state"]
    await eventually(state, lambda s: s.startswith(state_prefix), timeout=timeout, what=f"{pid} {state_prefix}")
