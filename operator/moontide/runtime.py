"""Serves an app: entries -> Temporal connections (embedded dev server by default) -> workers -> process hosts.

``Runtime(app_dir, serve=True)`` runs an app: its ``temporal.worker`` entries,
its process hosts and ``auto_start`` services, and, when no ``temporal.client``
names a server, the embedded dev server. It holds a ``moontide.Client`` per
``temporal.client`` entry and reaches executions through them; a process of
its own hosts is answered here, without Temporal. ``Runtime(app_dir)`` (not
serving) only starts workflows of the app (``spawn``), which needs the app's
code: to reach a running execution by pid, ``moontide.Client`` needs no app.

Pids and reserved names: ``moontide.protocol``. Who calls it: ``moontide run``
and ``moontide spawn``, ``moontide.testing`` and programs embedding an app.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

from . import durations, entries, errors, running, values
from .app import load
from .client import Client, connect_options, connect_temporal, encode_args, encode_messages
from .errors import ProcessFailed, WorkflowFailed
from .lifecycle import Startable, stop_workers
from .protocol import MEMO_CODE, MEMO_CONTEXT, STATE_DIR, ProcessPid, is_process_pid, is_workflow_pid
from .protocol import WorkflowPid as Pid
from .workflows import CodeBook, UpgradeReport, build_worker, spawn_options, versioning_behavior
from .workflows import upgrade as upgrade_runs

__all__ = ["AppRuntime", "Pid", "ProcessFailed", "Runtime", "STATE_DIR", "WorkflowFailed", "connect_options", "load",
           "process_client_id"]

log = logging.getLogger("moontide")

#: How many started runs ``AppRuntime.result`` remembers (a run ID each: ~200 bytes).
_STARTED_RUNS_KEPT = 10_000

def process_client_id(app: entries.App) -> str | None:
    """The ``temporal.client`` process hosts serve requests on (and are reached through): the app's first."""
    clients = app.of_kind("temporal.client")
    return clients[0].id if clients else None


