"""Process pids from outside the app: another AppRuntime (as the CLI makes) reaches them through Temporal.

The serving runtime (``moontide run``) owns the process hosts; a second,
non-serving runtime on the same dev server has no process of its own, so every
request goes through the ``moontide.control`` workflow on the host run's task
queue, as it would from another machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app
from moontide_testing import eventually
from moontide import errors
from moontide.runtime import AppRuntime, ProcessFailed

ECHO = """
return function(name)
  local msg = process.inbox():receive()
  return { name = name, topic = msg:topic(), from = msg:from(), data = msg:payload():data() }
end
"""
LOOP = """
return function()
  while true do
    local msg, _, err = process.inbox():receive()
    if not msg then return nil, err end
  end
end
"""
NOOP = "return function() return 1 end"


def _app(make_app: Callable[..., Path]) -> Path:
    return process_app(make_app, {"echo": ECHO, "loop": LOOP}, workflows={"noop": NOOP})


async def test_send_status_result_of_a_process_from_another_runtime(make_app: Callable[..., Path],
                                                                     temporal_address: str) -> None:
    app = _app(make_app)
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        pid = str(await rt.spawn("app:echo", "app:host", "ada"))
        outside = AppRuntime(app, temporal=temporal_address)
        assert outside.processes is None
        st = await eventually(lambda: outside.status(pid), lambda s: s["state"] != "ready", what="echo waiting")
        assert st["status"] == "RUNNING" and st["entry"] == "app:echo" and st["host"] == "app:host"
        assert st["state"] == "waiting in receive on inbox" and st["inbox"] == 0
        await outside.send(pid, "hello", {"n": [1, 2]}, sender="cli")
        assert await outside.result(pid) == {"name": "ada", "topic": "hello", "from": "cli", "data": {"n": [1, 2]}}
        done = await outside.status(pid)
        assert done["status"] == "COMPLETED" and "close_time" in done


async def test_cancel_and_terminate_from_outside_and_their_failures(make_app: Callable[..., Path],
                                                                    temporal_address: str) -> None:
    app = _app(make_app)
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        outside = AppRuntime(app, temporal=temporal_address)
        canceled, terminated = [str(await rt.spawn("app:loop", "app:host")) for _ in range(2)]
        await outside.cancel(canceled, "enough")
        with pytest.raises(ProcessFailed) as info:
            await outside.result(canceled)
        assert info.value.kind == "Canceled" and "enough" in info.value.message
        await outside.terminate(terminated, "now")
        with pytest.raises(ProcessFailed) as info:
            await outside.result(terminated)
        assert info.value.kind == "Terminated" and "now" in info.value.message
        st = await outside.status(terminated)
        assert st["status"] == "TERMINATED" and st["error"]["kind"] == "Terminated"
        # an exited process: NotFound from the host, not a hang
        with pytest.raises(errors.NotFound, match="exited"):
            await outside.send(canceled, "late", 1)


async def test_a_pid_whose_host_is_not_running_is_not_found_at_once(make_app: Callable[..., Path],
                                                                      temporal_address: str) -> None:
    app = _app(make_app)
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        live = str(await rt.spawn("app:loop", "app:host"))
    # the host run is over (and no other run had this id): nothing serves its queue
    gone = live.replace(live.split("|")[1].split(".")[0], "000000")
    outside = AppRuntime(app, temporal=temporal_address)
    for call in (outside.send(gone, "x", 1), outside.status(gone), outside.result(gone)):
        with pytest.raises(errors.NotFound, match=r"its host app:host \(run 000000\) is not running"):
            await call
