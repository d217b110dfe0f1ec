"""``moontide replay``: recorded histories against an app's current Lua, with the Lua line of a divergence.

Executions run on a real dev server and park in a timer; their histories are
then replayed (from the server and from JSON files) against the same code,
a compatible change and a breaking one (two calls reordered).
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from pathlib import Path

from temporalio.api.enums.v1 import EventType

from moontide_testing import TEMPORAL_ENTRIES, eventually, moontide, running
from moontide.runtime import load
from moontide.workflows import fetch_histories, history_from_file, replay

HANG = 90  # guard against a hang, not a speed check

FLOW = """\
return function(order)
  local charged = funcs.call("echo", "charge " .. order)
  local shipped = funcs.call("echo", "ship " .. order)
  time.sleep("1h")
  return { charged, shipped }
end
"""

#: Only the result changes: the same commands in the same order.
COMPATIBLE = FLOW.replace("return { charged, shipped }", "return { charged = charged, shipped = shipped }")

#: Ships before it charges; then a timer where history has the second call.
REORDERED = """\
return function(order)
  local shipped = funcs.call("echo", "ship " .. order)
  time.sleep("1h")
  local charged = funcs.call("echo", "charge " .. order)
  return { charged, shipped }
end
"""


def make_flow_app(make_app: Callable[..., Path]) -> Path:
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: order
    kind: workflow.lua
    source: file://order.lua
    modules: [funcs, time]
  - name: echo
    kind: function.lua
    source: "return function(v) return v end"
"""
    return make_app({"app.yaml": yaml, "order.lua": FLOW})


async def parked_histories(app: Path, temporal_address: str, n: int) -> list:
    async with running(app, temporal_address) as rt:
        pids = [await rt.spawn("app:order", None, f"o{i}") for i in range(n)]

        async def parked() -> bool:
            for pid in pids:
                events = [e async for e in (await rt.handle(pid)).fetch_history_events()]
                if not any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events):
                    return False
            return True

        await eventually(parked, bool, what="every execution parked in its timer", timeout=HANG)
        client = await rt.client("app:client")
        return await fetch_histories(client, workflow_ids=[p.workflow_id for p in pids])


async def reports(app: Path, histories: list) -> list:
    return [r async for r in replay(load(app), histories)]


async def test_replay_passes_the_same_and_a_compatible_code_and_names_the_line_of_a_reorder(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flow_app(make_app)
    histories = await asyncio.wait_for(parked_histories(app, temporal_address, 3), HANG)

    same = await reports(app, histories)
    assert [r.ok for r in same] == [True] * 3, [str(r) for r in same]

    (app / "order.lua").write_text(COMPATIBLE)
    assert all(r.ok for r in await reports(app, histories))

    (app / "order.lua").write_text(REORDERED)
    broken = await reports(app, histories)
    assert not any(r.ok for r in broken)
    d = broken[0].divergence
    assert d is not None, str(broken[0])
    # the first call matches (both are echo); the second command is where they part
    assert (d.history, d.code) == ("activity app:echo", "timer 1h"), str(d)
    assert d.where is not None and d.where.endswith("order.lua:3"), str(d)
    assert str(d).endswith("order.lua:3: history has activity app:echo, code made timer 1h"), str(d)
    assert "DIVERGES app:order" in str(broken[0])


async def test_a_history_that_ends_where_the_code_goes_on_is_a_divergence(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flow_app(make_app)
    histories = await asyncio.wait_for(parked_histories(app, temporal_address, 1), HANG)
    # one call fewer: where history has the second activity, the code starts the timer
    (app / "order.lua").write_text(FLOW.replace('  local shipped = funcs.call("echo", "ship " .. order)\n',
                                                "  local shipped = nil\n"))
    (report,) = await reports(app, histories)
    assert report.divergence is not None, str(report)
    assert (report.divergence.history, report.divergence.code) == ("activity app:echo", "timer 1h")
    assert report.divergence.where is not None and report.divergence.where.endswith("order.lua:4")


async def test_the_cli_replays_history_files_and_exits_1_on_a_divergence(
        make_app: Callable[..., Path], temporal_address: str, tmp_path: Path) -> None:
    app = make_flow_app(make_app)
    (history,) = await asyncio.wait_for(parked_histories(app, temporal_address, 1), HANG)
    path = tmp_path / "order-1.json"
    path.write_text(history.to_json())
    assert history_from_file(path).events == history.events

    ok = moontide("replay", "--app", str(app), "--history", str(path))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK app:order order-1"), ok.stdout

    (app / "order.lua").write_text(REORDERED)
    bad = moontide("replay", "--app", str(app), "--history", str(path))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "order.lua:3: history has activity app:echo, code made timer 1h" in bad.stdout
    assert "1 replayed, 0 OK, 1 not" in bad.stderr


async def test_the_cli_fetches_histories_by_id_from_the_server(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flow_app(make_app)
    (history,) = await asyncio.wait_for(parked_histories(app, temporal_address, 1), HANG)
    (app / "order.lua").write_text(REORDERED)
    out = moontide("replay", "--app", str(app), "--temporal", temporal_address,
                   "--workflow-id", history.workflow_id)
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"DIVERGES app:order {history.workflow_id}: " in out.stdout


def test_a_file_that_is_not_a_history_is_refused_by_name(make_app: Callable[..., Path], tmp_path: Path) -> None:
    app = make_flow_app(make_app)
    path = tmp_path / "notes.json"
    path.write_text(json.dumps({"hello": 1}))
    out = moontide("replay", "--app", str(app), "--history", str(path))
    assert out.returncode == 2
    assert f"{path}: not a history in Temporal's JSON" in out.stderr


async def test_a_changed_timer_duration_replays_as_temporal_allows(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flow_app(make_app)
    histories = await asyncio.wait_for(parked_histories(app, temporal_address, 1), HANG)
    (app / "order.lua").write_text(FLOW.replace('time.sleep("1h")', 'time.sleep("2h")'))
    assert [r.ok for r in await reports(app, histories)] == [True]
