"""``moontide upgrade``: pinned executions moved to the app's newest Lua, only if their histories replay on it.

Executions run on a real dev server: each charges, ships, then parks waiting
for a message (``go``, sent by the test when it wants them to go on: a park
with no clock in it). The Lua then changes: compatibly (only what comes after
the park), so an upgrade is accepted and the executions finish with the new
behaviour, also after a worker restart; or with the two calls swapped, so it
is refused with the replay report and they finish on their old code.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from temporalio.api.enums.v1 import EventType

from moontide.devserver import running_address
from moontide.runtime import AppRuntime, Pid
from moontide.testing import client as client_of
from moontide_testing import TEMPORAL_ENTRIES, eventually, moontide, moontide_run, running

HANG = 90  # guard against a hang, not a speed check

OLD = """\
return function(order)
  local charged = funcs.call("charge", order)
  local shipped = funcs.call("ship", order)
  process.listen("go"):receive()
  return "old: " .. charged .. ", " .. shipped
end
"""

#: Only what comes after the park changes: the same commands in the same order up to it.
COMPATIBLE = OLD.replace('return "old: "', 'return "new: "')

#: Ships before it charges: history has the charge where this code ships.
SWAPPED = """\
return function(order)
  local shipped = funcs.call("ship", order)
  local charged = funcs.call("charge", order)
  process.listen("go"):receive()
  return "swapped: " .. charged .. ", " .. shipped
end
"""


def make_order_app(make_app: Callable[..., Path], *, embedded: bool = False) -> Path:
    """The app; ``embedded``: its client names no server (``moontide run`` starts its embedded one)."""
    entries = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n")
    if embedded:
        entries = entries.replace("    address: 127.0.0.1:1\n", "")
    yaml = entries + """
  - name: order
    kind: workflow.lua
    source: file://order.lua
    modules: [funcs, process, channel]
  - name: charge
    kind: function.lua
    source: "return function(o) return 'charged ' .. o end"
  - name: ship
    kind: function.lua
    source: "return function(o) return 'shipped ' .. o end"
