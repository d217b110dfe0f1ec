"""A host's stop: processes are canceled, and those still running after its stop_timeout are terminated."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from _procs import process_app, running, settle

POLITE = """
return function()
  local _, _, err = process.inbox():receive()
  return "stopped: " .. err:kind()
end
"""
STUBBORN = """
return function()
  while true do pcall(time.sleep, "1h") end   -- a cancel ends one sleep; it sleeps again
end
"""


async def test_stop_cancels_then_terminates_after_the_hosts_stop_timeout(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"polite": POLITE, "stubborn": STUBBORN}, host="lifecycle: {stop_timeout: 100ms}")
    async with running(app) as system:
        assert system.stop_timeouts == {"app:host": 0.1}
        polite, stubborn = system.spawn("app:polite", "app:host"), system.spawn("app:stubborn", "app:host")
        await settle(system, polite)
        await settle(system, stubborn, "sleeping")
        host = system.host("app:host")
    assert host.exits[polite][1].value == "stopped: Canceled"
    err = host.exits[stubborn][1].error
    assert err is not None and err.kind == "Terminated" and "the host stopped" in err.message