class Runtime(Startable):
    """An app's connections, workers and process hosts. ``async with Runtime(dir, serve=True)`` runs it."""

    def __init__(self, app_dir: str | os.PathLike[str], *, temporal: str | None = None, serve: bool = False,
                 ui: bool = True) -> None:
        self.root = Path(app_dir).resolve()
        self.state = self.root / STATE_DIR
        self.temporal = temporal
        self.serve = serve
        self.ui = ui
        self.app = load(self.root)
        #: temporal.client entry ID -> its connection (``moontide.Client``)
        self.connections: dict[str, Client] = {}
        self.workers: dict[str, Worker] = {}
        self.server: Any = None
        self._code_book: CodeBook | None = None
        self._tasks: list[asyncio.Task[None]] = []
        #: temporal.client health_check loops, while serving
        self._health: list[asyncio.Task[None]] = []
        #: the app's process hosts and services, while serving (``moontide.processes.ProcessSystem``)
        self.processes: Any = None
        #: this serving runtime's record in ``moontide.running`` (``moontide ps``)
        self._record: Path | None = None
        #: the Temporal server of its first connection, for that record
        self._address: str | None = None

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
            self._record = running.register({
                "app": str(self.root), "address": self._address,
                "workers": {w.id: self.app.task_queue(w) for w in self.app.of_kind("temporal.worker")},
                "hosts": sorted(self.processes.hosts) if self.processes is not None else []})
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
        running.unregister(self._record)
        self._record = None
        if self.processes is not None:
            # services (reverse order) and processes first: they may still talk to workflows
            await self.processes.stop()
            self.processes = None
        for t in self._health:
            t.cancel()
        await asyncio.gather(*self._health, return_exceptions=True)
        self._health.clear()
        await stop_workers(self.workers.values(), self._tasks)
        self.workers.clear()
        if self.server is not None:
            await asyncio.to_thread(self.server.stop)
            self.server = None

    async def wait(self) -> None:
        """Serve until a worker stops (or the task is canceled)."""
        if self._tasks:
            done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                t.result()
        else:
            await asyncio.Event().wait()

    # -- connections -------------------------------------------------------------------
    @property
    def clients(self) -> dict[str, TemporalClient]:
        """temporal.client entry ID -> its Temporal connection, for those made so far."""
        return {cid: c.temporal for cid, c in self.connections.items()}

    @property
    def _started_runs(self) -> Mapping[tuple[str, str], str]:
        return {(cid, wid): run for cid, c in self.connections.items() for wid, run in c._started_runs.items()}

    async def connection(self, client_id: str) -> Client:
        """The ``moontide.Client`` of ``temporal.client`` entry ``client_id`` (connected on first use)."""
        if client_id in self.connections:
            return self.connections[client_id]
        entry = self.app.get(client_id)
        if entry.kind != "temporal.client":
            raise errors.Invalid(f"{client_id} is a {entry.kind}, not a temporal.client")
        address = self.temporal or entries.expand_env(entry.data.get("address"), f"{client_id}: address")
        if not address:
            address = await self._embedded_address()
        kw = connect_options(entry, self.root)
        self._address = self._address or str(address)
        client = Client(await connect_temporal(str(address), what=client_id, **kw), client_id=client_id)
        self.connections[client_id] = client
        return client

    async def client(self, client_id: str) -> TemporalClient:
        """The Temporal connection of ``temporal.client`` entry ``client_id``."""
        return (await self.connection(client_id)).temporal

    async def _embedded_address(self) -> str:
        from .devserver import DevServer, running_address

        if not self.serve:
            # spawn/result against a running `moontide run`: use its server
            address = running_address(self.state)
            if address is None:
                raise errors.Unavailable(
                    f"no Moontide app is running for {self.root} (start it with `moontide run {self.root}`, "
                    "or pass --temporal HOST:PORT)")
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
        payloads = encode_args(args, entry_id)
        signals = encode_messages(messages or (), sender, entry_id)
        code = self._book().workflow(entry_id)
        worker = self._worker_entry(entry, host)
        client_id = self.app.resolve(worker.data["client"], worker.namespace)
        client = await self.connection(client_id)
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
        kw = spec.kw
        kw["memo"] = {**kw.get("memo", {}), MEMO_CODE: code.digest}
        if context:
            kw["memo"][MEMO_CONTEXT] = dict(context)
        # eager: when this runtime serves the worker, the first workflow task comes
        # back in the start's reply (if the server allows it and a slot is free)
        return await client.start(wf_type, payloads, workflow_id=spec.workflow_id or f"{entry_id.partition(':')[2]}-"
                                                                                 f"{uuid.uuid4().hex[:12]}",
                                  task_queue=spec.task_queue or self.app.task_queue(worker), worker=worker.id,
                                  conflict=spec.conflict, eager=self.serve if spec.eager is None else spec.eager,
                                  messages=signals, sender=sender, start_kw=kw)

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

    # -- by pid: a process of this runtime's hosts here, anything else through Temporal -------
    async def send(self, pid: Pid | str, topic: str, payload: Any = None, *, sender: str | None = None) -> None:
        """Deliver a message: a Temporal signal named ``topic`` with one JSON payload (to a process: its inbox)."""
        system = self._local_system(pid)
        if system is not None:
            await system.request("send", str(pid), [topic, values.encode(payload, "payload", f"send to {pid}"),
                                                     sender])
            return
        await (await self._reach(pid)).send(pid, topic, payload, sender=sender)

    async def cancel(self, pid: Pid | str, reason: str | None = None, *, sender: str | None = None) -> None:
        """Ask the execution to cancel: Lua sees a pid.cancel event (with ``reason`` and
        ``from`` = ``sender``) and Canceled errors."""
        system = self._local_system(pid)
        if system is not None:
            await system.request("cancel", str(pid), [reason, sender])
            return
        await (await self._reach(pid)).cancel(pid, reason, sender=sender)

    async def terminate(self, pid: Pid | str, reason: str | None = None) -> None:
        """End the execution at once; no Lua runs."""
        system = self._local_system(pid)
        if system is not None:
            await system.request("terminate", str(pid), [reason])
            return
        await (await self._reach(pid)).terminate(pid, reason)

    async def status(self, pid: Pid | str) -> dict[str, Any]:
        """Where the execution is (``moontide.Client.status``), and which of this app's code it runs."""
        system = self._local_system(pid)
        if system is not None:
            return dict(await system.request("status", str(pid), []))
        out = await (await self._reach(pid)).status(pid)
        if "workflow_type" in out:
            out["code"] = self._code_status(out["workflow_type"], (out.get("code") or {}).get("started_with"),
                                            (out.get("lua") or {}).get("code"), out.get("run_id"))
        return out

    def _code_status(self, workflow_type: str, started: str | None, running: str | None,
                     run_id: str | None = None) -> dict[str, Any]:
        """The Lua an execution started with (its pin), the code ``moontide upgrade`` moved it to (if it did),
        this app's newest for its type, and which it runs (``running``: what its worker said, else what its
        versioning behavior and upgrade imply)."""
        book = self._book()
        entry_id = book.types.get(workflow_type, workflow_type)
        newest = book.workflows[entry_id].digest if entry_id in book.workflows else None
        behavior = versioning_behavior(self.app, entry_id)
        upgraded = book.upgraded(run_id) if run_id else None
        runs = running or (newest if behavior == "auto_upgrade" or not started else upgraded or started)
        return {"started_with": started, "upgraded_to": upgraded, "newest": newest, "versioning_behavior": behavior,
                "runs": runs, "newer_code": bool(newest and runs and newest != runs)}

    async def upgrade(self, pids: Iterable[Pid | str] = (), *, query: str | None = None, limit: int | None = None,
                      client_id: str | None = None) -> AsyncIterator[UpgradeReport]:
        """Move pinned executions to this app's newest code, each only if its history replays on it
        (``moontide upgrade``; ``moontide.workflows._upgrade`` says how): a report per execution.

        ``pids``: workflow pids, or workflow IDs of ``client_id``'s server; ``query``: the running executions
        of a visibility query (at most ``limit``), through ``client_id`` (default: the app's only client).
        The upgrade is recorded in this app's code store (``.moontide/code``), which its workers read:
        executions that a Kubernetes worker runs cannot be upgraded from here.
        """
        by_client: dict[str, list[tuple[str, str | None]]] = {}
        for pid in pids:
            text = str(pid).strip()
            if is_workflow_pid(text):
                p = Pid.parse(text)
                by_client.setdefault(p.client, []).append((p.workflow_id, None))
            else:
                by_client.setdefault(self.client_id(client_id), []).append((text, None))
        if query is not None:
            cid = self.client_id(client_id)
            found = await (await self.connection(cid)).list(f"({query}) AND ExecutionStatus = 'Running'",
                                                             limit=limit)
            by_client.setdefault(cid, []).extend((r["workflow_id"], r["run_id"]) for r in found)
        for cid, targets in by_client.items():
            async for report in upgrade_runs(self.app, self._book(), await self.client(cid), targets):
                yield report

    def client_id(self, client_id: str | None) -> str:
        """``client_id``, or the app's only temporal.client (Invalid when it has several, or none)."""
        if client_id is not None:
            return client_id
        clients = [e.id for e in self.app.of_kind("temporal.client")]
        if len(clients) != 1:
            raise errors.Invalid(f"the app has {len(clients)} temporal.client entries: choose one with --client "
                                 f"({', '.join(clients) or 'none'})")
        return clients[0]

    async def handle(self, pid: Pid | str, *, started_run: bool = False) -> WorkflowHandle[Any, Any]:
        """The workflow ID's handle; ``started_run``: bound to the run this runtime started, if it did."""
        p = Pid.parse(pid) if isinstance(pid, str) else pid
        return (await self.connection(p.client)).handle(p, started_run=started_run)

    async def result(self, pid: Pid | str) -> Any:
        """Wait for the execution; its result, or WorkflowFailed (ProcessFailed) with the failure.

        Other errors say the wait itself failed: Invalid (malformed pid),
        NotFound (no such execution), Unavailable (Temporal unreachable).
        """
        system = self._local_system(pid)
        if system is not None:
            out = (await system.wait(str(pid))).result()
            if "error" in out:
                e = out["error"]
                raise ProcessFailed(e["message"], kind=e["kind"], details=e.get("details"))
            return out["value"]
        return await (await self._reach(pid)).result(pid)

    def _local_system(self, pid: Pid | str) -> Any:
        """This runtime's ProcessSystem when it runs ``pid``'s host run, else None (reach it through Temporal)."""
        if not (isinstance(pid, str) and is_process_pid(pid.strip())):
            return None
        p, system = ProcessPid.parse(pid), self.processes
        if system is not None and p.host in system.hosts and system.hosts[p.host].run_id == p.run:
            return system
        return None

    async def _reach(self, pid: Pid | str) -> Client:
        """The connection that reaches ``pid``: its client's for a workflow, the process hosts' for a process."""
        if isinstance(pid, Pid):
            return await self.connection(pid.client)
        if not is_process_pid(pid.strip()):
            return await self.connection(Pid.parse(pid).client)
        client_id = process_client_id(self.app)
        if client_id is None:
            raise errors.Unavailable(f"{pid}: the app has no temporal.client, so its processes cannot be "
                                     "reached from outside it", retryable=False)
        return await self.connection(client_id)


#: The name this class had before ``moontide.Client`` took over reaching executions.
AppRuntime = Runtime


async def _health_checks(client_id: str, client: TemporalClient, interval: float) -> None:
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