"""
    return make_app({"app.yaml": yaml, "order.lua": OLD})


async def park(rt: AppRuntime, orders: list[str]) -> list[Pid]:
    """Executions of app:order, each waiting for its go message."""
    pids = [await rt.spawn("app:order", None, o) for o in orders]
    for pid in pids:
        await eventually(lambda pid=pid: rt.status(pid), lambda s: "receive" in str(s.get("lua", {}).get("blocking")),
                         what=f"{pid} waiting for go", timeout=HANG)
    return [p for p in pids if isinstance(p, Pid)]


async def finish(rt: AppRuntime, pid: Pid) -> Any:
    await rt.send(pid, "go", True)
    return await asyncio.wait_for(rt.result(pid), HANG)


async def event_types(rt: AppRuntime, pid: Pid) -> list[str]:
    return [EventType.Name(e.event_type) async for e in (await rt.handle(pid)).fetch_history_events()]


def upgrade_records(app: Path) -> list[Path]:
    return sorted((app / ".moontide" / "code").glob("upgrade.*.json"))


async def cli(*args: str) -> Any:
    """``moontide ARGS`` in a thread: the workers of this test serve on this event loop meanwhile."""
    return await asyncio.to_thread(moontide, *args)


async def test_a_compatible_change_upgrades_them_live_and_after_a_restart(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_order_app(make_app)
    async with running(app, temporal_address) as rt:
        live, later, kept = await park(rt, ["o1", "o2", "o3"])
        old_code = (await rt.status(live))["code"]["runs"]
        (app / "order.lua").write_text(COMPATIBLE)
        out = await cli("upgrade", "--app", str(app), "--temporal", temporal_address, str(live), str(later),
                        "-o", "json")
        assert out.returncode == 0, out.stdout + out.stderr
        reports = json.loads(out.stdout)
        assert [(r["workflow_id"], r["outcome"]) for r in reports] == \
            [(live.workflow_id, "upgraded"), (later.workflow_id, "upgraded")], reports
        new_code = reports[0]["to"]
        assert reports[0]["from"] == old_code != new_code
        assert "2 executions: 2 upgraded, 0 refused, 0 skipped" in out.stderr
        assert len(upgrade_records(app)) == 2

        # the worker that held it on the old code replays it on the new one; the app now (as `moontide status
        # --app` loads it, not the runtime serving since before the change) says so
        now = AppRuntime(app, temporal=temporal_address)
        st = await eventually(lambda: now.status(live), lambda s: s["code"]["runs"] == new_code,
                              what="the upgraded execution on the new code", timeout=HANG)
        assert st["code"] == {"started_with": old_code, "upgraded_to": new_code, "newest": new_code,
                              "versioning_behavior": "pinned", "runs": new_code, "newer_code": False}
        assert await finish(rt, live) == "new: charged o1, shipped o1"
        kept_code = (await now.status(kept))["code"]
        assert kept_code["runs"] == old_code and kept_code["upgraded_to"] is None and kept_code["newer_code"]
        table = await cli("status", "--app", str(app), "--temporal", temporal_address, str(later))
        assert f"  code:     {new_code[:12]} (pinned), upgraded from {old_code[:12]}\n" in table.stdout, table

        again = await cli("upgrade", "--app", str(app), "--temporal", temporal_address, str(later))
        assert again.returncode == 0, again.stdout + again.stderr
        assert again.stdout.startswith(f"SKIPPED app:order {later.workflow_id}: already on the newest code")

    # a new worker (no cache) reads the upgrade from the code store: the new code again
    async with running(app, temporal_address) as rt:
        assert await finish(rt, later) == "new: charged o2, shipped o2"
        assert await finish(rt, kept) == "old: charged o3, shipped o3"  # not upgraded: pinned still
        st = await rt.status(later)
    assert st["code"]["runs"] == st["code"]["upgraded_to"] == st["code"]["newest"] != st["code"]["started_with"]


async def test_a_change_that_does_not_replay_is_refused_with_the_lua_line(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_order_app(make_app)
    async with running(app, temporal_address) as rt:
        pids = await park(rt, ["o1", "o2"])
        (app / "order.lua").write_text(SWAPPED)
        out = await cli("upgrade", "--app", str(app), "--temporal", temporal_address, *map(str, pids))
        assert out.returncode == 1, out.stdout + out.stderr
        lines = out.stdout.splitlines()
        assert len(lines) == 2, out.stdout
        for pid, line in zip(pids, lines):
            assert line.startswith(f"REFUSED app:order {pid.workflow_id}: its history does not replay"), line
            assert line.endswith("order.lua:2: history has activity app:charge, code made activity app:ship"), line
        assert "2 executions: 0 upgraded, 2 refused, 0 skipped" in out.stderr
        assert upgrade_records(app) == []  # nothing written

        results = [await finish(rt, pid) for pid in pids]
        types = await event_types(rt, pids[0])
    assert results == ["old: charged o1, shipped o1", "old: charged o2, shipped o2"]
    assert "EVENT_TYPE_WORKFLOW_TASK_FAILED" not in types  # never disturbed
    assert "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED" in types  # go, and no upgrade signal
    assert types.count("EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED") == 1


async def test_upgrade_by_query_skips_what_needs_none(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_order_app(make_app)
    async with running(app, temporal_address) as rt:
        done, a, b = await park(rt, ["o0", "o1", "o2"])
        await finish(rt, done)
        (app / "order.lua").write_text(COMPATIBLE)
        queue = rt.app.task_queue(rt.app.get("app:worker"))  # this test's: the server is shared
        out = await cli("upgrade", "--app", str(app), "--temporal", temporal_address, str(done), str(a),
                        "--query", f'WorkflowType="app:order" AND TaskQueue="{queue}"', "-o", "yaml")
        assert out.returncode == 0, out.stdout + out.stderr
        reports = {r["workflow_id"]: r for r in yaml.safe_load(out.stdout)}
        # a pid and the query name ``a`` both: one report; the closed one is not running
        assert len(reports) == 3 and "3 executions: 2 upgraded, 0 refused, 1 skipped" in out.stderr, out.stderr
        assert (reports[done.workflow_id]["outcome"], reports[done.workflow_id]["reason"]) == \
            ("skipped", "not running (COMPLETED)")
        assert reports[a.workflow_id]["outcome"] == reports[b.workflow_id]["outcome"] == "upgraded"
        assert [await finish(rt, p) for p in (a, b)] == ["new: charged o1, shipped o1", "new: charged o2, shipped o2"]


async def test_an_execution_the_kubernetes_operator_started_is_refused(make_app: Callable[..., Path],
                                                                     temporal_address: str) -> None:
    """Its workers are pods reading code from their ConfigMap: a record in this code store would not move it."""
    from temporalio.client import Client as TemporalClient

    from moontide.protocol import MEMO_CODE, MEMO_K8S

    app = make_order_app(make_app)
    async with running(app, temporal_address) as rt:
        (pinned,) = await park(rt, ["o0"])
        memo = await (await rt.handle(pinned)).describe()
        digest = await memo.memo_value(MEMO_CODE)
        queue = rt.app.task_queue(rt.app.get("app:worker"))
        client = await TemporalClient.connect(temporal_address)
        handle = await client.start_workflow("app:order", "o1", id=f"k8s-{queue}", task_queue=queue,
                                             memo={MEMO_CODE: digest, MEMO_K8S: "shop/order-1"})
        (app / "order.lua").write_text(COMPATIBLE)
        out = await cli("upgrade", "--app", str(app), "--temporal", temporal_address, handle.id, "-o", "json")
        assert out.returncode == 1, out.stdout + out.stderr
        (report,) = json.loads(out.stdout)
        assert report["outcome"] == "refused" and "Kubernetes operator (Workflow shop/order-1)" in report["reason"]
        assert upgrade_records(app) == []
        await handle.terminate("test over")
        await finish(rt, pinned)


#: Goes on after a second go, and charges again in between: the new code ships again there instead.
TWICE = """\
return function(order)
  local charged = funcs.call("charge", order)
  local shipped = funcs.call("ship", order)
  process.listen("go"):receive()
  funcs.call("charge", order .. " again")
  process.listen("go"):receive()
  return "old: " .. charged .. ", " .. shipped
