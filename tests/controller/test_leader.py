"""Lease election: one leader, a standby that takes over when the Lease expires or is released."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from _fakekube import FakeKube

from moontide.controller.leader import LeaderElector

LEASE = "/apis/coordination.k8s.io/v1/namespaces/ops/leases/moontide"


def _elector(fake: FakeKube, who: str) -> LeaderElector:
    return LeaderElector(fake, namespace="ops", name="moontide", lease_seconds=15, identity=who)  # type: ignore[arg-type]


async def test_one_leader_and_a_standby() -> None:
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    assert await a.try_acquire() is True  # renewing
    lease = fake.objects[LEASE]
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15


async def test_an_expired_lease_is_taken_over() -> None:
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    await a.try_acquire()
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20)
    fake.objects[LEASE]["spec"]["renewTime"] = old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert await b.try_acquire() is True
    assert fake.objects[LEASE]["spec"]["holderIdentity"] == "b"
    assert fake.objects[LEASE]["spec"]["leaseTransitions"] == 1


async def test_a_released_lease_is_free_at_once() -> None:
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    await a.try_acquire()
    await a.release()
    assert await b.try_acquire() is True


async def test_a_stale_write_loses() -> None:
    """b saw the Lease expired, but a renewed it meanwhile: b's write carries an old resourceVersion."""
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    await a.try_acquire()
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20)
    fake.objects[LEASE]["spec"]["renewTime"] = old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stale = json.loads(json.dumps(fake.objects[LEASE]))
    assert await a.try_acquire() is True

    async def stale_get(*_: Any, **__: Any) -> dict[str, Any]:
        return stale

    fake.get = stale_get  # type: ignore[method-assign]
    assert await b.try_acquire() is False
    assert fake.objects[LEASE]["spec"]["holderIdentity"] == "a"
