"""The orders example end to end on a real Temporal dev server."""

from __future__ import annotations

from pathlib import Path

import pytest

from moontide import errors
from moontide.runtime import AppRuntime

ORDERS = Path(__file__).parent.parent / "examples" / "orders"


async def test_order_processor_refunds_a_failed_charge(temporal_address: str) -> None:
    async with AppRuntime(ORDERS, temporal=temporal_address, serve=True) as rt:
        pid = await rt.spawn("app.workflows:order_processor", None,
                             {"payment": {"amount": 10, "status": "failed"}, "wait": "100ms"})
        result = await rt.result(pid)
    assert result["status"] == "failed"
    assert result["refunded"] == result["charged"]


async def test_saga_compensates_in_reverse_order(temporal_address: str) -> None:
    async with AppRuntime(ORDERS, temporal=temporal_address, serve=True) as rt:
        pid = await rt.spawn("app.workflows:order_saga", None,
                             {"sku": "book", "payment": {"amount": 10}, "fail": {"ship": True}})
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(pid)
    assert info.value.kind == "Unavailable"
    assert "ship failed: carrier refused rsv_book" in info.value.message
    assert info.value.details == {"compensated": ["reserve", "charge", "undo charge", "undo reserve"]}
