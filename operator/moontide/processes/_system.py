"""An app's processes: its ``process.host`` entries, its ``process.service`` entries, one registry.

``ProcessSystem(app)`` builds a ``ProcessHost`` per ``process.host`` entry and a
``Service`` per ``process.service`` entry; ``start()`` starts the ``auto_start``
services in ``depends_on`` order, ``stop()`` stops them in reverse and then the
hosts. Processes reach workflows through ``bridge`` (``RuntimeBridge(app_runtime)``);
workflows reach processes through ``deliver`` (the ``moontide.deliver``
activity, served when a Temporal ``client`` is given). With ``state_dir``, the
state is written to ``<state_dir>/processes.json`` for ``moontide ps``.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .. import durations, errors, values
from ..entries import App
from ..lifecycle import Startable
from ..lua.code import LuaCode
from ._actor import Actor
from ._exit import Exit, error_dict
from ._bridge import Bridge
from ._deliver import DeliverWorkers
from ._host import ProcessHost
from ..protocol import STATUS_FILE, is_process_pid as is_local_pid, is_workflow_pid
from ._registry import Registry
from ._supervisor import Service, Supervisor

__all__ = ["STATUS_FILE", "ProcessSystem"]

#: Where a running system writes its state, under the app's state directory.


class ProcessSystem(Startable):
    """Process hosts and services of one app, and the way between them and workflows."""

    def __init__(self, app: App, *, bridge: Bridge | None = None, functions: Any = None,
                 client: Any = None, state_dir: str | os.PathLike[str] | None = None,
                 host_options: dict[str, Any] | None = None) -> None:
        self.app = app
        self.codes: dict[str, LuaCode] = {e.id: LuaCode.from_entry(app, e) for e in app.of_kind("process.lua")}
        if functions is None:
            fcodes = {e.id: LuaCode.from_entry(app, e) for e in app.of_kind("function.lua")}
            if fcodes:
                from ..functions import Functions

                functions = Functions(fcodes, app=app)
        self.functions = functions
        self.bridge = bridge
        self.client = client
        self.registry = Registry()
        self.hosts: dict[str, ProcessHost] = {}
        #: seconds each host's processes get to end after the cancel when the app stops
        self.stop_timeouts: dict[str, float] = {}
        for e in app.of_kind("process.host"):
            d = e.data
            opts: dict[str, Any] = {"queue_size": int(d.get("queue_size", 1024)), "workers": int(d.get("workers", 0))}
            if "instruction_budget" in d:
                opts["instruction_budget"] = int(d["instruction_budget"])
            if "memory_limit_mb" in d:
                opts["memory_limit"] = int(d["memory_limit_mb"]) << 20
            opts.update(host_options or {})
            self.hosts[e.id] = ProcessHost(e.id, self, **opts)
            self.stop_timeouts[e.id] = durations.parse((d.get("lifecycle") or {}).get("stop_timeout", "5s")) / 1e9
        self.supervisor = Supervisor(self, on_change=lambda _: self._status_soon())
        for e in app.of_kind("process.service"):
            self.supervisor.add(e)
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._deliver: DeliverWorkers | None = None
        self._status_task: asyncio.Task[None] | None = None
        self._status_dirty = False

    # -- lookups -------------------------------------------------------------------
    def code(self, entry_id: str) -> LuaCode:
        code = self.codes.get(entry_id)
        if code is not None:
            return code
        if entry_id in self.app.entries:
            kind = self.app.entries[entry_id].kind
            raise errors.Invalid(f"{entry_id} is a {kind}; a process.host runs process.lua entries"
                                 + (" (spawn a workflow on a temporal.worker host)" if kind == "workflow.lua" else ""))
        raise errors.NotFound(f"no process.lua entry {entry_id!r} in this app "
                              f"(processes: {', '.join(sorted(self.codes)) or 'none'})")

    def host(self, host_id: str) -> ProcessHost:
        host = self.hosts.get(host_id)
        if host is None:
            raise errors.NotFound(f"no process.host entry {host_id!r} in this app "
                                  f"(hosts: {', '.join(sorted(self.hosts)) or 'none'})")
        return host

    def host_id(self, ref: str, what: str) -> str:
        """The host entry a spawn names: an entry ID (as given), or the task queue a temporal.worker polls."""
        if ref in self.hosts or ref in self.app.entries:
            return ref
        workers = [w.id for w in self.app.of_kind("temporal.worker") if self.app.task_queue(w) == ref]
        if len(workers) == 1:
            return workers[0]
        return ref  # host_kind names what is missing

    def host_kind(self, host_id: str, what: str) -> str:
        """``process.host`` or ``temporal.worker``; NotFound / Invalid naming ``host_id`` otherwise."""
        if host_id in self.hosts:
            return "process.host"
        entry = self.app.entries.get(host_id)
        if entry is None:
            raise errors.NotFound(f"{what}: no host entry {host_id!r} in this app (process hosts: "
                                  f"{', '.join(sorted(self.hosts)) or 'none'}; workers: "
                                  f"{', '.join(e.id for e in self.app.of_kind('temporal.worker')) or 'none'})")
        if entry.kind != "temporal.worker":
            raise errors.Invalid(f"{what}: {host_id} is a {entry.kind}, not a process.host or temporal.worker")
        return "temporal.worker"

    def actor(self, pid: str) -> Actor | None:
        """The live local process ``pid``, or None."""
        for host in self.hosts.values():
            actor = host.actors.get(pid)
            if actor is not None:
                return actor
        return None

    def resolve(self, pid: Any, what: str) -> str:
        """A pid, or the pid a registry name points at."""
        if not isinstance(pid, str) or not pid:
            raise errors.Invalid(f"{what}: expected a pid or a registered name, got {type(pid).__name__}")
        if pid.startswith("{"):
            if not (is_local_pid(pid) or is_workflow_pid(pid)):
                raise errors.Invalid(f"{what}: {pid!r} is not a pid ('{{host|run.n}}' for a process, "
                                     "'{client@worker|workflow_id}' for a workflow)")
            return pid
        try:
            return self.registry.lookup(pid)
        except errors.NotFound:
            raise errors.NotFound(f"{what}: no process is registered as {pid!r}") from None

    def require_bridge(self, what: str) -> Bridge:
        if self.bridge is None:
            raise errors.Unavailable(
                f"{what}: this process host has no way to Temporal (run the app with `moontide run`, "
                "or give ProcessSystem a bridge)", retryable=False)
        return self.bridge

    def _host_of(self, pid: str, what: str) -> ProcessHost:
        for host in self.hosts.values():
            if pid in host.actors or pid in host.exits:
                return host
        raise errors.NotFound(f"{what}: no process {pid} (it has exited or never existed)")

    # -- Python API ---------------------------------------------------------------------
    def spawn(self, entry_id: str, host_id: str | None = None, *args: Any, name: str | None = None,
              messages: list[tuple[str, Any]] | None = None, sender: str | None = None,
              context: dict[str, Any] | None = None) -> str:
        """Start a process; its pid. ``host_id`` may be left out when the app has one process.host.

        ``name``: registered under it (AlreadyExists if taken); ``messages``: (topic, payload)
        in its inbox before anything else, from ``sender``; ``context``: its ctx values.
        """
        if host_id is None:
            if len(self.hosts) != 1:
                raise errors.Invalid("name the process.host to spawn on: " + (", ".join(self.hosts) or "the app has none"))
            host_id = next(iter(self.hosts))
        for i, arg in enumerate(args, 1):  # made in Python: what Lua could not take fails here, naming it
            values.encode(arg, f"argument {i}", f"process.spawn of {entry_id}")
        encoded = [(t, values.encode(p, "payload", f"startup message {t!r} of {entry_id}")) for t, p in messages or ()]
        return self.host(host_id).spawn(entry_id, list(args), name=name, messages=encoded, sender=sender,
                                        context=context).pid

    async def send(self, pid: str, topic: str, payload: Any = None, *, sender: str | None = None) -> None:
        """Send a message to a process (or registered name, or workflow through the bridge)."""
        target = self.resolve(pid, "send")
        if is_workflow_pid(target):
            await self.require_bridge(f"send to {target}").send(target, topic, payload, sender)
            return
        await self.deliver(target, topic, values.encode(payload, "payload", f"send to {target}"), sender)

    async def deliver(self, pid: str, topic: str, payload_json: str | None, sender: str | None = None) -> None:
        """A message whose payload is already JSON text (from a workflow, through ``moontide.deliver``)."""
        if not isinstance(topic, str) or not topic:
            raise errors.Invalid(f"deliver to {pid}: the topic must be a non-empty string")
        target = self.resolve(pid, "deliver")
        if payload_json is not None:
            # refused here, where the sender hears of it: an inbox only holds what its Lua can take
            values.decode(payload_json, "payload", f"deliver to {target}")
        host = self._host_of(target, f"deliver to {target}")
        await host.deliver(target, topic, payload_json, sender)

    async def cancel(self, pid: str, reason: str | None = None, *, sender: str | None = None) -> None:
        target = self.resolve(pid, "cancel")
        if is_workflow_pid(target):
            await self.require_bridge(f"cancel {target}").cancel(target, reason, sender)
            return
        self._host_of(target, "cancel").cancel(target, reason, by=sender)

    async def terminate(self, pid: str, reason: str | None = None) -> None:
        target = self.resolve(pid, "terminate")
        if is_workflow_pid(target):
            await self.require_bridge(f"terminate {target}").terminate(target, reason)
            return
        self._host_of(target, "terminate").terminate(target, reason)

    async def wait(self, pid: str) -> Exit:
        """How the process ended (waits while it runs)."""
        target = self.resolve(pid, "wait")
        return await self._host_of(target, "wait").wait(target)

    async def result(self, pid: str) -> Any:
        """The process's result, or its error raised."""
        target = self.resolve(pid, "result")
        if is_workflow_pid(target):
            return await self.require_bridge(f"result of {target}").result(target)
        ex = await self.wait(target)
        if ex.error is not None:
            raise ex.error
        return ex.value

    async def request(self, op: str, pid: str, args: list[Any]) -> Any:
        """One request from outside the app (``moontide.control``): send, cancel, terminate, status, wait."""
        if op == "send":
            topic, payload_json, sender = args
            await self.deliver(pid, topic, payload_json, sender)
            return True
        if op == "cancel":  # [reason] or [reason, sender]
            await self.cancel(pid, args[0] if args else None, sender=args[1] if len(args) > 1 else None)
            return True
        if op == "terminate":
            await self.terminate(pid, *args)
            return True
        if op == "status":
            return self.status(pid)
        if op == "wait":
            return await self.poll_exit(pid, float(args[0]))
        raise errors.Invalid(f"moontide.control: unknown request {op!r} (send, cancel, terminate, status, wait)")

    def status(self, pid: str) -> dict[str, Any]:
        """Where process ``pid`` is (``moontide status``): RUNNING with what it waits for, or how it ended."""
        target = self.resolve(pid, "status")
        host = self._host_of(target, "status")
        actor = host.actors.get(target)
        if actor is not None:
            info = actor.info()
            return {"pid": target, "status": "RUNNING", "entry": info["entry"], "host": host.id,
                    "state": info["state"], "inbox": info["inbox"], "received": info["received"],
                    "parent": info["parent"], "links": info["links"], "monitored_by": info["monitored_by"],
                    "start_time": _iso(info["started"])}
        entry, ex = host.exits[target]
        out: dict[str, Any] = {"pid": target, "status": _END_STATUS.get(ex.error.kind, "FAILED") if ex.error else
                               "COMPLETED", "entry": entry, "host": host.id, "close_time": _iso(ex.at)}
        if ex.error is not None:
            out["error"] = error_dict(ex.error)
        return out

    async def poll_exit(self, pid: str, seconds: float) -> dict[str, Any]:
        """``{"done": False}`` if ``pid`` still runs after ``seconds``; else ``{"done": True}`` and its result."""
        target = self.resolve(pid, "result")
        try:
            ex = await asyncio.wait_for(self.wait(target), timeout=max(0.0, seconds))
        except asyncio.TimeoutError:
            return {"done": False}
        return {"done": True, **ex.result()}

    def service(self, service_id: str) -> Service:
        svc = self.supervisor.services.get(service_id)
        if svc is None:
            raise errors.NotFound(f"no process.service {service_id!r} "
                                  f"(services: {', '.join(self.supervisor.services) or 'none'})")
        return svc

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self, *, auto_start: bool = True) -> dict[str, bool]:
        """Serve ``moontide.deliver`` (with a client), start the auto_start services in order."""
        if self.functions is not None and getattr(self.functions, "processes", False) is None:
            # function.lua code called from processes reaches processes and workflows too
            self.functions.processes = FunctionsProcesses(self)
            self.functions.loop = asyncio.get_running_loop()
        if self.client is not None and self.hosts and self._deliver is None:
            self._deliver = DeliverWorkers(self, self.client)
            await self._deliver.start()
        if self.state_dir is not None and self._status_task is None:
            self._status_task = asyncio.create_task(self._status_loop(), name="moontide processes status")
        started = await self.supervisor.start() if auto_start else {}
        self._status_soon()
        return started

    async def stop(self) -> None:
        """Stop services (reverse order), then every process (each host's stop_timeout), then the deliver workers."""
        await self.supervisor.stop()
        await asyncio.gather(*(h.stop(self.stop_timeouts[h.id]) for h in self.hosts.values()))
        if self._deliver is not None:
            await self._deliver.stop()
            self._deliver = None
        if self._status_task is not None:
            self._status_task.cancel()
            await asyncio.gather(self._status_task, return_exceptions=True)
            self._status_task = None
            self.write_status(running=False)

    # -- state for ps -------------------------------------------------------------------
    def snapshot(self, limit: int = 1000) -> dict[str, Any]:
        return {
            "pid": os.getpid(), "updated": time.time(), "app": str(self.app.root),
            "services": self.supervisor.info(),
            "hosts": [h.snapshot(limit) for h in self.hosts.values()],
            "registry": dict(sorted(self.registry.names.items())),
        }

    def write_status(self, *, running: bool = True) -> None:
        """Write ``processes.json`` now (from the loop's thread)."""
        if self.state_dir is not None:
            _write(self.state_dir / STATUS_FILE, self._status_text(running))

    def _status_text(self, running: bool) -> str:
        data = self.snapshot()
        data["running"] = running
        return json.dumps(data, indent=1, sort_keys=True, default=str)

    def _status_soon(self) -> None:
        self._status_dirty = True

    async def _status_loop(self) -> None:
        last = 0.0
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            if self._status_dirty or now - last >= 2.0:
                self._status_dirty = False
                last = now
                # written from the loop's thread (a few ms at most): a write left running in
                # another thread could land after stop()'s final one
                try:
                    self.write_status()
                except OSError:
                    pass


