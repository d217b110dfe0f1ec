"""What every long-running part (a Runtime, a process system, the deliver workers) does the same way:
``async with`` around ``start``/``stop``, and stopping Temporal workers with the tasks that run them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol, TypeVar

__all__ = ["Startable", "stop_workers"]

S = TypeVar("S", bound="Startable")


class _Worker(Protocol):
    async def shutdown(self) -> None: ...


class Startable:
    """``async with it:`` starts it and stops it; a failed start stops what it started."""

    async def start(self) -> Any:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: S) -> S:
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()


async def stop_workers(workers: Iterable[_Worker], tasks: list[asyncio.Task[None]]) -> None:
    """Shut ``workers`` down (in-flight tasks finish), then end the tasks that ran them; ``tasks`` is emptied."""
    await asyncio.gather(*(w.shutdown() for w in workers), return_exceptions=True)
    for t in tasks:
        if not t.done():
            t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()
