"""Lease election: one leader, a standby that takes over when the Lease expires or is released."""

from __future__ import annotations

import datetime as dt

from _fakekube import FakeKube

from moontide.controller.leader import LeaderElector


def _elector(fake: FakeKube, who: str) -> LeaderElector:
    return LeaderElector(fake, namespace="ops", name="moontide", lease_seconds=15, identity=who)  # type: ignore[arg-type]


async def test_one_leader_and_a_standby() -> None:
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    assert await a.try_acquire() is True
    assert await b.try_acquire() is False
    assert await a.try_acquire() is True  # renewing
    lease = fake.objects[a.url]
    assert lease["spec"]["holderIdentity"] == "a" and lease["spec"]["leaseDurationSeconds"] == 15


async def test_an_expired_lease_is_taken_over() -> None:
    fake = FakeKube()
    a, b = _elector(fake, "a"), _elector(fake, "b")
    await a.try_acquire()
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20)
    fake.objects[a.url]["spec"]["renewTime"] = old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert await b.try_acquire() is True
    assert fake.objects[a.url]["spec"]["holderIdentity"] == "b"
    assert fake.objects[a.url]["spec"]["leaseTransitions"] == 1


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
    fake.objects[a.url]["spec"]["renewTime"] = old.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stale = await fake.get(a.url)
    assert await a.try_acquire() is True

    async def stale_get(url: str) -> dict:  # type: ignore[type-arg]
        return stale

    fake.get = stale_get  # type: ignore[method-assign]
    assert await b.try_acquire() is False
    assert fake.objects[a.url]["spec"]["holderIdentity"] == "a"
