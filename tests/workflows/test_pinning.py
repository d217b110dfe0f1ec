"""Code pinning (issue 2, item 8): an execution keeps the Lua it started with across a redeploy.

``AppRuntime.spawn`` records the digest of the workflow's code (entry plus
imported libraries) in the memo; workers load code by that digest, from the
app or from the app's code store (``.moontide/code``), which keeps every
version a worker or a spawn has seen.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowExecutionStatus

from moontide_testing import TEMPORAL_ENTRIES, eventually, running
from moontide.runtime import STATE_DIR, AppRuntime, Pid
from moontide.workflows import MEMO_CODE

T = TypeVar("T")

HANG = 90  # guard against a hang, not a speed check

#: The old code sleeps (its second argument), then answers from a library it imports.
OLD_FLOW = """
local lib = require("answers")
return function(who, nap)
  time.sleep(nap)
  return lib.answer(who, "old")
end
"""

#: The new code does something else first: replaying the old history with it would fail.
NEW_FLOW = """
local lib = require("answers")
return function(who)
  funcs.call("echo", who)
  time.sleep("200ms")
  return lib.answer(who, "new")
end
"""

LIBRARY = """
return { answer = function(who, version) return version .. " code for " .. who end }
"""


def make_pinned_app(make_app: Callable[..., Path]) -> Path:
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: flow
    kind: workflow.lua
    source: file://flow.lua
    modules: [funcs, time]
    imports: {answers: answers}
  - name: answers
    kind: library.lua
    source: file://answers.lua
  - name: echo
    kind: function.lua
    source: "return function(v) return v end"
"""
    return make_app({"app.yaml": yaml, "flow.lua": OLD_FLOW, "answers.lua": LIBRARY})


async def history(rt: AppRuntime, pid: Pid) -> list[HistoryEvent]:
    return [e async for e in (await rt.handle(pid)).fetch_history_events()]


def has(evs: list[HistoryEvent], kind: int) -> bool:
    return any(e.event_type == kind for e in evs)


