"""``moontide operator``: log in, (optionally) win the Lease, then run Kopf with Moontide's handlers.

The operator never runs Lua: it compiles entry sources for their syntax
(through the entries' ``check_lua`` hook) and hashes workflow code to pin
executions, both with lupa imported here at run time, never at import time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

from ..entries import App
from .config import OperatorConfig
from .health import Health

__all__ = ["code_of", "run"]

log = logging.getLogger("moontide.operator")


def code_of(app: App, entry_id: str) -> tuple[str, str]:
    """(digest, JSON) of a Lua entry's code, exactly as a worker's code book stores it."""
    from ..lua.code import LuaCode

    code = LuaCode.from_entry(app, app.get(entry_id))
    return code.digest, json.dumps(code.to_dict(), sort_keys=True)


class _QuietWatchEvents(logging.Filter):
    """Drop Kopf's line per watch event handled ("Handler 'entry-...' succeeded."): one per CR change."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        return not (msg.startswith("Handler 'entry-") or "deployment_event" in msg) or record.levelno > logging.INFO


def quiet_logs() -> None:
    """httpx logs every request at INFO; Kopf every watch event."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("kopf.objects").addFilter(_QuietWatchEvents())


def _namespace(default: str | None) -> str:
    return os.environ.get("POD_NAMESPACE") or default or "default"


async def run(cfg: OperatorConfig, *, health_port: int = 8080) -> int:
    """Run until SIGINT/SIGTERM (0), or until leadership is lost (1)."""
    import kopf

    from ..lua import check_syntax
    from . import handlers, kube, leader, reconciler, spawning

    quiet_logs()
    health = Health(port=health_port)
    health.start()
    client = kube.Kube(kube.connection())
    elector: leader.LeaderElector | None = None
    try:
        home = _namespace(client.conn.default_namespace)
        if not cfg.clusterwide and not cfg.namespaces:
            from dataclasses import replace

            cfg = replace(cfg, namespaces=(home,))
        if cfg.leader_election:
            elector = leader.LeaderElector(client, namespace=cfg.lease_namespace or home, name=cfg.lease_name,
                                           lease_seconds=cfg.lease_seconds)
            health.set_ready(True, "standby")
            await elector.acquire()
        ctx = handlers.Context(
            kube=client, cfg=cfg,
            reconciler=reconciler.Reconciler(client, cfg, check_lua=check_syntax, code_of=code_of),
            spawner=spawning.Spawner(client, cfg, code_of=code_of))
        registry = kopf.OperatorRegistry()
        handlers.register(registry, ctx)
        ready = asyncio.Event()
        stop = asyncio.Event()
        where = "all namespaces" if cfg.clusterwide else ", ".join(cfg.namespaces)
        log.info("moontide operator watching %s (worker image %s, Temporal %s)", where, cfg.worker_image,
                 cfg.temporal_address or "from each TemporalClient")
        operator = asyncio.create_task(kopf.operator(
            registry=registry, settings=handlers.settings(), clusterwide=cfg.clusterwide,
            namespaces=list(cfg.namespaces), standalone=True, ready_flag=ready, stop_flag=stop, memo=ctx))
        watchers: set[asyncio.Future[Any]] = {operator}
        lost: asyncio.Task[None] | None = None
        if elector is not None:
            lost = asyncio.create_task(elector.keep())
            watchers.add(lost)
        readiness = asyncio.create_task(ready.wait())
        await asyncio.wait({readiness, operator}, return_when=asyncio.FIRST_COMPLETED)
        if ready.is_set():
            health.set_ready(True, "leading" if elector else "running")
        done, _ = await asyncio.wait(watchers, return_when=asyncio.FIRST_COMPLETED)
        if lost is not None and lost in done:
            stop.set()
            await asyncio.gather(operator, return_exceptions=True)
            return 1
        if lost is not None:
            lost.cancel()
        operator.result()
        return 0
    finally:
        if elector is not None:
            await elector.release()
        await client.close()
        health.stop()
