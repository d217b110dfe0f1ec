"""A ``process.host``: many Lua processes on one asyncio loop, scheduled cooperatively.

Each process is a Lua thread on a runtime shared with up to ``per_runtime``
others (``lua.runtime.Shards``), instantiated with its own globals by
``lua.code.instantiate``. The host keeps a run queue of processes that can
go on; one loop callback drains it in slices of at most ``SLICE`` seconds, so
Temporal workers and other asyncio work on the same loop keep running. Only
``funcs.call`` (a function run in a thread of the host's pool, ``workers``
threads) leaves the loop thread; ``http`` requests and bridge calls are
awaited on the loop while their process waits.

A host does not own anything global: entry lookup, the registry, other
hosts and the bridge to workflows belong to its ``ProcessSystem``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from .. import errors
from ..lua import _http_client
from ..lua import code as code_mod
from ..lua import host as host_mod
from ..lua import runtime as rt_mod
from ._actor import Actor, _Slot
from ._exit import Exit
from ..protocol import ProcessPid as LocalPid

if TYPE_CHECKING:
    from ._system import ProcessSystem

__all__ = ["ProcessHost"]

log = logging.getLogger("moontide.processes")

#: Longest stretch the host runs processes before it lets the event loop do other work.
SLICE = 0.02


class ProcessHost:
    """Runs the processes of one ``process.host`` entry."""

    def __init__(self, entry_id: str, node: ProcessSystem, *, queue_size: int = 1024, workers: int = 0,
                 per_runtime: int = 256, memory_limit: int = 64 << 20, instruction_budget: int = 20_000_000,
                 keep_exits: int = 10_000) -> None:
        self.id = entry_id
        self.node = node
        self.queue_size = queue_size
        #: distinguishes this run of the host in its pids
        self.run_id = os.urandom(3).hex()
        self.shards = rt_mod.Shards(per_runtime=per_runtime, memory_limit=memory_limit,
                                    instruction_budget=instruction_budget)
        self.workers = workers or min(32, (os.cpu_count() or 1) + 4)
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                              thread_name_prefix=f"moontide-{entry_id}")
        self.actors: dict[str, Actor] = {}
        #: recent exits, for wait() after the fact and for ps: pid -> (entry, exit)
        self.exits: OrderedDict[str, tuple[str, Exit]] = OrderedDict()
        self.keep_exits = keep_exits
        self.spawned = 0
        self.failed = 0
        self._n = 0
        self._ready: deque[tuple[Actor, tuple[Any, ...]]] = deque()
        self._kicked = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._activation: dict[str, list[asyncio.Future[None]]] = {}
        self._http: Any = None
        #: http_client's shared clients: private_ip allowed -> client
        self._http_client: dict[bool, Any] | None = None
        self.closed = False
        #: seeds of each process's math.random (not a secret: a syscall per spawn is not worth it)
        self._seeds = random.Random(os.urandom(16))

    def __repr__(self) -> str:
        return f"<ProcessHost {self.id} {len(self.actors)} processes>"

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    # -- spawning ---------------------------------------------------------------------
    def spawn(self, entry_id: str, args: list[Any] | tuple[Any, ...] = (), *, parent: str | None = None,
              name: str | None = None, messages: Any = (), sender: str | None = None,
              context: dict[str, Any] | None = None) -> Actor:
        """Start process ``entry_id`` (a process.lua entry) with JSON ``args``; it runs once the loop gets to it.

        ``name``: registered under that name (AlreadyExists when it is taken); ``messages``:
        (topic, payload JSON text) already in its inbox, in order, from ``sender`` (the parent);
        ``context``: what its ctx module answers.
        Raises MoontideError (NotFound, Invalid, LuaError from the chunk) naming the entry.
        """
        if self.closed:
            raise errors.Unavailable(f"process host {self.id} is stopped")
        registry = self.node.registry
        if name is not None and registry.names.get(registry.check(name, "process.spawn :with_name")) is not None:
            raise errors.AlreadyExists(f"process.spawn of {entry_id}: the name {name!r} is taken by "
                                       f"{registry.names[name]}")
        code = self.node.code(entry_id)
        loop = self.loop
        slot = _Slot()
        rt = self.shards.acquire(slot)
        self._n += 1
        pid = str(LocalPid(self.id, self.run_id, self._n))
        actor = Actor(self, pid, code, rt, slot, parent, context)
        try:
            fn = code_mod.instantiate(rt, code, host=actor, seed=self._seeds.getrandbits(64))
            actor.thread = rt.start(fn, actor, *[rt.to_lua(a) for a in args])
        except errors.MoontideError as e:
            raise errors.MoontideError(f"process.spawn of {entry_id} on {self.id}: {e}", kind=e.kind,
                                       retryable=e.retryable) from None
        self.actors[pid] = actor
        if name is not None:
            registry.register(name, pid)
        for topic, payload_json in messages:
            actor.mailbox.messages.append((topic, sender or parent, payload_json))
        self.spawned += 1
        self._ready.append((actor, ()))
        if not self._kicked:
            self._kicked = True
            loop.call_soon(self._drain)
        return actor

    def upgrade(self, actor: Actor, code: code_mod.LuaCode, args: list[Any]) -> None:
        """process.upgrade: ``actor`` runs ``code`` from its start with ``args``, on the same runtime and pid.

        Its inbox, links, monitors and registered names stay; its Lua globals, topics it listened to,
        timers and pending calls go with the old code.
        """
        rt = actor.runtime
        fn = code_mod.instantiate(rt, code, host=actor, seed=self._seeds.getrandbits(64))
        actor.thread = rt.start(fn, actor, *[rt.to_lua(a) for a in args])
        actor.code = code
        actor.activated = False
        actor.drop_waits()  # the old code's coroutines, and what they waited for, are gone
        mb = actor.mailbox
        mb.listening = None
        timers, futures, mb.timers, mb.futures, mb.ops = mb.timers, mb.futures, None, None, None
        mb.canceled = set()
        for entry in (timers or {}).values():
            if isinstance(entry[1], asyncio.TimerHandle):
                entry[1].cancel()
        for fut in (futures or {}).values():
            fut.cancel()
        actor.state = "ready"
        self.schedule(actor, ())

    # -- the scheduler ----------------------------------------------------------------
    def schedule(self, actor: Actor, values: tuple[Any, ...]) -> None:
        self._ready.append((actor, values))
        if not self._kicked:
            self._kicked = True
            self.loop.call_soon(self._drain)

    def _drain(self) -> None:
        self._kicked = False
        ready = self._ready
        deadline = time.perf_counter() + SLICE
        n = 0
        while ready:
            actor, values = ready.popleft()
            if actor.exit is None:
                try:
                    actor.run(values)
                except Exception as e:  # a bug in the driver: that process fails, the host goes on
                    log.exception("%s: the process driver failed", actor.pid)
                    actor.end(Exit(None, errors.Internal(f"process driver: {type(e).__name__}: {e}", retryable=False)))
            n += 1
            if n & 31 == 0 and time.perf_counter() > deadline:
                break
        if ready and not self._kicked:
            self._kicked = True
            self.loop.call_soon(self._drain)

    def track(self, fut: asyncio.Future[Any]) -> asyncio.Future[Any]:
        """Keep a background task alive until it is done."""
        self._tasks.add(fut)
        fut.add_done_callback(self._tasks.discard)
        return fut

    async def http(self, kw: dict[str, Any]) -> dict[str, Any]:
        """An http module request (``lua.host.http_arguments``) on this host's async client."""
        import httpx

        if self._http is None:
            self._http = httpx.AsyncClient()
        with host_mod.http_errors(kw["method"], kw["url"]):
            r = await self._http.request(**kw)
        return host_mod.http_response(r)

    def http_client(self, req: Any) -> Any:
        """The http_client module's request or batch (``lua._http_client``) on one of this host's async clients
        (one guarded against private addresses, one for entries granted http_client.private_ip)."""
        private_ip = (req[0] if isinstance(req, list) else req).private_ip
        if self._http_client is None:
            self._http_client = {}
        shared = self._http_client.get(private_ip)
        if shared is None:
            shared = self._http_client[private_ip] = _http_client.client(private_ip=private_ip, asynchronous=True)
        if isinstance(req, list):
            return _http_client.batch_async(req, shared)
        return _http_client.send_async(req, shared)

    # -- ends ---------------------------------------------------------------------------
    def finish(self, actor: Actor, step: rt_mod.Step) -> None:
        """The thread returned or raised: its exit."""
        rt = actor.runtime
        if isinstance(step, rt_mod.Done):
            values = step.values
            value = values[0] if values else None
            err = values[1] if len(values) > 1 else None
            if value is None and err is not None:
                ex = Exit(None, rt.error_from_lua(err))
            else:
                try:
                    ex = Exit(rt.from_lua(value, "result"))
                except errors.Invalid as e:
                    ex = Exit(None, errors.Invalid(f"the result of {actor.code.id} cannot cross to JSON: {e.message}"))
        else:
            assert isinstance(step, rt_mod.Failed)
            ex = Exit(None, step.error)
        if not actor.activated:
            actor.activated = True
            self.activated(actor)
        actor.end(ex)

    def kill(self, actor: Actor, error: errors.MoontideError) -> None:
        actor.end(Exit(None, error))

    def forget(self, actor: Actor) -> None:
        """Called by ``Actor.end``: the process is gone from the host and the registry."""
        self.actors.pop(actor.pid, None)
        if actor.exit is not None and actor.exit.error is not None:
            self.failed += 1
        self.exits[actor.pid] = (actor.code.id, actor.exit)  # type: ignore[assignment]
        while len(self.exits) > self.keep_exits:
            self.exits.popitem(last=False)
        self.node.registry.forget(actor.pid)
        for fut in self._activation.pop(actor.pid, ()):
            if not fut.done():
                fut.set_result(None)

    def activated(self, actor: Actor) -> None:
        """The process finished its first activation (it waits for something, or has ended)."""
        for fut in self._activation.pop(actor.pid, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait_activated(self, pid: str) -> None:
        """Until the process's first activation is over (services count as Running then)."""
        actor = self.actors.get(pid)
        if actor is None or actor.activated:
            return
        fut: asyncio.Future[None] = self.loop.create_future()
        self._activation.setdefault(pid, []).append(fut)
        await fut

    # -- from Python --------------------------------------------------------------------
    def actor(self, pid: str) -> Actor:
        actor = self.actors.get(pid)
        if actor is None:
            raise errors.NotFound(f"no process {pid} on {self.id} (it has exited or never existed)")
        return actor

    async def deliver(self, pid: str, topic: str, payload_json: str | None, sender: str | None = None) -> None:
        """Put a message (payload as JSON text) in the inbox of ``pid``; waits while the inbox is full."""
        actor = self.actor(pid)
        message = (topic, sender, payload_json)
        if actor.accept(message):
            return
        fut: asyncio.Future[bool] = self.loop.create_future()

        def resume(ok: bool) -> bool:
            if fut.done():
                return False
            fut.set_result(ok)
            return True

        actor.wait_for_room(message, resume)
        if not await fut:
            raise errors.NotFound(f"process {pid} exited before taking the message")

    def cancel(self, pid: str, reason: str | None = None, *, by: str | None = None) -> None:
        self.actor(pid).cancel(reason, by)

    def terminate(self, pid: str, reason: str | None = None, *, by: str | None = None) -> None:
        """End the process at once (kind Terminated); its links and monitors are told."""
        actor = self.actor(pid)
        msg = "terminated" + (f" by {by}" if by else "") + (f": {reason}" if reason else "")
        actor.end(Exit(None, errors.Terminated(msg)))

    async def wait(self, pid: str) -> Exit:
        """The exit of ``pid`` (waits while it runs)."""
        actor = self.actors.get(pid)
        if actor is None:
            if pid in self.exits:
                return self.exits[pid][1]
            raise errors.NotFound(f"no process {pid} on {self.id}")
        fut: asyncio.Future[Exit] = self.loop.create_future()
        actor.on_exit(lambda ex: None if fut.done() else fut.set_result(ex))
        return await fut

    def snapshot(self, limit: int = 1000) -> dict[str, Any]:
        """What ``moontide ps`` shows of this host."""
        procs = [a.info() for _, a in zip(range(limit), self.actors.values())]
        recent = [{"pid": pid, "entry": entry, "state": "exited" if ex.error is None else "failed",
                   "error": None if ex.error is None else f"[{ex.error.kind}] {str(ex.error).splitlines()[0]}",
                   "at": ex.at}
                  for pid, (entry, ex) in list(self.exits.items())[-20:]]
        return {"id": self.id, "run": self.run_id, "processes": len(self.actors), "spawned": self.spawned,
                "failed": self.failed, "list": procs, "recent_exits": recent}

    async def stop(self, timeout: float = 5.0) -> None:
        """Cancel every process, wait up to ``timeout``, terminate what is left."""
        self.closed = True
        if self.actors:
            waits = [asyncio.ensure_future(self.wait(pid)) for pid in list(self.actors)]
            for actor in list(self.actors.values()):
                actor.cancel("the host is stopping")
            await asyncio.wait(waits, timeout=timeout)
            for actor in list(self.actors.values()):
                self.terminate(actor.pid, "the host stopped")
            await asyncio.gather(*waits, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._http, *(self._http_client or {}).values()):
            if client is not None:
                await client.aclose()
        self._http = self._http_client = None
        self.executor.shutdown(wait=False, cancel_futures=True)

