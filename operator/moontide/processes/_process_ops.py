"""The ``process.*`` and ``process.registry.*`` blocking ops of a process: send, spawn, exec,
cancel, terminate, links, monitors, names. A mixin of ``Actor`` (see ``_actor`` for the
driver loop and the exit rules these ops set up).

Pids of local processes go straight to their actor; workflow pids
(``{client@worker|id}``) go through the system's bridge.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import errors, values
from ._exit import Exit
from ._mailbox import Message
from ..protocol import is_workflow_pid

if TYPE_CHECKING:
    from ._actor import Actor
    from ._host import ProcessHost

__all__ = ["ProcessOps"]


class ProcessOps:
    """Process ops for ``Actor``; each returns the values to resume with, or None while it waits."""

    __slots__ = ()

    if TYPE_CHECKING:
        host: ProcessHost
        pid: str
        code: Any
        links: set[str] | None
        monitors: set[str] | None
        watching: set[str] | None
        remote: dict[str, tuple[str, asyncio.Future[Any]]] | None

        def outgoing_context(self, ctx_json: str | None) -> dict[str, Any]: ...
        exit: Exit | None
        token: int
        mailbox: Any

        def _await(self, coro: Coroutine[Any, Any, Any], what: str,
                   done: Callable[[Any], tuple[Any, ...]] | None = None) -> tuple[Any, ...] | None: ...
        def _block(self, what: str, undo: Callable[[], None] | None = None) -> int: ...
        def _err(self, e: errors.MoontideError) -> tuple[bool, Any]: ...
        def _ok(self, value: Any) -> tuple[bool, Any]: ...
        def _full(self, ref: Any, what: str) -> str: ...
        def _interruptible(self) -> tuple[Any, ...] | None: ...
        def complete(self, token: int, values: Any) -> None: ...
        def wake(self, values: tuple[Any, ...]) -> None: ...
        def _live(self, token: int) -> bool: ...
        def notify(self, event: dict[str, Any]) -> None: ...
        def link_down(self, pid: str, error: errors.MoontideError) -> None: ...
        def cancel(self, reason: str | None = None, by: str | None = None) -> None: ...
        def accept(self, message: Message) -> bool: ...
        def poke(self) -> None: ...
        def on_exit(self, callback: Callable[[Exit], None]) -> None: ...
        def wait_for_room(self, message: Message, resume: Callable[[bool], bool]) -> None: ...

    def wait_process_send(self, pid: Any, topic: Any, payload_json: str) -> tuple[Any, ...] | None:
        other = self.host.actors.get(pid)  # the common case: a live process of the same host
        target = pid
        if other is None:
            node = self.host.node
            target = node.resolve(pid, "process.send")
            if is_workflow_pid(target):
                bridge = node.require_bridge(f"process.send to {target}")
                return self._await(bridge.send(target, str(topic), json.loads(payload_json), self.pid),
                                   f"sending {topic} to {target}")
            other = node.actor(target)
            if other is None:
                return self._err(errors.NotFound(
                    f"process.send: no process {target} (it has exited or never existed)"))
        message: Message = (topic if type(topic) is str else str(topic), self.pid, payload_json)
        mb = other.mailbox
        if len(mb.messages) < self.host.queue_size and not mb.senders:  # accept(), inlined: the hot path
            mb.messages.append(message)
            if other.waiting is not None:
                other.poke()
            return True, True
        if other.accept(message):
            return True, True
        if other is self:
            return self._err(errors.Unavailable(
                f"process.send to itself: the inbox is full ({self.host.queue_size} messages); "
                "sending would wait forever", retryable=False))
        pending = self._interruptible()
        if pending is not None:
            return pending
        token = self._block(f"waiting for room in the inbox of {target}")

        def resume(ok: bool) -> bool:
            if not self._live(token):
                return False
            self.complete(token, (True, True) if ok else self._err(
                errors.NotFound(f"process.send: {target} exited before taking the message")))
            return True

        other.wait_for_room(message, resume)
        return None

    def wait_process_spawn(self, how: str, entry_id: Any, host_id: Any, args_json: str,
                           opts_json: str | None = None, name: str | None = None,
                           messages_json: str | None = None, ctx_json: str | None = None) -> tuple[Any, ...] | None:
        node = self.host.node
        entry_id, host_id = self._full(entry_id, "process.spawn"), self._host(host_id, "process.spawn")
        args = json.loads(args_json)
        options = json.loads(opts_json) if opts_json else None
        messages = values.startup_messages(messages_json)
        context = self.outgoing_context(ctx_json)
        kind = node.host_kind(host_id, "process.spawn")
        if kind == "process.host":
            if options:
                raise errors.Invalid(f"process.spawn of {entry_id} on {host_id}: spawn options "
                                     f"({', '.join(sorted(options))}) apply to workflows only")
            child = node.hosts[host_id].spawn(entry_id, args, parent=self.pid, name=name, messages=messages,
                                              context=context)
            if how in ("linked", "linked_monitored"):
                self.link_local(child)
            if how in ("monitored", "linked_monitored"):
                self.monitor_local(child)
            return True, child.pid
        bridge = node.require_bridge(f"process.spawn of {entry_id} on {host_id}")

        def spawned(pid: str) -> tuple[Any, ...]:
            if how in ("linked", "linked_monitored"):
                self.watch_remote(pid, "linked")
            elif how == "monitored":
                self.watch_remote(pid, "monitored")
            return True, pid
        return self._await(bridge.spawn(entry_id, host_id, args, options, name=name, sender=self.pid,
                                        messages=[(t, json.loads(p)) for t, p in messages], context=context),
                           f"starting {entry_id} on {host_id}", spawned)

    def _host(self, ref: Any, what: str) -> str:
        """A host by entry ID (namespace-relative), or a temporal.worker by the task queue it polls."""
        if not isinstance(ref, str) or not ref:
            raise errors.Invalid(f"{what}: expected a host entry ID or task queue, got {type(ref).__name__}")
        full = self._full(ref, what)
        by_queue = self.host.node.host_id(ref, what)
        return full if full in self.host.node.app.entries or by_queue == ref else by_queue

    def wait_process_exec(self, entry_id: Any, host_id: Any, args_json: str, opts_json: str | None = None,
                          ctx_json: str | None = None, name: str | None = None,
                          messages_json: str | None = None) -> tuple[Any, ...] | None:
        node = self.host.node
        entry_id, host_id = self._full(entry_id, "process.exec"), self._host(host_id, "process.exec")
        args = json.loads(args_json)
        options = json.loads(opts_json) if opts_json else None
        messages = values.startup_messages(messages_json)
        context = self.outgoing_context(ctx_json)
        kind = node.host_kind(host_id, "process.exec")
        pending = self._interruptible()
        if pending is not None:
            return pending
        if kind == "process.host":
            if options:
                raise errors.Invalid(f"process.exec of {entry_id} on {host_id}: spawn options apply to workflows only")
            child = node.hosts[host_id].spawn(entry_id, args, parent=self.pid, name=name, messages=messages,
                                              context=context)
            token = self._block(f"waiting for {child.pid} ({entry_id})",
                                undo=lambda: child.cancel("the caller of process.exec was canceled", self.pid))
            child.on_exit(lambda ex: self.complete(
                token, lambda: self._ok(ex.value) if ex.error is None else self._err(ex.error)))
            return None
        bridge = node.require_bridge(f"process.exec of {entry_id} on {host_id}")

        async def run() -> Any:
            pid = await bridge.spawn(entry_id, host_id, args, options, name=name, sender=self.pid,
                                     messages=[(t, json.loads(p)) for t, p in messages], context=context)
            return await bridge.result(pid)
        return self._await(run(), f"waiting for workflow {entry_id}", lambda value: self._ok(value))

    def _local_target(self, pid: Any, what: str) -> Actor:
        node = self.host.node
        target = node.resolve(pid, what)
        other = node.actor(target)
        if other is None:
            raise errors.NotFound(f"{what}: no process {target} (it has exited or never existed)")
        return other

    def wait_process_cancel(self, pid: Any, reason: str | None = None) -> tuple[Any, ...] | None:
        node = self.host.node
        target = node.resolve(pid, "process.cancel")
        if is_workflow_pid(target):
            return self._await(node.require_bridge("process.cancel").cancel(target, reason, self.pid),
                               f"canceling {target}")
        self._local_target(target, "process.cancel").cancel(reason, self.pid)
        return True, True

    def wait_process_terminate(self, pid: Any, reason: str | None = None) -> tuple[Any, ...] | None:
        node = self.host.node
        target = node.resolve(pid, "process.terminate")
        if is_workflow_pid(target):
            return self._await(node.require_bridge("process.terminate").terminate(target, reason),
                               f"terminating {target}")
        other = self._local_target(target, "process.terminate")
        other.host.terminate(other.pid, reason, by=self.pid)
        return None if other is self else (True, True)

    def link_local(self, other: Actor) -> None:
        if self.links is None:
            self.links = set()  # type: ignore[misc]  # an Actor's slot (ProcessOps is its mixin)
        if other.links is None:
            other.links = set()
        self.links.add(other.pid)
        other.links.add(self.pid)

    def monitor_local(self, other: Actor) -> None:
        if other.monitors is None:
            other.monitors = set()
        if self.watching is None:
            self.watching = set()  # type: ignore[misc]
        other.monitors.add(self.pid)
        self.watching.add(other.pid)

    def watch_remote(self, pid: str, how: str) -> None:
        """Link to / monitor a workflow: its end arrives as an event (one way: a workflow is not killed)."""
        bridge = self.host.node.require_bridge(f"process.{how} of {pid}")
        if self.remote is None:
            self.remote = {}  # type: ignore[misc]
        old = self.remote.get(pid)
        if old is not None:
            if old[0] == "linked" or how == "monitored":
                return
            old[1].cancel()

        async def watch() -> None:
            try:
                value = await bridge.result(pid)
                ex = Exit(value)
            except errors.MoontideError as e:
                ex = Exit(None, e)
            if self.remote is not None:
                self.remote.pop(pid, None)
            if how == "linked" and ex.error is not None:
                self.link_down(pid, ex.error)
            else:
                self.notify({"kind": "pid.exit", "from": pid, "result": ex.result()})

        self.remote[pid] = (how, self.host.track(asyncio.ensure_future(watch())))

    def _unwatch_remote(self, pid: str) -> None:
        if self.remote and pid in self.remote:
            self.remote.pop(pid)[1].cancel()

    def wait_process_link(self, pid: Any) -> tuple[Any, ...] | None:
        target = self.host.node.resolve(pid, "process.link")
        if is_workflow_pid(target):
            self.watch_remote(target, "linked")
            return True, True
        other = self._local_target(target, "process.link")
        if other is self:
            raise errors.Invalid("process.link: a process cannot link to itself")
        self.link_local(other)
        return True, True

    def wait_process_unlink(self, pid: Any) -> tuple[Any, ...] | None:
        node = self.host.node
        target = node.resolve(pid, "process.unlink")
        self._unwatch_remote(target)
        if self.links:
            self.links.discard(target)
        other = node.actor(target)
        if other is not None and other.links:
            other.links.discard(self.pid)
        return True, True

    def wait_process_monitor(self, pid: Any) -> tuple[Any, ...] | None:
        target = self.host.node.resolve(pid, "process.monitor")
        if is_workflow_pid(target):
            self.watch_remote(target, "monitored")
            return True, True
        other = self._local_target(target, "process.monitor")
        if other is self:
            raise errors.Invalid("process.monitor: a process cannot monitor itself")
        self.monitor_local(other)
        return True, True

    def wait_process_unmonitor(self, pid: Any) -> tuple[Any, ...] | None:
        node = self.host.node
        target = node.resolve(pid, "process.unmonitor")
        self._unwatch_remote(target)
        if self.watching:
            self.watching.discard(target)
        other = node.actor(target)
        if other is not None and other.monitors:
            other.monitors.discard(self.pid)
        return True, True

    def wait_process_upgrade(self, entry_id: Any, args_json: str) -> tuple[Any, ...] | None:
        """Go on as ``entry_id`` (None: this code, from the start) with ``args``: same pid, inbox,
        links and monitors; what the old code listened to and its timers are gone."""
        code = self.host.node.code(self._full(entry_id, "process.upgrade")) if entry_id else self.code
        self.host.upgrade(self, code, json.loads(args_json))  # type: ignore[arg-type]
        return None

    def wait_registry_register(self, name: Any, pid: Any = None) -> tuple[Any, ...] | None:
        target = self.pid if pid is None else self.host.node.resolve(pid, "process.registry.register")
        self.host.node.registry.register(name, target)
        return True, True

    def wait_registry_lookup(self, name: Any) -> tuple[Any, ...] | None:
        return True, self.host.node.registry.lookup(name)

    def wait_registry_unregister(self, name: Any) -> tuple[Any, ...] | None:
        self.host.node.registry.unregister(name)
        return True, True
