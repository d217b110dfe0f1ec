"""Leader election through a coordination.k8s.io/v1 Lease: one active operator among replicas.

Kopf's own peering pauses *every* operator of equal priority, so two equal
replicas would both stop; a Lease gives one leader and a warm standby instead.
The standby polls the Lease and takes it over once the leader stops renewing
it for ``lease_seconds``; a leader that cannot renew in time steps down (the
operator exits and Kubernetes restarts it as a standby). Writes use the
Lease's resourceVersion, so two candidates can never both win. A leader that
stops cleanly releases the Lease, so the standby takes over at once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
from typing import Any

from lightkube.resources.coordination_v1 import Lease

from ..k8s.health import metric
from ..k8s.kube import Conflict, Kube, KubeError, NotFound

__all__ = ["LeaderElector"]

log = logging.getLogger("moontide.operator")
_LEADER = metric("Gauge", "moontide_operator_leader", "1 when this replica is the active operator.")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _micro(t: dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return dt.datetime.strptime(text, fmt).replace(tzinfo=dt.timezone.utc)
        except ValueError:
            continue
    return None


class LeaderElector:
    """Acquire, renew and release one Lease."""

    def __init__(self, kube: Kube, *, namespace: str, name: str, lease_seconds: float = 15.0,
                 identity: str | None = None) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.lease_seconds = lease_seconds
        self.identity = identity or os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"
        self.is_leader = False
        #: How often a standby looks at the Lease: a released one is taken within this long.
        self.poll_seconds = min(1.0, lease_seconds / 5)

    def _body(self, lease: dict[str, Any] | None, transitions: int) -> dict[str, Any]:
        now = _micro(_now())
        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": int(self.lease_seconds),
                "renewTime": now, "leaseTransitions": transitions}
        spec["acquireTime"] = now if not self.is_leader else ((lease or {}).get("spec") or {}).get("acquireTime", now)
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if lease is not None:
            meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta, "spec": spec}

    async def try_acquire(self) -> bool:
        """One attempt: take the Lease when it is free, expired or ours. True when we hold it."""
        try:
            lease = await self.kube.get(Lease, self.name, namespace=self.namespace)
        except NotFound:
            try:
                await self.kube.create(self._body(None, 0))
            except Conflict:
                return False
            self.is_leader = True
            return True
        spec = lease.get("spec") or {}
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = float(spec.get("leaseDurationSeconds") or self.lease_seconds)
        free = not holder or renewed is None or (_now() - renewed).total_seconds() > duration
        if holder != self.identity and not free:
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if holder == self.identity else 1)
        try:
            await self.kube.replace(self._body(lease, transitions))
        except Conflict:
            return False
        self.is_leader = True
        return True

    async def acquire(self) -> None:
        """Wait until this replica leads."""
        announced = False
        while not await self._attempt():
            if not announced:
                log.info("standing by: another replica holds the Lease %s/%s", self.namespace, self.name)
                announced = True
            await asyncio.sleep(self.poll_seconds)
        _LEADER.set(1)
        log.info("leading as %s (Lease %s/%s)", self.identity, self.namespace, self.name)

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire()
        except (KubeError, OSError) as e:
            log.warning("leader election: %s", e)
            return False
        except Exception as e:  # httpx transport errors
            log.warning("leader election: %s", e)
            return False

    async def keep(self) -> None:
        """Renew until renewing fails for a whole lease duration; then return (leadership lost)."""
        last = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if await self._attempt():
                last = asyncio.get_running_loop().time()
            elif asyncio.get_running_loop().time() - last > self.lease_seconds * 2 / 3:
                self.is_leader = False
                _LEADER.set(0)
                log.error("lost the Lease %s/%s: stepping down", self.namespace, self.name)
                return

    async def release(self) -> None:
        """Give the Lease up so a standby takes over at once."""
        if not self.is_leader:
            return
        try:
            lease = await self.kube.get(Lease, self.name, namespace=self.namespace)
            if (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                lease["spec"]["holderIdentity"] = None
                lease["spec"]["renewTime"] = _micro(dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc))
                await self.kube.replace(lease)
        except Exception as e:
            log.warning("releasing the Lease: %s", e)
        self.is_leader = False
        _LEADER.set(0)
