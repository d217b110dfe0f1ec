"""Boots an app: entries -> Temporal clients (embedded dev server by default) -> workers.

Who calls it: the CLI (``moontide run/spawn/result``) and the public Python
API (``moontide.App``). Also where a pid is made and read back: a workflow's pid
is ``{client@worker|workflow_id}``, naming the ``temporal.client`` and
``temporal.worker`` entries and the Temporal workflow ID.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from . import entries, errors
from .lua import check_syntax
from .workflows import MEMO_CODE, STATUS_QUERY, CodeBook, build_worker, message_payload, spawn_options

__all__ = ["AppRuntime", "Pid", "STATE_DIR", "WorkflowFailed"]

log = logging.getLogger("moontide")

#: Per-app state (embedded server database, pinned code) lives in APP_DIR/.moontide.
STATE_DIR = ".moontide"

_PID = re.compile(r"^\{(?P<client>[^@|{}]+)@(?P<host>[^|{}]+)\|(?P<id>[^{}]+)\}$")


@dataclass(frozen=True)
class Pid:
    """A workflow process: ``{client@worker|workflow_id}``."""

    client: str
    host: str
    workflow_id: str

    def __str__(self) -> str:
        return f"{{{self.client}@{self.host}|{self.workflow_id}}}"

    @classmethod
    def parse(cls, text: str) -> Pid:
        m = _PID.match(text.strip())
        if not m:
            raise errors.Invalid(f"invalid pid {text!r}: expected '{{client@worker|workflow_id}}'")
        return cls(m["client"], m["host"], m["id"])


def _env_value(value: Any) -> Any:
    """Expand ``${env:NAME}`` in entry values (secrets come by reference)."""
    if isinstance(value, str):
        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in os.environ:
                raise errors.Invalid(f"environment variable {name} is not set")
            return os.environ[name]
        return re.sub(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}", sub, value)
    return value


class AppRuntime:
    """An app's clients and workers. ``async with AppRuntime(dir, serve=True)`` runs it."""

    def __init__(self, app_dir: str | os.PathLike[str], *, temporal: str | None = None, serve: bool = False,
                 ui: bool = True) -> None:
        self.root = Path(app_dir).resolve()
        self.state = self.root / STATE_DIR
        self.temporal = temporal
        self.serve = serve
        self.ui = ui
        self.app = load(self.root)
        self.clients: dict[str, Client] = {}
        self.workers: dict[str, Worker] = {}
        self.server: Any = None
        self._code_book: CodeBook | None = None
        self._tasks: list[asyncio.Task[None]] = []

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self.serve:
            for w in self.app.of_kind("temporal.worker"):
                client = await self.client(self.app.resolve(w.data["client"], w.namespace))
                worker = build_worker(client, self.app, w, code_store=self.state / "code", processes=self)
                self.workers[w.id] = worker
                self._tasks.append(asyncio.create_task(worker.run(), name=f"worker {w.id}"))
                book_size = len(self.app.of_kind("workflow.lua")), len(self.app.of_kind("function.lua"))
                log.info("worker %s serving %d workflows, %d functions on task queue %r",
                         w.id, *book_size, w.data.get("task_queue") or w.id)

    async def stop(self) -> None:
        await asyncio.gather(*(w.shutdown() for w in self.workers.values()), return_exceptions=True)
        for t in self._tasks:
            if not t.done():
                t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.workers.clear()
        self._tasks.clear()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None

    async def __aenter__(self) -> AppRuntime:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()

    async def wait(self) -> None:
        """Serve until a worker stops (or the task is canceled)."""
        if self._tasks:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        else:
            await asyncio.Event().wait()

    # -- clients -------------------------------------------------------------------
    async def client(self, client_id: str) -> Client:
        if client_id in self.clients:
            return self.clients[client_id]
        entry = self.app.get(client_id)
        if entry.kind != "temporal.client":
            raise errors.Invalid(f"{client_id} is a {entry.kind}, not a temporal.client")
        data = entry.data
        address = self.temporal or _env_value(data.get("address"))
        if not address:
            address = await self._embedded_address()
        kw: dict[str, Any] = {"namespace": data.get("namespace", "default")}
        auth = data.get("auth") or {}
        if auth.get("type") == "api_key":
            kw["api_key"] = _env_value(auth.get("api_key"))
        tls = data.get("tls") or {}
        if tls.get("enabled") or auth.get("type") == "mtls":
            from temporalio.service import TLSConfig

            def read(name: str) -> bytes | None:
                path = _env_value(tls.get(name))
                return (self.root / path).read_bytes() if path else None
            kw["tls"] = TLSConfig(server_root_ca_cert=read("ca_file"), client_cert=read("cert_file"),
                                  client_private_key=read("key_file"), domain=tls.get("server_name"))
        try:
            client = await Client.connect(address, **kw)
        except Exception as e:
            raise errors.MoontideError(f"{client_id}: cannot reach Temporal at {address}: {e}",
                                       kind="Unavailable") from None
        self.clients[client_id] = client
        return client

    async def _embedded_address(self) -> str:
        from .devserver import DevServer, running_address

        if not self.serve:
            # spawn/result against a running `moontide run`: use its server
            address = running_address(self.state)
            if address is None:
                raise errors.MoontideError(
                    f"no Moontide app is running for {self.root} (start it with `moontide run {self.root}`, "
                    "or pass --temporal HOST:PORT)", kind="Unavailable")
            return address
        if self.server is None:
            self.server = DevServer(state_dir=self.state, ui=self.ui)
            await asyncio.to_thread(self.server.start)
            log.info("Temporal dev server at %s%s (database %s)", self.server.address,
                     f", Web UI {self.server.ui_url}" if self.server.ui_url else "", self.state / "temporal.db")
        return str(self.server.address)

    # -- spawn / result -----------------------------------------------------------
    def _worker_entry(self, host: str | None) -> entries.Entry:
        workers = self.app.of_kind("temporal.worker")
        if host is None:
            if len(workers) != 1:
                raise errors.Invalid("name the temporal.worker host to spawn on: "
                                     + (", ".join(w.id for w in workers) or "the app has none"))
            return workers[0]
        entry = self.app.get(host)
        if entry.kind != "temporal.worker":
            raise errors.Invalid(f"{host} is a {entry.kind}, not a temporal.worker")
        return entry

    async def spawn(self, entry_id: str, host: str | None = None, *args: Any, workflow_id: str | None = None,
                    options: dict[str, Any] | None = None) -> Pid:
        """Start workflow ``entry_id`` on worker ``host``; the execution is pinned to today's code.

        ``options``: workflow_id, id_reuse_policy, id_conflict_policy (``use_existing``
        makes a spawn with an explicit ID idempotent), execution_timeout, run_timeout,
        task_timeout, retry_policy, memo.
        """
        worker = self._worker_entry(host)
        code = self._book().workflow(entry_id)
        client_id = self.app.resolve(worker.data["client"], worker.namespace)
        client = await self.client(client_id)
        explicit, kw = spawn_options(dict(options or {}), child=False)
        wid = workflow_id or explicit or f"{entry_id.partition(':')[2]}-{uuid.uuid4().hex[:12]}"
        kw["memo"] = {**kw.get("memo", {}), MEMO_CODE: code.digest}
        try:
            await client.start_workflow(entry_id, args=list(args), id=wid,
                                        task_queue=worker.data.get("task_queue") or worker.id, **kw)
        except WorkflowAlreadyStartedError:
            raise errors.MoontideError(f"workflow {wid} is already running (use id_conflict_policy "
                                       "'use_existing' to attach to it)", kind="AlreadyExists",
                                       retryable=False) from None
        return Pid(client_id, worker.id, wid)

    def _book(self) -> CodeBook:
        if self._code_book is None:
            self._code_book = CodeBook(self.app, store_dir=self.state / "code")
        return self._code_book

    async def send(self, pid: Pid | str, topic: str, payload: Any = None, *, sender: str | None = None) -> None:
        """Deliver a message: a Temporal signal named ``topic`` with one JSON payload."""
        handle = await self.handle(pid)
        try:
            await handle.signal(topic, message_payload(json.dumps(payload), sender))
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def cancel(self, pid: Pid | str, reason: str | None = None) -> None:
        """Ask the execution to cancel: Lua sees a pid.cancel event and Canceled errors."""
        try:
            await (await self.handle(pid)).cancel(reason=reason or "")
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def terminate(self, pid: Pid | str, reason: str | None = None) -> None:
        """End the execution at once; no Lua runs."""
        try:
            await (await self.handle(pid)).terminate(reason=reason)
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def status(self, pid: Pid | str) -> dict[str, Any]:
        """Where the execution is: Temporal's status, the Lua entry, its blocking point, pending activities."""
        handle = await self.handle(pid)
        try:
            desc = await handle.describe()
        except RPCError as e:
            raise _rpc_error(pid, e) from None
        out: dict[str, Any] = {
            "pid": str(pid), "status": desc.status.name if desc.status else "UNKNOWN",
            "workflow_type": desc.workflow_type, "run_id": desc.run_id,
            "start_time": desc.start_time.isoformat() if desc.start_time else None,
            "close_time": desc.close_time.isoformat() if desc.close_time else None,
            "history_length": desc.history_length,
            "pending_activities": [
                {"activity": p.activity_type.name, "attempt": p.attempt, "state": _enum_name(p.state),
                 "last_failure": p.last_failure.message if p.HasField("last_failure") else None}
                for p in desc.raw_description.pending_activities],
        }
        if desc.status and desc.status.name == "RUNNING":
            try:
                # bounded: with no worker polling, a query waits for one (~30 s)
                out["lua"] = await handle.query(STATUS_QUERY, rpc_timeout=timedelta(seconds=5))
            except Exception as e:  # a worker may be down: the server's view still helps
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                if isinstance(e, RPCError) and e.status in (RPCStatusCode.DEADLINE_EXCEEDED,
                                                            RPCStatusCode.CANCELLED):
                    reason = "no worker answered within 5s; is a worker serving its task queue?"
                out["lua"] = {"unavailable": reason}
        return out

    async def handle(self, pid: Pid | str) -> WorkflowHandle[Any, Any]:
        p = Pid.parse(pid) if isinstance(pid, str) else pid
        return (await self.client(p.client)).get_workflow_handle(p.workflow_id)

    async def result(self, pid: Pid | str) -> Any:
        """Wait for the execution; its result, or WorkflowFailed with the failure.

        Other errors say the wait itself failed: Invalid (malformed pid),
        NotFound (no such execution), Unavailable (Temporal unreachable).
        """
        handle = await self.handle(pid)
        try:
            return await handle.result()
        except WorkflowFailureError as e:
            cause = e.cause
            if isinstance(cause, ApplicationError):
                details = cause.details[0] if cause.details else None
                raise WorkflowFailed(cause.message, kind=cause.type or "Internal", retryable=False,
                                     details=details) from None
            kind = {"CancelledError": "Canceled", "TerminatedError": "Terminated",
                    "TimeoutError": "Timeout"}.get(type(cause).__name__, "Internal")
            raise WorkflowFailed(str(cause) or kind.lower(), kind=kind, retryable=False) from None
        except RPCError as e:  # e.g. no execution with that ID: an answer, not a traceback
            raise _rpc_error(pid, e) from None


class WorkflowFailed(errors.MoontideError):
    """The execution ended in failure; ``kind``, ``message`` and ``details`` are the workflow's."""


def _enum_name(value: int) -> str:
    from temporalio.api.enums.v1 import PendingActivityState

    return PendingActivityState.Name(value).removeprefix("PENDING_ACTIVITY_STATE_")


def _rpc_error(pid: Pid | str, e: RPCError) -> errors.MoontideError:
    if e.status == RPCStatusCode.NOT_FOUND:
        return errors.NotFound(f"no running execution {pid}: {e.message}")
    return errors.MoontideError(f"{pid}: {e.message}", kind="Unavailable")


def load(root: Path) -> entries.App:
    """Load and validate an app, compiling every Lua source (all problems at once)."""
    return entries.load_app(root, check_lua=check_syntax)
