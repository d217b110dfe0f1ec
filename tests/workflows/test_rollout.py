"""The checks before a worker's Lua changes: ``check_rollout`` and ``codes_in_use``.

Executions park in a one-hour timer between two calls on a real dev server;
the workers stop and the checks read what the server holds: which executions
would move to the new code (all when ``auto_upgrade``; when ``pinned``, those
started without Moontide's code pin), whether their histories replay on it,
and which code digests the open executions are pinned to.
"""

from __future__ import annotations

import asyncio
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from moontide_testing import TEMPORAL_ENTRIES, eventually, running
from moontide.lua.code import LuaCode
from moontide.runtime import load
from moontide.workflows import check_rollout, codes_in_use
from moontide.workflows._rollout import _open_histories, quoted

HANG = 90  # guard against a hang, not a speed check

FLOW = """\
return function(order)
  funcs.call("charge", order)
  time.sleep("1h")
  funcs.call("ship", order)
  return order
end
"""

#: The two calls swapped: where history has the charge, the code ships.
SWAPPED = """\
return function(order)
  funcs.call("ship", order)
  time.sleep("1h")
  funcs.call("charge", order)
  return order
end
"""

#: A change after the timer only: the parked executions replay on it.
LATER = FLOW.replace('funcs.call("ship", order)', 'funcs.call("ship", order .. " by air")')

#: The other worker's workflow, on its own task queue.
OTHER = """\
return function()
  time.sleep("1h")
end
"""


def make_rollout_app(make_app: Callable[..., Path], name: str, flow: str, behavior: str) -> Path:
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + f"""
  - name: other_worker
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE-other
  - name: flow
    kind: workflow.lua
    source: file://flow.lua
    modules: [funcs, time]
    meta:
      temporal:
        workflow:
          worker: worker
          versioning_behavior: {behavior}
  - name: other
    kind: workflow.lua
    source: file://other.lua
    modules: [time]
    meta:
      temporal:
        workflow:
          worker: other_worker
  - name: charge
    kind: function.lua
    source: "return function(v) return v end"
  - name: ship
    kind: function.lua
    source: "return function(v) return v end"
"""
    return make_app({"app.yaml": yaml, "flow.lua": flow, "other.lua": OTHER}, name=name)


async def parked(client: Client, workflow_ids: list[str]) -> None:
    async def asleep() -> bool:
        for wid in workflow_ids:
            events = [e async for e in client.get_workflow_handle(wid).fetch_history_events()]
            if not any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in events):
                return False
        return True

    await eventually(asleep, bool, what="every execution parked in its timer", timeout=HANG)


async def listed(client: Client, task_queue: str, n: int) -> None:
    """Wait until visibility lists ``n`` running executions on the queue (it lags the starts)."""
    query = f'ExecutionStatus="Running" AND TaskQueue="{task_queue}"'
    await eventually(lambda: client.count_workflows(query), lambda c: c.count == n,
                     what=f"{n} running executions listed on {task_queue}", timeout=HANG)


