"""``process.service``: one process kept running under its lifecycle.

States: Starting (spawned, first activation not over yet, or waiting out a
restart delay), Running, Stopping, Stopped, Exited (the process returned
cleanly: it is not restarted) and Failed (it kept failing: ``max_attempts``
restarts were not enough).

A process counts as Running once its first activation is over: it waits for
something (a message, a timer, a call) without having failed. A failed run
is restarted after ``initial_delay * backoff_factor ** n`` (n = restarts since
the count was last reset), capped at ``max_delay``, spread by ``jitter`` (a
delay ``d`` becomes a uniform draw in ``d * (1 ± jitter)``, capped again).
``max_attempts`` is the number of restarts allowed (0: unlimited); the failure
after the last one ends the service as Failed. A run that lasted
``stable_threshold`` resets the count, so the next delay is ``initial_delay``.

``Supervisor`` starts ``auto_start`` services in ``depends_on`` order (a
service starts once every service it depends on is Running; services it
depends on start too, auto_start or not; ``temporal.client``/``temporal.worker``
dependencies are the app runtime's and count as up) and stops them in the
reverse order, each within its ``stop_timeout``: it is canceled (``pid.cancel``
event, Canceled error from its wait), then terminated.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import durations, errors
from ._exit import Exit

if TYPE_CHECKING:
    from ..entries import Entry
    from ._system import ProcessSystem

__all__ = ["Restart", "Run", "Service", "ServiceState", "Supervisor"]

log = logging.getLogger("moontide.services")


class ServiceState(str, enum.Enum):
    STARTING = "Starting"
    RUNNING = "Running"
    STOPPING = "Stopping"
    STOPPED = "Stopped"
    EXITED = "Exited"
    FAILED = "Failed"

    def __str__(self) -> str:
        return self.value


#: States a service does not leave by itself.
FINAL = frozenset({ServiceState.STOPPED, ServiceState.EXITED, ServiceState.FAILED})


def _seconds(value: Any) -> float:
    return durations.parse(value) / 1e9


@dataclass(frozen=True)
class Restart:
    """The ``lifecycle.restart`` of a service, in seconds."""

    initial_delay: float = 1.0
    max_delay: float = 90.0
    backoff_factor: float = 2.0
    jitter: float = 0.1
    max_attempts: int = 0

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Restart:
        return cls(initial_delay=_seconds(data.get("initial_delay", "1s")),
                   max_delay=_seconds(data.get("max_delay", "90s")),
                   backoff_factor=float(data.get("backoff_factor", 2.0)),
                   jitter=float(data.get("jitter", 0.1)),
                   max_attempts=int(data.get("max_attempts", 0)))

    def base_delay(self, n: int) -> float:
        """The delay before restart ``n`` (0-based), without jitter."""
        try:
            delay = self.initial_delay * self.backoff_factor ** n
        except OverflowError:
            delay = self.max_delay
        return min(delay, self.max_delay)

    def delay(self, n: int, rand: random.Random | None = None) -> float:
        base = self.base_delay(n)
        if self.jitter <= 0:
            return base
        spread = (rand or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(base * (1 + spread), self.max_delay))


@dataclass
class Run:
    """One run of a service's process."""

    pid: str | None
    started: float
    """time.monotonic() when it was spawned"""
    ended: float | None = None
    error: str | None = None
    delay_before: float = 0.0
    """the restart delay waited before this run (0 for the first)"""


@dataclass
class _Lifecycle:
    auto_start: bool
    start_timeout: float
    stop_timeout: float
    stable_threshold: float
    depends_on: list[str]
    restart: Restart

    @classmethod
    def from_entry(cls, entry: Entry) -> _Lifecycle:
        lc = entry.data.get("lifecycle") or {}
        return cls(auto_start=bool(lc.get("auto_start", False)),
                   start_timeout=_seconds(lc.get("start_timeout", "10s")),
                   stop_timeout=_seconds(lc.get("stop_timeout", "10s")),
                   stable_threshold=_seconds(lc.get("stable_threshold", "5s")),
                   depends_on=[entry.namespace + ":" + d if ":" not in d else d for d in lc.get("depends_on") or []],
                   restart=Restart.from_data(lc.get("restart") or {}))


