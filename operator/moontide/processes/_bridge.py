"""How a process host reaches workflows: the ``Bridge`` protocol, and one over ``AppRuntime``.

A process that spawns on a ``temporal.worker`` host, or sends to, cancels,
terminates, links to or monitors a workflow pid (``{client@worker|id}``), goes
through the bridge its ``ProcessSystem`` was given. ``moontide.runtime.AppRuntime``
already has every method the protocol asks for; ``RuntimeBridge`` adapts it.
The other way round (a workflow sending to a process pid) is
``ProcessSystem.deliver``, reached through the ``moontide.deliver`` activity
(see ``_deliver``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Bridge", "RuntimeBridge"]


@runtime_checkable
class Bridge(Protocol):
    """Workflows, as seen from processes. Errors are ``moontide.errors.MoontideError``."""

    async def spawn(self, entry_id: str, host_id: str, args: list[Any], options: dict[str, Any] | None = None,
                    *, name: str | None = None, messages: list[tuple[str, Any]] | None = None,
                    sender: str | None = None, context: dict[str, Any] | None = None) -> str:
        """Start workflow ``entry_id`` on ``temporal.worker`` ``host_id`` (Wippy's ``options``, the
        spawner's ``name`` and startup ``messages`` from ``sender``, ``context``: its ctx values); its pid."""
        ...

    async def send(self, pid: str, topic: str, payload: Any, sender: str | None) -> None:
        """Signal ``topic`` with ``payload``; ``sender`` is what ``msg:from()`` answers."""
        ...

    async def cancel(self, pid: str, reason: str | None, sender: str | None = None) -> None:
        """Request cancellation; the workflow's pid.cancel event says ``reason`` and ``from`` = ``sender``."""
        ...

    async def terminate(self, pid: str, reason: str | None) -> None: ...

    async def result(self, pid: str) -> Any:
        """Wait for the workflow's end: its result, or raise MoontideError (for exec, links, monitors)."""
        ...


class RuntimeBridge:
    """A ``Bridge`` over an ``AppRuntime`` (its clients, code pinning and pids)."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime

    async def spawn(self, entry_id: str, host_id: str, args: list[Any], options: dict[str, Any] | None = None,
                    *, name: str | None = None, messages: list[tuple[str, Any]] | None = None,
                    sender: str | None = None, context: dict[str, Any] | None = None) -> str:
        return str(await self.runtime.spawn(entry_id, host_id, *args, options=options, name=name,
                                            messages=messages, sender=sender, context=context))

    async def send(self, pid: str, topic: str, payload: Any, sender: str | None) -> None:
        await self.runtime.send(pid, topic, payload, sender=sender)

    async def cancel(self, pid: str, reason: str | None, sender: str | None = None) -> None:
        await self.runtime.cancel(pid, reason, sender=sender)

    async def terminate(self, pid: str, reason: str | None) -> None:
        await self.runtime.terminate(pid, reason)

    async def result(self, pid: str) -> Any:
        return await self.runtime.result(pid)
