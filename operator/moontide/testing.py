"""Run an app against a Temporal dev server, for tests (yours and Moontide's)::

    from moontide.testing import dev_server, running

    def test_order(tmp_path):
        with dev_server() as address:
            asyncio.run(check(address))

    async def check(address):
        async with running("path/to/app", address) as rt:
            pid = await rt.spawn("app:order", None, {"id": 7})
            assert await rt.result(pid) == {"ok": True}

``dev_server`` starts Moontide's tuned dev server on free ports in a temporary
directory (headless) and yields its address; ``running`` serves an app (its
workers, process hosts and services) against an address, as ``moontide run
--temporal`` does; ``client`` connects a ``moontide.Client`` to it;
``eventually`` polls until a condition holds. Nothing here imports pytest.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .client import Client
    from .runtime import Runtime

__all__ = ["client", "dev_server", "eventually", "free_port", "running"]

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dev_server(state_dir: str | os.PathLike[str] | None = None, *, namespace: str = "default",
               search_attributes: Mapping[str, str] | None = None) -> Iterator[str]:
    """A headless Temporal dev server (Moontide's tuned one) on free ports; yields its address.

    ``state_dir``: where its database lives (default: a temporary directory, removed after).
    """
    from .devserver import DevServer

    with tempfile.TemporaryDirectory(prefix="moontide-test-") as tmp:
        server = DevServer(state_dir=Path(state_dir or tmp), ui=False, namespace=namespace,
                           search_attributes=dict(search_attributes or {}))
        server.start()
        try:
            yield str(server.address)
        finally:
            server.stop()


@contextlib.asynccontextmanager
async def running(app_dir: str | os.PathLike[str], temporal_address: str | None = None) -> AsyncIterator[Runtime]:
    """The app served by in-process workers (and process hosts) against ``temporal_address``
    (default: the app's own temporal.client settings, or its embedded server)."""
    from .runtime import Runtime

    async with Runtime(app_dir, temporal=temporal_address, serve=True) as rt:
        yield rt


async def client(temporal_address: str, *, namespace: str | None = None) -> Client:
    """A ``moontide.Client`` connected to ``temporal_address``."""
    from .client import Client

    return await Client.connect(temporal_address, namespace=namespace)


async def eventually(probe: Callable[[], T | Awaitable[T]], ok: Callable[[T], bool], *, what: str = "condition",
                     timeout: float = 30, interval: float = 0.02,
                     tolerate: tuple[type[Exception], ...] = ()) -> T:
    """Poll ``probe`` (plain or async) until ``ok`` holds: the last value, or an AssertionError naming ``what``.

    ``tolerate``: exceptions from ``probe`` that mean "not yet" (a query while no worker runs).
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if asyncio.iscoroutine(value) or isinstance(value, Awaitable):
                value = await value
            last = value
            if ok(value):
                return value
        except tolerate as e:
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s; last: {last!r}")
        await asyncio.sleep(interval)
