"""Boots an app: entries -> Temporal clients (embedded dev server by default) -> workers -> process hosts.

Who calls it: the CLI (``moontide run/spawn/send/.../result``) and the public
Python API (``moontide.App``). Also where a pid is made and read back: a
workflow's pid is ``{client@worker|workflow_id}``, naming the ``temporal.client``
and ``temporal.worker`` entries and the Temporal workflow ID; a process's pid is
``{host|run.n}`` (``moontide.processes``). Every method taking a pid takes
either: a process of this runtime's own hosts is answered here, any other is
reached through Temporal (``moontide.processes.control``).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.worker import Worker

from . import durations, entries, errors, values
from .lua import check_syntax
from .workflows import (CANCEL_FROM_SIGNAL, MEMO_CODE, MEMO_CONTEXT, STATUS_QUERY, CodeBook, build_worker,
                        message_payload, spawn_options, temporal_conflict_policy)

__all__ = ["AppRuntime", "Pid", "ProcessFailed", "STATE_DIR", "WorkflowFailed", "process_client_id"]

log = logging.getLogger("moontide")

#: Per-app state (embedded server database, pinned code) lives in APP_DIR/.moontide.
STATE_DIR = ".moontide"
#: How many started runs ``AppRuntime.result`` remembers (a run ID each: ~200 bytes).
_STARTED_RUNS_KEPT = 10_000

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
            raise errors.Invalid(f"invalid pid {text!r}: expected '{{client@worker|workflow_id}}' (a workflow) "
                                 "or '{host|run.n}' (a process)")
        return cls(m["client"], m["host"], m["id"])


def connect_options(entry: entries.Entry, root: Path) -> dict[str, Any]:
    """``Client.connect`` keyword arguments (but the address) from a ``temporal.client`` entry.

    ``${env:NAME}`` in auth and TLS fields is read now; files are relative to ``root`` (the app).
    """
    from temporalio.service import KeepAliveConfig, TLSConfig

    data = entries.apply_defaults(entries.SCHEMAS["temporal.client"], entry.data)
    auth, tls = data["auth"], data["tls"]

    def value(section: str, name: str) -> str | None:
        text = entries.expand_env({"auth": auth, "tls": tls}[section].get(name), f"{entry.id}: {section}.{name}")
        return str(text) if text else None

    def read(section: str, name: str) -> bytes | None:
        path = value(section, name)
        if path is None:
            return None
        try:
            return (root / path).read_bytes()
        except OSError as e:
            raise errors.Invalid(f"{entry.id}: {section}.{name}: cannot read {path}: {e.strerror or e}") from None

    def ms(name: str) -> int:
        return durations.parse(data[name]) // 1_000_000

    kw: dict[str, Any] = {
        "namespace": data["namespace"],
        "connect_timeout": timedelta(milliseconds=ms("connection_timeout")),
        "keep_alive_config": KeepAliveConfig(interval_millis=ms("keep_alive_time"),
                                             timeout_millis=ms("keep_alive_timeout")),
    }
    if auth["type"] == "api_key":
        key_file = read("auth", "api_key_file")
        kw["api_key"] = key_file.decode().strip() if key_file is not None else value("auth", "api_key")
    if tls["enabled"] or auth["type"] == "mtls":
        pem = {name: (value("auth", name) or "").encode() or None for name in ("cert_pem", "key_pem")}
        kw["tls"] = TLSConfig(server_root_ca_cert=read("tls", "ca_file"),
                              client_cert=read("auth", "cert_file") or pem["cert_pem"],
                              client_private_key=read("auth", "key_file") or pem["key_pem"],
                              domain=value("tls", "server_name"))
    return kw


def process_client_id(app: entries.App) -> str | None:
    """The ``temporal.client`` process hosts serve requests on (and are reached through): the app's first."""
    clients = app.of_kind("temporal.client")
    return clients[0].id if clients else None


