"""examples/workflow_concepts and examples/process_service: Wippy's Workflows page
(en/concepts/workflows.md) runs as written.

Its three snippets (charge/sleep/check, the saga, the signal wait) and its ``process.service``
example, each with the page's YAML, on the session's real Temporal dev server; each workflow's
history is then replayed in a fresh Python process ("If the process crashes, execution replays
from history - same code, same results").
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType

from moontide_testing import eventually, replay_in_fresh_process
from moontide import errors
from moontide.processes import ServiceState
from moontide.runtime import AppRuntime, Pid

EXAMPLES = Path(__file__).parent.parent / "examples"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """A copy of the example (its .moontide/ state stays out of the repository)."""
    return Path(shutil.copytree(EXAMPLES / "workflow_concepts", tmp_path / "workflow_concepts"))


async def activities(rt: AppRuntime, pid: Pid) -> list[str]:
    return [e.activity_task_scheduled_event_attributes.activity_type.name
            async for e in (await rt.handle(pid)).fetch_history_events()
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


async def test_charge_sleep_check_reaches_its_durable_24h_timer(app: Path, temporal_address: str) -> None:
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        pid = await rt.spawn("app.workflows:order_processor", "app:temporal_worker", {"amount": 10, "card": "visa"})
        # charged, then asleep for a day in a durable timer (the test cannot wait a day: the
        # dev server does not skip time; what follows the sleep is the same code path as in
        # examples/orders, whose tests run it with a short sleep)
        status = await eventually(lambda: rt.status(pid), lambda s: "sleeping until" in str(s.get("lua")),
                                  what="the 24h sleep")
        assert await activities(rt, pid) == ["app.api:charge_card"]
        timers = [e.timer_started_event_attributes async for e in (await rt.handle(pid)).fetch_history_events()
                  if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED]
        assert [t.start_to_fire_timeout.ToSeconds() for t in timers] == [24 * 3600]
        assert status["status"] == "RUNNING"
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
        await rt.terminate(pid)


async def test_the_saga_compensates_as_the_page_writes_it(app: Path, temporal_address: str) -> None:
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        order = {"id": "o-1", "address": "1 Main St"}
        ok = await rt.spawn("app.workflows:order_saga", "app:temporal_worker", ["book", "pen"], 25, order)
        assert await rt.result(ok) == {"inventory": {"id": "rsv_2"}, "payment": {"id": "pay_25"},
                                       "shipping": {"id": "shp_o-1", "tracking": "trk_o-1"}}
        # shipping fails: the payment is refunded and the reservation released, then the error returned
        failing = await rt.spawn("app.workflows:order_saga", "app:temporal_worker", ["book"], 25, {"id": "o-2"})
        with pytest.raises(errors.MoontideError, match="no shipping address for order o-2"):
            await rt.result(failing)
        assert await activities(rt, failing) == ["app.inventory:reserve", "app.payments:charge",
                                                 "app.shipping:create", "app.payments:refund",
                                                 "app.inventory:release"]
        # the charge is declined: only the reservation is undone
        declined = await rt.spawn("app.workflows:order_saga", "app:temporal_worker", ["book"], 5000, order)
        with pytest.raises(errors.MoontideError, match="card declined for 5000"):
            await rt.result(declined)
        assert await activities(rt, declined) == ["app.inventory:reserve", "app.payments:charge",
                                                  "app.inventory:release"]
        for pid in (ok, failing, declined):
            assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_the_signal_wait_as_the_page_writes_it(app: Path, temporal_address: str) -> None:
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        approved = await rt.spawn("app.workflows:approval", "app:temporal_worker", {"id": "r-1", "order_id": "o-1"})
        rejected = await rt.spawn("app.workflows:approval", "app:temporal_worker", {"id": "r-2", "order_id": "o-2"})
        for pid in (approved, rejected):
            await eventually(lambda p=pid: rt.status(p), lambda s: "receive" in str(s.get("lua")),
                             what="the wait for a signal")
        await rt.send(approved, "update", {"approved": True})
        # the page's own "Starting Workflows" message carries no `approved`: a rejection
        await rt.send(rejected, "update", {"status": "approved"})
        for pid in (approved, rejected):
            assert await rt.result(pid) is None
        assert await activities(rt, approved) == ["app.approvals:submit", "app.orders:fulfill"]
        assert await activities(rt, rejected) == ["app.approvals:submit", "app.notifications:send_rejection"]
        for pid in (approved, rejected):
            assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_the_process_service_runs_its_process_without_a_modules_list(tmp_path: Path) -> None:
    app = Path(shutil.copytree(EXAMPLES / "process_service", tmp_path / "process_service"))
    rt = AppRuntime(app, serve=True)
    try:
        # bounded: a handler that keeps failing would have the service retried for minutes
        await asyncio.wait_for(rt.start(), 60)
        svc = rt.processes.service("app:session_manager")
        await eventually(lambda: svc.state, lambda s: s == ServiceState.RUNNING, what="the service running")
        pid = await eventually(lambda: rt.processes.registry.names.get("sessions"), lambda p: p is not None,
                               what="the handler registered")
        assert pid == svc.pid
        for item in ("book", "pen"):
            await rt.send(pid, "add", {"user": "ana", "item": item})
        await rt.send(pid, "stop", {})
        assert await rt.processes.result(pid) == {"carts": {"ana": 2}}
        await eventually(lambda: svc.state, lambda s: s == ServiceState.EXITED, what="a clean exit")
        assert svc.last_error is None
    finally:
        await rt.stop()
