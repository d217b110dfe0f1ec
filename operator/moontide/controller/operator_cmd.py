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
from ..k8s.config import OperatorConfig
from ..k8s.health import Health

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
    """httpx logs every request at INFO (httpcore each step of it at DEBUG); Kopf every watch event."""
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.INFO)
    logging.getLogger("kopf.objects").addFilter(_QuietWatchEvents())


def _namespace(default: str | None) -> str:
    return os.environ.get("POD_NAMESPACE") or default or "default"


async def can_i(client: Any, verb: str, resource: str, group: str = "") -> bool:
    """Whether this operator may ``verb`` ``resource`` cluster-wide (a SelfSubjectAccessReview, which every
    authenticated user may create); True when the API server cannot say."""
    from ..k8s.kube import KubeError

    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
              "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "group": group}}}
    try:
        answer = await client.create(review)
    except (KubeError, OSError) as e:
        log.debug("cannot review access to %s %s: %s", verb, resource, e)
        return True
    return bool(((answer or {}).get("status") or {}).get("allowed", True))


async def kopf_settings(client: Any, cfg: OperatorConfig) -> Any:
    """Kopf's settings; cluster scanning off when RBAC does not allow it.

    Kopf lists and watches CustomResourceDefinitions (to notice kinds installed later) and, when it watches
    given namespaces, Namespaces. Forbidden, it retries for about 54 s before it falls back and handles
    anything; with scanning off it starts at once with what discovery shows and the namespaces it was given.
    """
    from . import handlers

    settings = handlers.settings()
    needed = [("customresourcedefinitions", "apiextensions.k8s.io")]
    if not cfg.clusterwide:
        needed.append(("namespaces", ""))
    missing = [f"{verb} {resource}" for resource, group in needed for verb in ("list", "watch")
               if not await can_i(client, verb, resource, group)]
    if missing:
        settings.scanning.disabled = True
        log.warning("not allowed to %s cluster-wide: Kopf will not notice CRDs (or namespaces) created after it "
                    "started (the Helm chart grants these)", ", ".join(missing))
    return settings


async def run(cfg: OperatorConfig, *, health_port: int = 8080) -> int:
    """Run until SIGINT/SIGTERM (0), or until leadership is lost (1).

    A signal stops Kopf through its stop flag (Kopf's own signal handling would wait 5 s more for that
    flag's waiter), then the Lease is released, so the next replica or pod leads at once.
    """
    import signal

    import kopf

    from ..lua import check_syntax
    from . import handlers, leader, reconciler, spawning
    from .rollout import Rollouts
    from ..k8s import kube

    quiet_logs()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()

    def take_signals() -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    take_signals()
    health = Health(port=health_port)
    health.start()
    client = kube.Kube()
    elector: leader.LeaderElector | None = None
    try:
        home = _namespace(client.config.context.namespace)
        if not cfg.clusterwide and not cfg.namespaces:
            from dataclasses import replace

            cfg = replace(cfg, namespaces=(home,))
        if cfg.leader_election:
            elector = leader.LeaderElector(client, namespace=cfg.lease_namespace or home, name=cfg.lease_name,
                                           lease_seconds=cfg.lease_seconds)
            health.set_ready(True, "standby")
            if not await _first(elector.acquire(), stop):
                return 0
        spawner = spawning.Spawner(client, cfg, code_of=code_of)
        ctx = handlers.Context(
            kube=client, cfg=cfg,
            reconciler=reconciler.Reconciler(client, cfg, check_lua=check_syntax, code_of=code_of,
                                             rollouts=Rollouts(spawner.client, sample=cfg.replay_sample)),
            spawner=spawner)
        registry = kopf.OperatorRegistry()
        handlers.register(registry, ctx)
        settings = await kopf_settings(client, cfg)
        ready = asyncio.Event()
        where = "all namespaces" if cfg.clusterwide else ", ".join(cfg.namespaces)
        log.info("moontide operator watching %s (worker image %s, Temporal %s)", where, cfg.worker_image,
                 cfg.temporal_address or "from each TemporalClient")
        operator = asyncio.create_task(kopf.operator(
            registry=registry, settings=settings, clusterwide=cfg.clusterwide,
            namespaces=list(cfg.namespaces), standalone=True, ready_flag=ready, stop_flag=stop, memo=ctx))
        watchers: set[asyncio.Future[Any]] = {operator}
        lost: asyncio.Task[None] | None = None
        if elector is not None:
            lost = asyncio.create_task(elector.keep())
            watchers.add(lost)
        readiness = asyncio.create_task(ready.wait())
        await asyncio.wait({readiness, operator}, return_when=asyncio.FIRST_COMPLETED)
        take_signals()  # Kopf installed its own handlers as it started
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
        health.set_ready(False, "stopping")
        if elector is not None:
            await elector.release()
        await client.close()
        health.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _first(aw: Any, stop: asyncio.Event) -> bool:
    """Await ``aw`` unless ``stop`` is set first (then False, ``aw`` cancelled)."""
    task = asyncio.ensure_future(aw)
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if task.done():
        task.result()
        return True
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return False