class AppRuntime:
    """An app's clients, workers and process hosts. ``async with AppRuntime(dir, serve=True)`` runs it."""

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
        #: (client, workflow ID) -> run ID of the executions this runtime started, newest last, so
        #: that ``result`` waits on that run without the server looking up the ID's current run
        self._started_runs: collections.OrderedDict[tuple[str, str], str] = collections.OrderedDict()
        self._tasks: list[asyncio.Task[None]] = []
        #: temporal.client health_check loops, while serving
        self._health: list[asyncio.Task[None]] = []
        #: the app's process hosts and services, while serving (``moontide.processes.ProcessSystem``)
        self.processes: Any = None

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        if self.serve:
            for w in self.app.of_kind("temporal.worker"):
                client = await self.client(self.app.resolve(w.data["client"], w.namespace))
                worker = build_worker(client, self.app, w, code_store=self.state / "code", processes=self)
                self.workers[w.id] = worker
                self._tasks.append(asyncio.create_task(worker.run(), name=f"worker {w.id}"))
                served = [sum(self.app.runs_on(e, w.id) for e in self.app.of_kind(kind))
                          for kind in ("workflow.lua", "function.lua")]
                log.info("worker %s serving %d workflows, %d functions on task queue %r",
                         w.id, *served, self.app.task_queue(w))
            if self.app.of_kind("process.host"):
                await self._start_processes()
            for client_id, client in self.clients.items():
                check = self.app.get(client_id).data.get("health_check") or {}
                if check.get("enabled"):
                    self._health.append(asyncio.create_task(
                        _health_checks(client_id, client, durations.parse(check["interval"]) / 1e9),
                        name=f"health check {client_id}"))

    async def _start_processes(self) -> None:
        """Process hosts and the auto_start services (in depends_on order), after the workers they may need."""
        from .processes import ProcessSystem, RuntimeBridge

        client_id = process_client_id(self.app)
        client = await self.client(client_id) if client_id else None
        self.processes = ProcessSystem(self.app, bridge=RuntimeBridge(self), client=client, state_dir=self.state)
        started = await self.processes.start()
        log.info("process hosts %s; services started: %s", ", ".join(self.processes.hosts),
                 ", ".join(sid for sid, ok in started.items() if ok) or "none")

    async def stop(self) -> None:
        if self.processes is not None:
            # services (reverse order) and processes first: they may still talk to workflows
            await self.processes.stop()
            self.processes = None
        for t in self._health:
            t.cancel()
        await asyncio.gather(*self._health, return_exceptions=True)
        self._health.clear()
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
        address = self.temporal or entries.expand_env(entry.data.get("address"), f"{client_id}: address")
        if not address:
            address = await self._embedded_address()
        kw = connect_options(entry, self.root)
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
            self.server = DevServer(state_dir=self.state, ui=self.ui, search_attributes=self._embedded_attributes())
            await asyncio.to_thread(self.server.start)
            log.info("Temporal dev server at %s%s (database %s)", self.server.address,
                     f", Web UI {self.server.ui_url}" if self.server.ui_url else "", self.state / "temporal.db")
        return str(self.server.address)

    def _embedded_attributes(self) -> dict[str, str]:
        """The search attributes the embedded server registers: those of every client without an address."""
        out: dict[str, str] = {}
        for c in self.app.of_kind("temporal.client"):
            if c.data.get("address"):
                continue
            for name, kind in (c.data.get("search_attributes") or {}).items():
                if out.setdefault(name, kind) != kind:
                    raise errors.Invalid(f"{c.id}: search attribute {name!r} is {kind} here but {out[name]} in "
                                         "another temporal.client of the embedded server")
        return out

    # -- spawn / result -----------------------------------------------------------
    def _worker_entry(self, workflow: entries.Entry, host: str | None) -> entries.Entry:
        """The temporal.worker to start ``workflow`` on: ``host`` (an entry ID or a task queue), or its only one."""
        routed = self.app.routed_worker(workflow)
        if host is None:
            workers = [w for w in self.app.of_kind("temporal.worker") if routed in (None, w.id)]
            if len(workers) != 1:
                raise errors.Invalid("name the temporal.worker host to spawn on: "
                                     + (", ".join(w.id for w in workers) or "the app has none"))
            return workers[0]
        worker = self.app.temporal_worker(host, workflow.namespace)
        if routed is not None and routed != worker.id:
            raise errors.Invalid(f"{workflow.id} runs on worker {routed} (its meta.temporal.workflow.worker), "
                                 f"not on {worker.id}")
        return worker

    async def spawn(self, entry_id: str, host: str | None = None, *args: Any, workflow_id: str | None = None,
                    options: dict[str, Any] | None = None, name: str | None = None,
                    messages: list[tuple[str, Any]] | None = None, sender: str | None = None,
                    context: dict[str, Any] | None = None) -> Pid | str:
        """Start workflow ``entry_id`` on worker ``host`` (entry ID or task queue); the execution is
        pinned to today's code.

        ``options``: Wippy's ``workflow.*`` start options (docs/lua-api.md, "Spawn options").
        ``workflow_id`` or ``name`` (Lua's ``:with_name``) is an explicit ID, which
        ``workflow.id`` overrides. A start of a running ID answers its pid when the ID is explicit
        (``use_existing``), unless ``workflow.id_conflict_policy = "fail"`` or
        ``workflow.execution_error_when_already_started = true`` ask for AlreadyExists.
        ``messages``: (topic, payload) signals it gets first, the first with the start itself
        (signal-with-start), also when the spawn answers a running one; ``sender`` is their
        ``msg:from()``.

        A ``process.lua`` entry starts on process host ``host`` of this serving
        runtime instead; its pid is a string.

        ``context``: the values its ctx module answers (a JSON object; a workflow
        keeps them in its memo, ``moontide.ctx``).
        """
        entry = self.app.get(entry_id)
        if context:
            values.encode(context, "context", f"spawn of {entry_id}")
        if entry.kind == "process.lua":
            return self._spawn_process(entry_id, host, args, workflow_id or options, name, messages, sender, context)
        payloads = [RawValue(values.json_payload(values.encode(a, f"argument {i}", f"spawn of {entry_id}")))
                    for i, a in enumerate(args, 1)]
        signals = [(str(t), message_payload(values.encode(p, "payload", f"startup message {t!r} of {entry_id}"),
                                            sender)) for t, p in messages or ()]
        code = self._book().workflow(entry_id)
        worker = self._worker_entry(entry, host)
        client_id = self.app.resolve(worker.data["client"], worker.namespace)
        client = await self.client(client_id)
        spec = spawn_options(dict(options or {}), child=False, app=self.app, client_id=client_id,
                             name=workflow_id or name)
        wf_type = self.app.workflow_type(entry)
        if spec.workflow_type not in (None, wf_type):
            raise errors.Invalid(f"option workflow.name: {entry_id} runs as workflow type {wf_type!r}; starting it "
                                 f"as {spec.workflow_type!r} is not supported")
        namespace = str(self.app.get(client_id).data.get("namespace") or "default")
        if spec.namespace not in (None, namespace):
            raise errors.Invalid(f"option workflow.namespace: {client_id} works in namespace {namespace!r}, "
                                 f"not {spec.namespace!r}")
        wid = spec.workflow_id or f"{entry_id.partition(':')[2]}-{uuid.uuid4().hex[:12]}"
        kw = spec.kw
        kw["memo"] = {**kw.get("memo", {}), MEMO_CODE: code.digest}
        if context:
            kw["memo"][MEMO_CONTEXT] = dict(context)
        # eager: when this runtime serves the worker, the first workflow task comes
        # back in the start's reply (if the server allows it and a slot is free)
        eager = self.serve if spec.eager is None else spec.eager
        if signals and spec.conflict != "fail":  # Temporal's signal-with-start has no "fail"
            (topic, first), signals = signals[0], signals[1:]
            kw.update(start_signal=topic, start_signal_args=[first])
            eager = False
        try:
            handle = await client.start_workflow(wf_type, args=payloads, id=wid,
                                                 task_queue=spec.task_queue or self.app.task_queue(worker),
                                                 id_conflict_policy=temporal_conflict_policy(spec.conflict),
                                                 request_eager_start=eager, **kw)
        except WorkflowAlreadyStartedError:
            raise errors.MoontideError(f"workflow {wid} is already running (its spawn asked for an error then: "
                                       "workflow.id_conflict_policy \"fail\" or "
                                       "workflow.execution_error_when_already_started)", kind="AlreadyExists",
                                       retryable=False) from None
        except RPCError as e:
            raise _rpc_error(Pid(client_id, worker.id, wid), e) from None
        for topic, payload in signals:
            await handle.signal(topic, payload)
        if handle.result_run_id:
            self._started_runs[(client_id, wid)] = handle.result_run_id
            self._started_runs.move_to_end((client_id, wid))
            while len(self._started_runs) > _STARTED_RUNS_KEPT:
                self._started_runs.popitem(last=False)
        return Pid(client_id, worker.id, wid)

    def _spawn_process(self, entry_id: str, host: str | None, args: tuple[Any, ...], extra: Any,
                       name: str | None = None, messages: list[tuple[str, Any]] | None = None,
                       sender: str | None = None, context: dict[str, Any] | None = None) -> str:
        if extra:
            raise errors.Invalid(f"spawn of {entry_id}: a workflow ID and spawn options apply to workflows only")
        if self.processes is None:
            raise errors.Invalid(f"spawn of {entry_id}: a process.lua runs in the app that serves its host: "
                                 f"`moontide run {self.root} --spawn {entry_id}`, or process.spawn from Lua")
        return str(self.processes.spawn(entry_id, host, *args, name=name, messages=messages, sender=sender,
                                        context=context))

    def _book(self) -> CodeBook:
        if self._code_book is None:
            self._code_book = CodeBook(self.app, store_dir=self.state / "code")
        return self._code_book

    async def send(self, pid: Pid | str, topic: str, payload: Any = None, *, sender: str | None = None) -> None:
        """Deliver a message: a Temporal signal named ``topic`` with one JSON payload (to a process: its inbox)."""
        if _is_process(pid):
            await self._process_request("send", str(pid), topic, values.encode(payload, "payload", f"send to {pid}"),
                                        sender)
            return
        message = message_payload(values.encode(payload, "payload", f"send to {pid}"), sender)
        handle = await self.handle(pid)
        try:
            await handle.signal(topic, message)
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def cancel(self, pid: Pid | str, reason: str | None = None, *, sender: str | None = None) -> None:
        """Ask the execution to cancel: Lua sees a pid.cancel event (with ``reason`` and
        ``from`` = ``sender``) and Canceled errors."""
        if _is_process(pid):
            await self._process_request("cancel", str(pid), reason, sender)
            return
        try:
            handle = await self.handle(pid)
            if sender:  # before the request, so the workflow knows it when the request comes
                await handle.signal(CANCEL_FROM_SIGNAL, sender)
            await handle.cancel(reason=reason or "")
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def terminate(self, pid: Pid | str, reason: str | None = None) -> None:
        """End the execution at once; no Lua runs."""
        if _is_process(pid):
            await self._process_request("terminate", str(pid), reason)
            return
        try:
            await (await self.handle(pid)).terminate(reason=reason)
        except RPCError as e:
            raise _rpc_error(pid, e) from None

    async def status(self, pid: Pid | str) -> dict[str, Any]:
        """Where the execution is: Temporal's status, the Lua entry, its blocking point, pending activities.

        For a process: RUNNING with what it waits for and its inbox, or how it ended
        (``ProcessSystem.status``).
        """
        if _is_process(pid):
            return dict(await self._process_request("status", str(pid)))
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
        out["code"] = await self._code_status(desc, (out.get("lua") or {}).get("code"))
        return out

    async def _code_status(self, desc: Any, running: str | None) -> dict[str, Any]:
        """The Lua an execution started with (its pin), this app's newest for its type, and which it runs
        (``running``: what its worker said, else what its versioning behavior implies)."""
        started = await desc.memo_value(MEMO_CODE, None)
        book = self._book()
        entry_id = book.types.get(desc.workflow_type, desc.workflow_type)
        newest = book.workflows[entry_id].digest if entry_id in book.workflows else None
        entry = self.app.entries.get(entry_id)
        workers = [w for w in self.app.of_kind("temporal.worker") if entry is not None and self.app.runs_on(entry, w.id)]
        behavior = self.app.versioning_behavior(entry, workers[0]) if entry is not None and workers else None
        runs = running or (newest if behavior == "auto_upgrade" or not started else started)
        return {"started_with": started, "newest": newest, "versioning_behavior": behavior, "runs": runs,
                "newer_code": bool(newest and runs and newest != runs)}

    async def handle(self, pid: Pid | str, *, started_run: bool = False) -> WorkflowHandle[Any, Any]:
        """The workflow ID's handle; ``started_run``: bound to the run this runtime started, if it did."""
        p = Pid.parse(pid) if isinstance(pid, str) else pid
        run_id = self._started_runs.get((p.client, p.workflow_id)) if started_run else None
        # results come raw and are decoded by moontide.values (an Invalid, not a RecursionError)
        return (await self.client(p.client)).get_workflow_handle(p.workflow_id, run_id=run_id, result_type=RawValue)

    async def result(self, pid: Pid | str) -> Any:
        """Wait for the execution; its result, or WorkflowFailed with the failure.

        Other errors say the wait itself failed: Invalid (malformed pid),
        NotFound (no such execution), Unavailable (Temporal unreachable).
        A process's failure is ProcessFailed.
        """
        if _is_process(pid):
            return await self._process_result(str(pid))
        # a run this runtime started: wait on it (following continue-as-new) rather than the ID's current run
        handle = await self.handle(pid, started_run=True)
        try:
            raw = await handle.result()
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
        if raw is None:
            return None
        return values.from_payload(raw.payload, "result", f"the result of {pid} cannot be decoded")

    # -- process pids ------------------------------------------------------------------
    def _local_system(self, pid: str) -> Any:
        """This runtime's ProcessSystem when it runs ``pid``'s host run, else None (reach it through Temporal)."""
        from .processes import LocalPid

        p, system = LocalPid.parse(pid), self.processes
        if system is not None and p.host in system.hosts and system.hosts[p.host].run_id == p.run:
            return system
        return None

    async def _process_client(self, pid: str) -> Client:
        client_id = process_client_id(self.app)
        if client_id is None:
            raise errors.MoontideError(f"{pid}: the app has no temporal.client, so its processes cannot be "
                                       "reached from outside it", kind="Unavailable", retryable=False)
        return await self.client(client_id)

    async def _process_request(self, op: str, pid: str, *args: Any) -> Any:
        from .processes import control

        system = self._local_system(pid)
        if system is not None:
            return await system.request(op, pid, list(args))
        return await control(await self._process_client(pid), op, pid, *args)

    async def _process_result(self, pid: str) -> Any:
        from .processes import process_result

        system = self._local_system(pid)
        if system is not None:
            out = (await system.wait(pid)).result()
        else:
            out = await process_result(await self._process_client(pid), pid)
        if "error" in out:
            e = out["error"]
            raise ProcessFailed(e["message"], kind=e["kind"], retryable=False, details=e.get("details"))
        return out["value"]


