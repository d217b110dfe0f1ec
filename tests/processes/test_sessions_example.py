"""examples/sessions against the session's Temporal dev server: the shopper's orders, and the service's restart."""

from __future__ import annotations

import shutil
from pathlib import Path

from moontide_testing import eventually
from moontide.processes import ServiceState
from moontide.runtime import AppRuntime

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sessions"


async def test_sessions_example_checks_out_two_users_and_survives_a_crash(tmp_path: Path,
                                                                         temporal_address: str) -> None:
    app = tmp_path / "sessions"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".moontide"))
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        # as `moontide run` starts it: the service is up (after the worker it depends on)
        system = rt.processes
        svc = system.service("app:sessions")
        assert svc.state == ServiceState.RUNNING
        orders = await rt.result(await rt.spawn("app:shopper", "app:processes"))
        assert orders["alice"]["amount"] == 30 and orders["bob"]["amount"] == 40
        assert all(o["charged"] and o["status"] == "settled" for o in orders.values())
        for o in orders.values():  # the workflows themselves agree
            result = await rt.result(o["order"])
            assert result["status"] == "settled" and result["charged"].startswith("ch_")

        # the handler crashes: the service restarts it, and it serves again under the same name
        first = svc.pid
        assert first is not None
        await rt.terminate(first, "chaos")
        await eventually(lambda: (svc.state, svc.pid), lambda s: s[0] == ServiceState.RUNNING and s[1] != first,
                         what="the restarted session handler")
        assert svc.restarts == 1 and "chaos" in (svc.last_error or "")
        again = await rt.result(await rt.spawn("app:shopper", "app:processes", [
            ["add_item", {"user": "carol", "sku": "mug", "price": 8}], ["checkout", {"user": "carol"}]]))
        assert again["carol"]["amount"] == 8 and again["carol"]["charged"] is True
    # stopping the app stops the service
    assert svc.state == ServiceState.STOPPED and rt.processes is None
