"""Kopf wiring: which watch events and causes call the reconciler and the spawner.

``register(registry, ctx)`` adds every handler to a Kopf registry (never the
global one, so importing this module changes nothing):

- entry CRs (8 kinds): events poke the namespace's reconciler
  (``reconciler.Reconciler``); the Deployments the operator made: their
  status updates their owner's Ready (a deleted or edited one is applied again);
- Workflow: create/resume/update start the execution once and deliver new
  signals; a daemon per CR waits for the execution to close and writes the
  outcome, and returns by itself then or at Kopf's stop signal; delete (behind
  the finalizer ``moontide.io/finalizer``) cancels, terminates or abandons the
  execution by ``spec.deletionPolicy``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import kopf

from .. import errors
from . import spawning
from ..k8s.kinds import ENTRY_RESOURCES, GROUP, LABEL_MANAGED_BY, MANAGED_BY, VERSION, WORKFLOW
from ..k8s.config import OperatorConfig
from ..k8s.kube import Kube
from .reconciler import Reconciler

__all__ = ["Context", "register", "settings"]

log = logging.getLogger("moontide.operator")
T = TypeVar("T")


@dataclass
class Context:
    """What the handlers share: the API client, the reconciler and the spawner."""

    kube: Kube
    cfg: OperatorConfig
    reconciler: Reconciler
    spawner: spawning.Spawner
    #: uid -> set when the Workflow's execution has started (wakes its daemon at once).
    started: dict[str, asyncio.Event] = field(default_factory=dict)

    def started_event(self, uid: str) -> asyncio.Event:
        return self.started.setdefault(uid, asyncio.Event())


def settings() -> kopf.OperatorSettings:
    """Kopf settings: state in moontide.io annotations (not in status), short batching, our finalizer."""
    s = kopf.OperatorSettings()
    s.persistence.finalizer = f"{GROUP}/finalizer"
    s.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    s.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=GROUP, key="last-handled-configuration")
    s.batching.batch_window = 0.02
    s.posting.level = logging.INFO
    s.watching.server_timeout = 300
    s.watching.client_timeout = 330
    return s


def register(registry: kopf.OperatorRegistry, ctx: Context) -> None:
    """Add every Moontide handler to ``registry``."""

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        from ..k8s.kube import login_info

        return login_info()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await ctx.reconciler.stop()

    for resource in ENTRY_RESOURCES:
        @kopf.on.event(GROUP, VERSION, resource.plural, registry=registry, id=f"entry-{resource.plural}")
        async def entry_event(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002 - Kopf's name
            ctx.reconciler.observe(type, body)

    @kopf.on.event("apps", "v1", "deployments", labels={LABEL_MANAGED_BY: MANAGED_BY}, registry=registry)
    async def deployment_event(type: str | None, body: kopf.Body, **_: Any) -> None:  # noqa: A002 - Kopf's name
        # the owner's Ready from its pods; a deleted or edited Deployment is applied again
        ctx.reconciler.deployment_event(type, body)

    # -- Workflow -------------------------------------------------------------------------
    async def spawn(body: kopf.Body, uid: str, **_: Any) -> None:
        status = dict(body.get("status") or {})
        if status.get("phase") in spawning.TERMINAL:
            return
        doc = _plain(body)
        if not status.get("runId"):
            try:
                fields = await ctx.spawner.start(doc)
            except spawning.Waiting as e:
                if status.get("message") != e.message or status.get("phase") != "Pending":
                    await ctx.spawner.write_status(doc, {"phase": "Pending", "message": e.message})
                raise kopf.TemporaryError(e.message, delay=e.delay) from None
            except errors.Invalid as e:  # the spec itself is wrong: fix the CR (a new one) rather than retry
                await ctx.spawner.write_status(doc, {"phase": "Failed", "message": e.message, "errorKind": e.kind})
                kopf.warn(body, reason="Invalid", message=e.message)
                raise kopf.PermanentError(e.message) from None
            kopf.info(body, reason="Started", message=f"started {fields['pid']} (run {fields['runId']})")
            doc["status"] = {**status, **fields}
            ctx.started_event(uid).set()
        try:
            before = len(doc["status"].get("signals") or [])
            after = await ctx.spawner.deliver_signals(doc, workflow_id_=doc["status"]["workflowId"])
        except spawning.Waiting as e:
            raise kopf.TemporaryError(e.message, delay=e.delay) from None
        for record in after[before:]:
            if "error" in record:
                kopf.warn(body, reason="SignalNotDelivered", message=f"{record['name']}: {record['error']}")
            else:
                kopf.info(body, reason="SignalDelivered", message=f"signal {record['name']} delivered")

    for cause, decorator in (("create", kopf.on.create), ("resume", kopf.on.resume), ("update", kopf.on.update)):
        decorator(GROUP, VERSION, WORKFLOW.plural, registry=registry, id=f"spawn-{cause}",
                  backoff=2.0)(spawn)

    # The daemon exits by itself once the execution closed (it wrote the final phase) and within moments of
    # Kopf's stop signal (the operator stopping, the CR deleted or final): it races every wait against
    # ``stopped``, so Kopf never has to cancel it. cancellation_backoff is the grace Kopf gives before it would.
    @kopf.daemon(GROUP, VERSION, WORKFLOW.plural, registry=registry, id="watch", cancellation_backoff=5.0,
                 cancellation_timeout=1.0, when=lambda status, **_: status.get("phase") not in spawning.TERMINAL)
    async def watch(body: kopf.Body, uid: str, stopped: kopf.DaemonStopped, **_: Any) -> None:
        started = ctx.started_event(uid)
        try:
            while not (body.get("status") or {}).get("runId"):
                if started.is_set():
                    await stopped.wait(0.05)  # the status with the run is on its way to this body
                else:
                    await _unless_stopped(started.wait(), stopped, timeout=1.0)
                if stopped:
                    return
            delay = 1.0
            while not stopped:
                if (body.get("status") or {}).get("phase") in spawning.TERMINAL:
                    return
                try:
                    waited = await _unless_stopped(ctx.spawner.wait(_plain(body)), stopped,
                                                   grace=lambda: (body.get("status") or {}).get("phase")
                                                   in spawning.TERMINAL)
                    if waited is None:
                        return  # stopped: a resumed daemon (this operator or the next) watches again
                    fields = waited.result()
                    message = f"execution {fields['phase'].lower()}: {fields.get('message', '')}"
                    if fields["phase"] == "Succeeded":
                        kopf.info(body, reason=fields["phase"], message=message)
                    else:
                        kopf.warn(body, reason=fields["phase"], message=message)
                    return
                except spawning.Waiting as e:
                    log.info("Workflow %s: %s", body.metadata.name, e.message)
                except Exception as e:  # Temporal unreachable, a connection reset: keep watching
                    log.warning("Workflow %s: waiting for the execution failed (retry in %.0fs): %s",
                                body.metadata.name, delay, e)
                await stopped.wait(delay)
                delay = min(delay * 2, 30.0)
        finally:
            ctx.started.pop(uid, None)

    @kopf.on.delete(GROUP, VERSION, WORKFLOW.plural, registry=registry, id="stop", backoff=5.0)
    async def stop(body: kopf.Body, **_: Any) -> None:
        try:
            done = await ctx.spawner.stop(_plain(body))
        except Exception as e:
            raise kopf.TemporaryError(f"cannot apply the deletion policy yet: {e}", delay=5.0) from None
        kopf.info(body, reason="Deleted", message=f"deletion policy {body.spec.get('deletionPolicy') or 'Cancel'}: {done}")


async def _unless_stopped(aw: Awaitable[T], stopped: kopf.DaemonStopped, *, timeout: float | None = None,
                          grace: Callable[[], bool] = lambda: False) -> asyncio.Future[T] | None:
    """Await ``aw`` until it is done (its finished task, to take the result or exception from), Kopf stops the
    daemon or ``timeout`` passes (None; ``aw`` is cancelled). When stopped while ``grace()`` holds (the final
    status is written, the rest is a moment's work), ``aw`` gets a second to finish."""
    task = asyncio.ensure_future(aw)
    stop = asyncio.ensure_future(stopped.wait())
    try:
        await asyncio.wait({task, stop}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and stopped and grace():
            await asyncio.wait({task}, timeout=1.0)
        return task if task.done() else None
    finally:
        stop.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A plain-dict snapshot of a Kopf body (live views change under us)."""
    import copy

    return copy.deepcopy(dict(body))