async def test_auto_upgrade_executions_are_replayed_on_the_new_code_and_their_codes_are_in_use(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    v1 = make_rollout_app(make_app, "v1", FLOW, "auto_upgrade")
    client = await Client.connect(temporal_address)
    async with running(v1, temporal_address) as rt:
        pids = [await rt.spawn("app:flow", None, f"o{i}") for i in range(3)]
        other = await rt.spawn("app:other", "app:other_worker")
        await asyncio.wait_for(parked(client, [p.workflow_id for p in pids]), HANG)
    await listed(client, task_queue, 3)
    await listed(client, f"{task_queue}-other", 1)
    old = load(v1)
    swapped = load(make_rollout_app(make_app, "swapped", SWAPPED, "auto_upgrade"))

    check = await check_rollout(client, old, swapped, "app:worker")
    assert (check.ok, check.checked, len(check.reports)) == (False, 3, 3), [str(r) for r in check.reports]
    assert {r.workflow_id for r in check.reports} == {p.workflow_id for p in pids}
    for report in check.reports:
        d = report.divergence
        assert d is not None, str(report)
        assert d.where is not None and d.where.endswith("flow.lua:2"), str(d)
        assert (d.history, d.code) == ("activity app:charge", "activity app:ship"), str(d)
        assert check.entry_of[report.run_id] == "app:flow"

    assert (await check_rollout(client, old, swapped, "app:worker", sample=2)).checked == 2
    later = await check_rollout(client, old, load(make_rollout_app(make_app, "later", LATER, "auto_upgrade")),
                                "app:worker")
    assert (later.ok, later.checked) == (True, 3), [str(r) for r in later.reports]
    # nothing changed, nothing to compare, no workflow of this worker changed: nothing replayed
    assert (await check_rollout(client, old, old, "app:worker")).checked == 0
    assert (await check_rollout(client, None, swapped, "app:worker")).checked == 0
    assert (await check_rollout(client, old, swapped, "app:other_worker")).checked == 0

    # the codes in use: each queue's own
    flow_code = LuaCode.from_entry(old, old.get("app:flow")).digest
    other_code = LuaCode.from_entry(old, old.get("app:other")).digest
    assert await codes_in_use(client, old, "app:worker") == {flow_code}
    assert await codes_in_use(client, old, "app:other_worker") == {other_code}
    # values are quoted: a task queue with quotes and backslashes is one string, not a broken query
    weird = 'q"it\'s\\'
    assert (await client.count_workflows(f"TaskQueue={quoted(weird)}")).count == 0

    # an execution that closes between the listing and its history is left out
    stale = [wf async for wf in client.list_workflows(f'TaskQueue="{task_queue}" AND ExecutionStatus="Running"')]
    for pid in pids:
        await client.get_workflow_handle(pid.workflow_id).terminate("test over")
    assert await _open_histories(client, stale) == []
    await listed(client, task_queue, 0)
    assert await codes_in_use(client, old, "app:worker") == set()
    assert await codes_in_use(client, old, "app:other_worker") == {other_code}
    await client.get_workflow_handle(other.workflow_id).terminate("test over")


async def test_pinned_executions_move_only_when_started_without_the_code_pin(
        make_app: Callable[..., Path], temporal_address: str, task_queue: str) -> None:
    v1 = make_rollout_app(make_app, "v1", FLOW, "pinned")
    client = await Client.connect(temporal_address)
    plain = f"plain-{uuid.uuid4().hex[:8]}"
    async with running(v1, temporal_address) as rt:
        pids = [await rt.spawn("app:flow", None, f"o{i}") for i in range(2)]
        await asyncio.wait_for(parked(client, [p.workflow_id for p in pids]), HANG)
        await listed(client, task_queue, 2)
        old = load(v1)
        swapped = load(make_rollout_app(make_app, "swapped", SWAPPED, "pinned"))
        pinned_only = await check_rollout(client, old, swapped, "app:worker")
        # a plain Temporal client: no code pin, so it runs the worker's newest code
        await client.start_workflow("app:flow", "p", id=plain, task_queue=task_queue)
        await asyncio.wait_for(parked(client, [plain]), HANG)
    await listed(client, task_queue, 3)
    assert (pinned_only.ok, pinned_only.checked) == (True, 0), [str(r) for r in pinned_only.reports]

    check = await check_rollout(client, old, swapped, "app:worker")
    assert (check.ok, check.checked) == (False, 1)
    (report,) = check.reports
    assert report.workflow_id == plain and check.entry_of[report.run_id] == "app:flow"
    assert report.divergence is not None and report.divergence.where is not None
    assert report.divergence.where.endswith("flow.lua:2"), str(report)
    # the plain one adds no code to keep
    assert await codes_in_use(client, old, "app:worker") == {LuaCode.from_entry(old, old.get("app:flow")).digest}
    for wid in (plain, *(p.workflow_id for p in pids)):
        await client.get_workflow_handle(wid).terminate("test over")