end
"""
TWICE_NEW = TWICE.replace('funcs.call("charge", order .. " again")', 'funcs.call("ship", order .. " again")') \
    .replace('return "old: "', 'return "new: "')


async def test_an_execution_that_goes_on_while_it_is_checked_keeps_its_code(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_order_app(make_app)
    (app / "order.lua").write_text(TWICE)

    async def calls(rt: AppRuntime, pid: Pid) -> int:
        return (await event_types(rt, pid)).count("EVENT_TYPE_ACTIVITY_TASK_COMPLETED")

    async with running(app, temporal_address) as rt:
        ahead, behind = await park(rt, ["o1", "o2"])
        await rt.send(ahead, "go", True)  # past the change: it cannot be upgraded
        await eventually(lambda: calls(rt, ahead), lambda n: n == 3, what="o1 charged again", timeout=HANG)
        (app / "order.lua").write_text(TWICE_NEW)
        upgrading = AppRuntime(app, temporal=temporal_address).upgrade([ahead, behind])
        # the reports come as they are decided: o1's refusal before o2, which replays, is recorded
        first = await upgrading.__anext__()
        assert (first.workflow_id, first.outcome) == (ahead.workflow_id, "refused"), str(first)
        assert str(first).endswith("order.lua:5: history has activity app:charge, code made activity app:ship")
        await rt.send(behind, "go", True)  # now o2 goes past the change too, on its old code
        await eventually(lambda: calls(rt, behind), lambda n: n == 3, what="o2 charged again", timeout=HANG)
        (second,) = [r async for r in upgrading]
        assert (second.workflow_id, second.outcome) == (behind.workflow_id, "refused"), str(second)
        assert "it went on while it was checked" in second.reason
        assert second.reason.endswith("order.lua:5: history has activity app:charge, code made activity app:ship")
        assert upgrade_records(app) == []  # taken back
        assert [await finish(rt, p) for p in (ahead, behind)] == ["old: charged o1, shipped o1",
                                                                 "old: charged o2, shipped o2"]


async def test_moontide_upgrade_of_an_app_that_moontide_run_serves(make_app: Callable[..., Path],
                                                                    tmp_path: Path) -> None:
    """The local stack as a user runs it: ``moontide run`` on its embedded server, the commands beside it."""
    app = make_order_app(make_app, embedded=True)
    with moontide_run(app, tmp_path / "run.log", "--no-ui"):
        spawned = moontide("spawn", "app:order", '"o1"', "--app", str(app))
        assert spawned.returncode == 0, spawned.stderr
        pid = spawned.stdout.strip()
        address = running_address(app / ".moontide")
        assert address is not None
        outside = await client_of(address)
        await eventually(lambda: outside.status(pid), lambda s: "receive" in str(s.get("lua", {}).get("blocking")),
                         what="o1 waiting for go", timeout=HANG)
        (app / "order.lua").write_text(COMPATIBLE)
        out = moontide("upgrade", "--app", str(app), pid)
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.startswith(f"UPGRADED app:order {Pid.parse(pid).workflow_id}: "), out.stdout
        assert len(upgrade_records(app)) == 1
        assert moontide("send", pid, "go", "true", "--app", str(app)).returncode == 0
        result = moontide("result", pid, "--app", str(app))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == "new: charged o1, shipped o1"
