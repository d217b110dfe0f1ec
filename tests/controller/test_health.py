"""The pods' /healthz fails once the event loop stops answering (the HTTP server runs on its own thread)."""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

from moontide.k8s.health import Health
from moontide_testing import free_port


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def test_healthz_fails_while_the_event_loop_is_blocked_and_recovers_after() -> None:
    port = free_port()
    health = Health(port=port, stuck_after=0.5)
    health.start()
    try:
        await asyncio.sleep(0.1)
        assert get(port, "/healthz") == (200, "ok\n")
        seen: list[tuple[int, str]] = []
        probe = threading.Thread(target=lambda: (time.sleep(1.2), seen.append(get(port, "/healthz"))))
        probe.start()
        time.sleep(1.8)  # the loop is blocked: no beat for 1.8 s
        probe.join()
        assert seen and seen[0][0] == 503 and seen[0][1].startswith("event loop stuck for"), seen
        await asyncio.sleep(0.1)  # the loop runs again: it beats at once
        assert get(port, "/healthz") == (200, "ok\n")
    finally:
        health.stop()


def test_without_an_event_loop_liveness_is_the_flag_alone() -> None:
    port = free_port()
    health = Health(port=port, stuck_after=0.1)
    health.start()
    try:
        time.sleep(0.3)
        assert get(port, "/healthz")[0] == 200
        health.alive = False
        assert get(port, "/healthz") == (503, "dead\n")
    finally:
        health.stop()