#: Temporal's names for how an execution ended, by error kind.
_END_STATUS = {"Canceled": "CANCELED", "Terminated": "TERMINATED"}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat()


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class FunctionsProcesses:
    """``process.*`` for ``function.lua`` code that processes call (``Functions.processes``).

    The same calls ``AppRuntime`` answers for functions run by a Temporal worker,
    routed by host: a ``process.host`` spawns here, a ``temporal.worker`` goes
    through the bridge; pids of either kind work for send, cancel, terminate.
    """

    def __init__(self, system: ProcessSystem) -> None:
        self.system = system
        self.app = system.app

    async def spawn(self, entry_id: str, host: str, *args: Any, options: dict[str, Any] | None = None,
                    name: str | None = None, messages: list[tuple[str, Any]] | None = None,
                    context: dict[str, Any] | None = None) -> str:
        system = self.system
        host = system.host_id(host, "process.spawn")
        if system.host_kind(host, "process.spawn") == "process.host":
            if options:
                raise errors.Invalid(f"process.spawn of {entry_id} on {host}: spawn options apply to workflows only")
            return system.spawn(entry_id, host, *args, name=name, messages=messages, context=context)
        return await system.require_bridge(f"process.spawn of {entry_id}").spawn(
            entry_id, host, list(args), options, name=name, messages=messages, context=context)

    async def result(self, pid: str) -> Any:
        return await self.system.result(pid)

    async def send(self, pid: str, topic: str, payload: Any = None, *, sender: str | None = None) -> None:
        await self.system.send(pid, topic, payload, sender=sender)

    async def cancel(self, pid: str, reason: str | None = None) -> None:
        await self.system.cancel(pid, reason)

    async def terminate(self, pid: str, reason: str | None = None) -> None:
        await self.system.terminate(pid, reason)