async def test_a_running_execution_finishes_on_its_old_code_after_a_redeploy(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_pinned_app(make_app)
    async with running(app, temporal_address) as rt:
        old_pid = await rt.spawn("app:flow", None, "first", "3s")
        await eventually(lambda: history(rt, old_pid), lambda evs: has(evs, EventType.EVENT_TYPE_TIMER_STARTED),
                         what="the old execution sleeping", timeout=HANG)
    # The worker is gone while the execution sleeps: it cannot have finished it.
    client_only = AppRuntime(app, temporal=temporal_address)
    desc = await (await client_only.handle(old_pid)).describe()
    assert desc.status == WorkflowExecutionStatus.RUNNING
    pinned = await desc.memo_value(MEMO_CODE)
    assert (app / STATE_DIR / "code" / f"{pinned}.json").exists()

    (app / "flow.lua").write_text(textwrap.dedent(NEW_FLOW).lstrip("\n"))  # redeploy
    async with running(app, temporal_address) as rt:
        # closed, or a failed task (what replaying the old history with the new code would give)
        old_events = await eventually(
            lambda: history(rt, old_pid), lambda evs: has(evs, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED)
            or has(evs, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED), what="the old execution over", timeout=HANG)
        assert not has(old_events, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)
        old_result = await asyncio.wait_for(rt.result(old_pid), HANG)
        new_pid = await rt.spawn("app:flow", None, "second")
        new_result = await asyncio.wait_for(rt.result(new_pid), HANG)
        old_events = await history(rt, old_pid)
        new_desc = await (await rt.handle(new_pid)).describe()
    assert old_result == "old code for first"
    assert new_result == "new code for second"
    assert not has(old_events, EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED)  # the new code's call never ran
    assert await new_desc.memo_value(MEMO_CODE) != pinned


async def test_a_changed_library_is_part_of_the_pinned_code(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_pinned_app(make_app)
    client_only = AppRuntime(app, temporal=temporal_address)
    # spawned while no worker runs: the spawn itself records the code version
    pid = await client_only.spawn("app:flow", None, "lib", "100ms")
    (app / "answers.lua").write_text('return { answer = function() return "changed library" end }\n')
    async with running(app, temporal_address) as rt:
        before = await asyncio.wait_for(rt.result(pid), HANG)
        after = await asyncio.wait_for(rt.result(await rt.spawn("app:flow", None, "lib", "100ms")), HANG)
    assert before == "old code for lib"
    assert after == "changed library"


async def test_an_execution_whose_code_is_lost_fails_its_task_with_a_clear_message(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_pinned_app(make_app)
    client_only = AppRuntime(app, temporal=temporal_address)
    pid = await client_only.spawn("app:flow", None, "lost", "100ms")
    for f in (app / STATE_DIR / "code").iterdir():
        f.unlink()
    (app / "flow.lua").write_text(textwrap.dedent(NEW_FLOW).lstrip("\n"))
    async with running(app, temporal_address) as rt:
        evs = await eventually(lambda: history(rt, pid),
                               lambda evs: has(evs, EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED),
                               what="a failed workflow task", timeout=HANG)
        desc = await (await rt.handle(pid)).describe()
        await rt.terminate(pid, "test over")
    (failed,) = [e.workflow_task_failed_event_attributes.failure.message for e in evs
                 if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
    assert "does not have" in failed
    assert desc.status == WorkflowExecutionStatus.RUNNING  # not failed: a worker with that code can go on


#: Two calls around a timer (the orders' shape): the result lists what ran, in order.
STEPS_FLOW = """
return function(n, nap)
  local first = funcs.call("charge", n)
  local second = funcs.call("reserve", n)
  time.sleep(nap)
  return { first, second }
end
"""
#: The calls reordered: replaying a parked execution's history on this would diverge at once.
STEPS_REORDERED = STEPS_FLOW.replace('funcs.call("charge", n)', 'funcs.call("@@", n)') \
    .replace('funcs.call("reserve", n)', 'funcs.call("charge", n)').replace('"@@"', '"reserve"')
#: The same two calls made by an imported library; its new version reorders them.
STEPS_LIBRARY = """
return { run = function(n) return { funcs.call("charge", n), funcs.call("reserve", n) } end }
"""
STEPS_LIBRARY_REORDERED = """
return { run = function(n) local first = funcs.call("reserve", n); return { first, funcs.call("charge", n) } end }
"""
VIA_LIBRARY_FLOW = """
local steps = require("steps")
return function(n, nap)
  local done = steps.run(n)
  time.sleep(nap)
  return done
end
"""
PARKED = 50


async def test_fifty_parked_executions_finish_on_their_code_after_their_calls_are_reordered(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """Issue 16's check: executions parked in a timer, the workflow's calls reordered (in its own code, and in a
    library it imports), the workers restarted on the new code: every parked execution finishes with the old
    behaviour, new executions run the new code."""
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + """
  - name: flow
    kind: workflow.lua
    source: file://flow.lua
    modules: [funcs, time]
  - name: via_library
    kind: workflow.lua
    source: file://via_library.lua
    modules: [time]
    imports: {steps: steps}
  - name: steps
    kind: library.lua
    source: file://steps.lua
    modules: [funcs]
  - name: charge
    kind: function.lua
    source: 'return function(n) return "charged " .. n end'
  - name: reserve
    kind: function.lua
    source: 'return function(n) return "reserved " .. n end'
"""
    app = make_app({"app.yaml": yaml, "flow.lua": STEPS_FLOW, "via_library.lua": VIA_LIBRARY_FLOW,
                    "steps.lua": STEPS_LIBRARY})
    nap = "25s"  # outlasts the starts and the restart below (checked: all still running then)
    async with running(app, temporal_address) as rt:
        pids = [await rt.spawn(entry, None, i, nap) for entry in ("app:flow", "app:via_library")
                for i in range(PARKED)]

        async def parked() -> bool:
            for pid in pids:
                if not has(await history(rt, pid), EventType.EVENT_TYPE_TIMER_STARTED):
                    return False
            return True

        await eventually(parked, bool, what=f"all {len(pids)} executions parked in their timer", timeout=HANG)
    client_only = AppRuntime(app, temporal=temporal_address)
    for pid in pids:
        assert (await (await client_only.handle(pid)).describe()).status == WorkflowExecutionStatus.RUNNING
    (app / "flow.lua").write_text(textwrap.dedent(STEPS_REORDERED).lstrip("\n"))
    (app / "steps.lua").write_text(textwrap.dedent(STEPS_LIBRARY_REORDERED).lstrip("\n"))
    async with running(app, temporal_address) as rt:
        results = await asyncio.wait_for(asyncio.gather(*(rt.result(pid) for pid in pids)), HANG)
        fresh = [await asyncio.wait_for(rt.result(await rt.spawn(entry, None, 99, "10ms")), HANG)
                 for entry in ("app:flow", "app:via_library")]
        failed_tasks = [pid for pid in pids
                        if has(await history(rt, pid), EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED)]
    assert results == [[f"charged {i}", f"reserved {i}"] for _ in range(2) for i in range(PARKED)]  # the old order
    assert failed_tasks == []
    assert fresh == [["reserved 99", "charged 99"]] * 2  # the new code reserves first, in both