class Service:
    """A supervised ``process.service`` entry."""

    def __init__(self, entry: Entry, system: ProcessSystem, *, rand: random.Random | None = None,
                 on_change: Callable[[Service], None] | None = None) -> None:
        self.entry = entry
        self.id = entry.id
        self.system = system
        self.process = system.app.resolve(entry.data["process"], entry.namespace)
        self.host_id = system.app.resolve(entry.data["host"], entry.namespace)
        self.input: list[Any] = list(entry.data.get("input") or [])
        self.lifecycle = _Lifecycle.from_entry(entry)
        self.state = ServiceState.STOPPED
        self.pid: str | None = None
        self.restarts = 0
        """restarts since the service was started"""
        self.attempts = 0
        """restarts since the count was last reset (a stable run resets it)"""
        self.last_error: str | None = None
        self.runs: deque[Run] = deque(maxlen=100)
        self.retry_at: float | None = None
        self._rand = rand or random.Random()
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()

    def __repr__(self) -> str:
        return f"<Service {self.id} {self.state}>"

    def _set(self, state: ServiceState) -> None:
        if state != self.state:
            log.info("service %s: %s -> %s%s", self.id, self.state, state,
                     f" ({self.pid})" if state == ServiceState.RUNNING else "")
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()
        if self._on_change is not None:
            self._on_change(self)

    async def _until(self, predicate: Callable[[], bool]) -> None:
        while not predicate():
            await self._changed.wait()

    # -- control ------------------------------------------------------------------
    async def start(self) -> bool:
        """Start supervising; return once it is Running (True) or has ended (False)."""
        if self._task is None or self._task.done():
            self._stopping = False
            self._wake = asyncio.Event()
            self.restarts = self.attempts = 0
            self._set(ServiceState.STARTING)
            self._task = asyncio.create_task(self._supervise(), name=f"service {self.id}")
        await self._until(lambda: self.state == ServiceState.RUNNING or self.state in FINAL)
        return self.state == ServiceState.RUNNING

    async def stop(self) -> None:
        """Cancel the process, terminate it after ``stop_timeout``; the service ends Stopped."""
        task = self._task
        if task is None or task.done():
            if self.state not in FINAL:
                self._set(ServiceState.STOPPED)
            return
        self._stopping = True
        self._wake.set()
        await asyncio.gather(task, return_exceptions=True)

    @property
    def active(self) -> bool:
        """Supervising (starting, running, backing off or stopping)."""
        return self._task is not None and not self._task.done()

    async def wait(self) -> ServiceState:
        """Until the service ends (Exited, Failed or Stopped)."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        return self.state

    # -- the loop -------------------------------------------------------------------
    async def _supervise(self) -> None:
        try:
            delay = 0.0
            while True:
                ex, run = await self._run_once(delay)
                if self._stopping:
                    break
                if ex.error is None:
                    self._set(ServiceState.EXITED)
                    return
                assert run.ended is not None
                if run.ended - run.started >= self.lifecycle.stable_threshold:
                    self.attempts = 0
                restart = self.lifecycle.restart
                if restart.max_attempts and self.attempts >= restart.max_attempts:
                    log.error("service %s failed after %d restarts: %s", self.id, self.restarts, self.last_error)
                    self._set(ServiceState.FAILED)
                    return
                delay = restart.delay(self.attempts, self._rand)
                self.attempts += 1
                self.restarts += 1
                self.retry_at = time.monotonic() + delay
                self._set(ServiceState.STARTING)
                log.warning("service %s: restart %d in %.3gs after: %s", self.id, self.restarts, delay,
                            self.last_error)
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=delay)
                except asyncio.TimeoutError:
                    pass
                self.retry_at = None
                if self._stopping:
                    break
            self._set(ServiceState.STOPPED)
        except asyncio.CancelledError:
            self._set(ServiceState.STOPPED)
            raise
        except Exception as e:  # a bug in the supervisor: say so, do not hang dependents
            log.exception("service %s: supervisor failed", self.id)
            self.last_error = f"[Internal] supervisor: {e}"
            self._set(ServiceState.FAILED)

    async def _run_once(self, delay: float) -> tuple[Exit, Run]:
        host = self.system.host(self.host_id)
        run = Run(None, time.monotonic(), delay_before=delay)
        self.runs.append(run)
        self._set(ServiceState.STARTING)
        try:
            actor = host.spawn(self.process, self.input)
        except errors.MoontideError as e:
            run.ended = time.monotonic()
            return self._failed(run, e), run
        self.pid = run.pid = actor.pid
        exit_task = asyncio.ensure_future(host.wait(actor.pid))
        try:
            await asyncio.wait_for(host.wait_activated(actor.pid), timeout=self.lifecycle.start_timeout)
        except asyncio.TimeoutError:
            host.terminate(actor.pid, f"did not start within {self.lifecycle.start_timeout:g}s")
        if actor.exit is None and not self._stopping:
            self._set(ServiceState.RUNNING)
        stop_waiter = asyncio.ensure_future(self._wake.wait())
        try:
            while not exit_task.done():
                await asyncio.wait({exit_task, stop_waiter}, return_when=asyncio.FIRST_COMPLETED)
                if self._stopping and not exit_task.done():
                    await self._stop_process(actor.pid, exit_task)
        finally:
            stop_waiter.cancel()
        ex = exit_task.result()
        run.ended = time.monotonic()
        if ex.error is not None and not self._stopping:
            return self._failed(run, ex.error), run
        return ex, run

    async def _stop_process(self, pid: str, exit_task: asyncio.Future[Exit]) -> None:
        self._set(ServiceState.STOPPING)
        host = self.system.host(self.host_id)
        try:
            host.cancel(pid, "service stopping")
        except errors.NotFound:
            pass
        done, _ = await asyncio.wait({exit_task}, timeout=self.lifecycle.stop_timeout)
        if not done:
            log.warning("service %s: %s did not stop within %gs: terminated", self.id, pid,
                        self.lifecycle.stop_timeout)
            try:
                host.terminate(pid, f"did not stop within {self.lifecycle.stop_timeout:g}s")
            except errors.NotFound:
                pass
            await exit_task

    def _failed(self, run: Run, error: errors.MoontideError) -> Exit:
        first = str(error).splitlines()[0] if str(error) else error.kind
        self.last_error = run.error = f"[{error.kind}] {first}"
        return Exit(None, error)

    def info(self) -> dict[str, Any]:
        return {
            "id": self.id, "state": str(self.state), "pid": self.pid, "process": self.process, "host": self.host_id,
            "restarts": self.restarts, "last_error": self.last_error, "auto_start": self.lifecycle.auto_start,
            "depends_on": self.lifecycle.depends_on,
            "retry_in": max(0.0, self.retry_at - time.monotonic()) if self.retry_at else None,
            "uptime": (time.monotonic() - self.runs[-1].started)
            if self.state == ServiceState.RUNNING and self.runs else None,
        }


@dataclass
class Supervisor:
    """The services of a ``ProcessSystem``: ordered start and stop."""

    system: ProcessSystem
    services: dict[str, Service] = field(default_factory=dict)
    started: list[str] = field(default_factory=list)
    """services in the order they were started (stopped in reverse)"""
    history: list[tuple[str, str]] = field(default_factory=list)
    """(service, state) transitions, in order"""
    on_change: Callable[[Service], None] | None = None

    def add(self, entry: Entry) -> Service:
        svc = Service(entry, self.system, on_change=self._changed)
        self.services[entry.id] = svc
        return svc

    def _changed(self, svc: Service) -> None:
        self.history.append((svc.id, str(svc.state)))
        if self.on_change is not None:
            self.on_change(svc)

    def order(self, ids: list[str] | None = None) -> list[str]:
        """Services to start for ``ids`` (default: the auto_start ones), dependencies first.

        Raises Invalid naming the services of a dependency cycle.
        """
        wanted = ids if ids is not None else [s.id for s in self.services.values() if s.lifecycle.auto_start]
        out: list[str] = []
        state: dict[str, int] = {}  # 1 visiting, 2 done

        def visit(sid: str, path: tuple[str, ...]) -> None:
            if state.get(sid) == 2:
                return
            if state.get(sid) == 1:
                cycle = path[path.index(sid):] + (sid,)
                raise errors.Invalid(f"process.service {sid}: lifecycle.depends_on forms a cycle: "
                                     + " -> ".join(cycle))
            state[sid] = 1
            for dep in self.services[sid].lifecycle.depends_on:
                if dep in self.services:
                    visit(dep, path + (sid,))
            state[sid] = 2
            out.append(sid)

        for sid in wanted:
            if sid not in self.services:
                raise errors.NotFound(f"no process.service {sid!r} (services: {', '.join(self.services) or 'none'})")
            visit(sid, ())
        return out

    async def start(self, ids: list[str] | None = None) -> dict[str, bool]:
        """Start services (default: auto_start ones) in dependency order; which reached Running."""
        results: dict[str, bool] = {}
        for sid in self.order(ids):
            svc = self.services[sid]
            blocked = [d for d in svc.lifecycle.depends_on if d in self.services and not results.get(d, False)
                       and self.services[d].state != ServiceState.RUNNING]
            if blocked:
                dep = self.services[blocked[0]]
                svc.last_error = f"not started: it depends on {dep.id}, which is {dep.state}"
                log.error("service %s %s", sid, svc.last_error)
                results[sid] = False
                continue
            if sid not in self.started:
                self.started.append(sid)
            results[sid] = await svc.start()
        return results

    async def stop(self, ids: list[str] | None = None) -> None:
        """Stop services in the reverse of their start order (default: every running one).

        Services started on their own (``Service.start``) stop first, in the
        reverse of their dependency order.
        """
        ordered = list(reversed(self.started))
        loose = [sid for sid in reversed(self.order(list(self.services))) if sid not in ordered
                 and self.services[sid].active]
        for sid in loose + ordered:
            if ids is not None and sid not in ids:
                continue
            await self.services[sid].stop()
            if sid in self.started:
                self.started.remove(sid)

    def info(self) -> list[dict[str, Any]]:
        return [s.info() for s in self.services.values()]