async def _health_checks(client_id: str, client: Client, interval: float) -> None:
    """A temporal.client's health_check: the frontend's gRPC health service every ``interval`` seconds."""
    healthy = True
    while True:
        await asyncio.sleep(interval)
        try:
            ok = await client.service_client.check_health(timeout=timedelta(seconds=min(interval, 10)))
            reason = "" if ok else "the frontend says it is not serving"
        except Exception as e:  # unreachable, timed out: a warning, never the end of the app
            ok, reason = False, str(e).splitlines()[0] if str(e) else type(e).__name__
        if not ok:
            log.warning("%s: Temporal health check failed: %s", client_id, reason)
        elif not healthy:
            log.info("%s: Temporal health check passes again", client_id)
        healthy = ok


class WorkflowFailed(errors.MoontideError):
    """The execution ended in failure; ``kind``, ``message`` and ``details`` are the workflow's."""


class ProcessFailed(errors.MoontideError):
    """The process ended in failure (an error, terminate, cancel); ``kind`` and ``message`` are its error's."""


def _is_process(pid: Pid | str) -> bool:
    from .processes import is_local_pid

    return isinstance(pid, str) and is_local_pid(pid.strip())


def _enum_name(value: int) -> str:
    from temporalio.api.enums.v1 import PendingActivityState

    return PendingActivityState.Name(value).removeprefix("PENDING_ACTIVITY_STATE_")


def _rpc_error(pid: Pid | str, e: RPCError) -> errors.MoontideError:
    if e.status == RPCStatusCode.NOT_FOUND:
        return errors.NotFound(f"no running execution {pid}: {e.message}")
    return errors.MoontideError(f"{pid}: {e.message}", kind="Unavailable")


def load(root: Path, *, literal_ids: bool = False) -> entries.App:
    """Load and validate an app, compiling and loading every Lua source (all problems at once).

    ``literal_ids``: also report entry IDs in the Lua sources that name no entry (``moontide check``).
    """
    from .check import check_code

    return entries.load_app(root, check_lua=check_syntax,
                            check_code=functools.partial(check_code, literal_ids=literal_ids))
