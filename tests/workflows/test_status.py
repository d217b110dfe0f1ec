"""`moontide status`: Temporal's view plus the Lua blocking point, for people and as JSON."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from _issue3 import make_flows, run_cli_async, wait_blocking
from moontide_testing import running

FLOW = """
return function(where)
  if where == "receive" then
    process.inbox():receive()
  elseif where == "sleep" then
    time.sleep("1h")
  elseif where == "activity" then
    funcs.new():with_options{ start_to_close_timeout = "1h" }:call("nap", "20s")
  end
  return { done = where }
end
"""


async def _status(app: Path, address: str, pid: object, *flags: str) -> str:
    out = await run_cli_async("status", str(pid), "--app", str(app), "--temporal", address, *flags)
    assert out.returncode == 0, out.stderr
    return out.stdout


async def test_status_shows_where_the_workflow_waits(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FLOW})
    async with running(app, temporal_address) as rt:
        sleeping = await rt.spawn("app:flow", None, "sleep")
        working = await rt.spawn("app:flow", None, "activity")
        done = await rt.spawn("app:flow", None, "nothing")
        await rt.result(done)
        await wait_blocking(rt, sleeping, "sleeping")
        await wait_blocking(rt, working, "waiting for nap")

        text = await _status(app, temporal_address, sleeping)
        assert str(sleeping) in text
        assert re.search(r"status:\s+RUNNING", text)
        assert re.search(r"workflow:\s+app:flow", text)
        assert re.search(r"now:\s+sleeping until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", text)

        text = await _status(app, temporal_address, working)
        assert "waiting for nap" in text
        assert re.search(r"pending:\s+app:nap \(attempt 1, (scheduled|started)\)", text), text

        st = json.loads(await _status(app, temporal_address, working, "--json"))
        assert st["status"] == "RUNNING"
        assert st["workflow_type"] == "app:flow"
        assert st["lua"]["entry"] == "app:flow"
        assert st["lua"]["blocking"] == "waiting for nap"
        assert st["lua"]["pending"] == ["app:nap"]
        assert [p["activity"] for p in st["pending_activities"]] == ["app:nap"]

        text = await _status(app, temporal_address, done)
        assert re.search(r"status:\s+COMPLETED", text)
        assert "closed:" in text and "now:" not in text
        assert json.loads(await _status(app, temporal_address, done, "--json"))["status"] == "COMPLETED"


async def test_status_of_a_workflow_in_receive(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local first = process.inbox():receive()
      process.listen("approval"):receive()
      return first.n
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        await wait_blocking(rt, pid, "receive")
        text = await _status(app, temporal_address, pid)
        assert re.search(r"now:\s+waiting in receive on inbox", text)
        assert re.search(r"messages:\s+0 received, 0 not yet read", text)
        await rt.send(pid, "hello", {"n": 1})
        await rt.send(pid, "other", {"n": 2})
        await wait_blocking(rt, pid, "approval (listen)")
        st = json.loads(await _status(app, temporal_address, pid, "--json"))
        assert st["lua"]["blocking"] == "waiting in receive on approval (listen)"
        assert (st["lua"]["messages_received"], st["lua"]["messages_waiting"]) == (2, 1)
        text = await _status(app, temporal_address, pid)
        assert re.search(r"messages:\s+2 received, 1 not yet read", text)
        missing = await run_cli_async("status", "{app:client@app:worker|nope}", "--app", str(app),
                                      "--temporal", temporal_address)
        assert missing.returncode != 0 and "nope" in missing.stderr


async def test_status_while_no_worker_runs(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FLOW})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None, "receive")
        await wait_blocking(rt, pid, "receive")
    text = await _status(app, temporal_address, pid)  # Temporal's view, and why the Lua one is missing
    assert re.search(r"status:\s+RUNNING", text)
    assert re.search(r"lua:\s+unavailable \(no worker answered", text), text
