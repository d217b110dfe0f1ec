"""Versioning behaviors: pinned executions keep their code, auto_upgrade ones run the newest code.

``worker_options.default_versioning_behavior`` sets a worker's default and
``meta.temporal.workflow.versioning_behavior`` a workflow's own. Executions
park in a timer on the old code, the workers stop, the Lua changes (a call
added before the timer), new workers start: a pinned execution finishes on
its old code; an auto_upgrade one guarded by ``workflow.version`` replays on
the new code and takes the new path after its timer; an unguarded one cannot
replay its history and its workflow task fails, as ``moontide replay`` warned.
"""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import Callable
from pathlib import Path

from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowExecutionStatus

from moontide_testing import TEMPORAL_ENTRIES, eventually, running
from moontide.runtime import AppRuntime, load
from moontide.workflows import fetch_histories, replay

HANG = 90  # guard against a hang, not a speed check

OLD = """\
return function(who, nap)
  time.sleep(nap)
  return "old code for " .. who
end
"""

#: A call before the timer, behind workflow.version: executions that slept before the change skip it.
GUARDED = """\
return function(who, nap)
  if workflow.version("greet-first", 1, 2) == 2 then
    funcs.call("echo", who)
  end
  time.sleep(nap)
  return "new code for " .. who
end
"""

UNGUARDED = """\
return function(who, nap)
  funcs.call("echo", who)
  time.sleep(nap)
  return "new code for " .. who
end
"""


def make_versioned_app(make_app: Callable[..., Path], *, inline_activations: bool = True) -> Path:
    yaml = textwrap.dedent(TEMPORAL_ENTRIES).strip("\n") + f"""
    worker_options:
      default_versioning_behavior: auto_upgrade
      inline_activations: {str(inline_activations).lower()}
  - name: guarded
    kind: workflow.lua
    source: file://guarded.lua
    modules: [funcs, time, workflow]
  - name: unguarded
    kind: workflow.lua
    source: file://unguarded.lua
    modules: [funcs, time, workflow]
  - name: pinned
    kind: workflow.lua
    source: file://pinned.lua
    modules: [funcs, time, workflow]
    meta:
      temporal:
        workflow:
          worker: worker
          versioning_behavior: pinned
  - name: echo
    kind: function.lua
    source: "return function(v) return v end"
"""
    return make_app({"app.yaml": yaml, "guarded.lua": OLD, "unguarded.lua": OLD, "pinned.lua": OLD},
                    name=f"versioned-{inline_activations}")


async def test_pinned_keeps_its_code_auto_upgrade_runs_the_newest_behind_its_guard(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_versioned_app(make_app)
    names = ("guarded", "unguarded", "pinned")
    async with running(app, temporal_address) as rt:
        pids = {n: await rt.spawn(f"app:{n}", None, n, "3s") for n in names}

        async def parked() -> bool:
            for pid in pids.values():
                evs = [e async for e in (await rt.handle(pid)).fetch_history_events()]
                if not any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in evs):
                    return False
            return True

        await eventually(parked, bool, what="every execution asleep", timeout=HANG)

    for name, text in (("guarded", GUARDED), ("unguarded", UNGUARDED), ("pinned", UNGUARDED)):
        (app / f"{name}.lua").write_text(text)  # redeploy while they sleep

    # the check before the deploy: the unguarded change diverges, the guarded one replays
    client = await AppRuntime(app, temporal=temporal_address).client("app:client")
    reports = {r.workflow_type: r async for r in replay(load(app), await fetch_histories(
        client, workflow_ids=[pids["guarded"].workflow_id, pids["unguarded"].workflow_id]))}
    assert reports["app:guarded"].ok, str(reports["app:guarded"])
    assert reports["app:unguarded"].divergence is not None
    assert "unguarded.lua:2: history has timer 3s, code made activity app:echo" in str(reports["app:unguarded"])

    async with running(app, temporal_address) as rt:
        guarded = await asyncio.wait_for(rt.result(pids["guarded"]), HANG)
        pinned = await asyncio.wait_for(rt.result(pids["pinned"]), HANG)

        async def failed_task() -> bool:
            evs = [e async for e in (await rt.handle(pids["unguarded"])).fetch_history_events()]
            return any(e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in evs)

        await eventually(failed_task, bool, what="the unguarded execution's failed workflow task", timeout=HANG)
        failed = [e.workflow_task_failed_event_attributes async for e in
                  (await rt.handle(pids["unguarded"])).fetch_history_events()
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]
        desc = await (await rt.handle(pids["unguarded"])).describe()
        guarded_calls = [e async for e in (await rt.handle(pids["guarded"])).fetch_history_events()
                         if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
        await rt.terminate(pids["unguarded"], "test over")
        pinned_code = (await rt.status(pids["pinned"]))["code"]
        guarded_code = (await rt.status(pids["guarded"]))["code"]
    assert guarded == "new code for guarded"  # the newest code, from its next workflow task on
    assert guarded_calls == []  # behind the guard: it slept before the change, so it skipped the new call
    assert pinned == "old code for pinned"  # pinned: its own code, though the file now calls first
    assert desc.status == WorkflowExecutionStatus.RUNNING  # stuck, not failed: fix the code and it goes on
    # the failed task names the Lua line and both commands, as moontide replay does (not only TMPRL1100)
    assert failed[0].cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR
    assert "unguarded.lua:2: history has timer 3s, code made activity app:echo" in failed[0].failure.message, \
        failed[0].failure.message
    # status: the code each runs, and whether the app has newer code for it
    assert pinned_code["versioning_behavior"] == "pinned" and pinned_code["newer_code"] is True
    assert pinned_code["runs"] == pinned_code["started_with"] != pinned_code["newest"]
    assert guarded_code["versioning_behavior"] == "auto_upgrade" and guarded_code["newer_code"] is False
    assert guarded_code["runs"] == guarded_code["newest"] != guarded_code["started_with"]


async def test_a_divergence_on_threads_names_the_lua_line_too(make_app: Callable[..., Path],
                                                              temporal_address: str) -> None:
    """inline_activations: false runs activations on threads; the replay guard checks them the same way."""
    app = make_versioned_app(make_app, inline_activations=False)
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:unguarded", None, "t", "1h")

        async def parked() -> bool:
            return any([e.event_type == EventType.EVENT_TYPE_TIMER_STARTED
                        async for e in (await rt.handle(pid)).fetch_history_events()])

        await eventually(parked, bool, what="the execution asleep", timeout=HANG)
    (app / "unguarded.lua").write_text(UNGUARDED)
    async with running(app, temporal_address) as rt:
        await rt.send(pid, "wake", None)  # a workflow task: the new worker replays the history first

        async def failures() -> list[str]:
            return [e.workflow_task_failed_event_attributes.failure.message
                    async for e in (await rt.handle(pid)).fetch_history_events()
                    if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]

        failed = await eventually(failures, bool, what="a failed workflow task", timeout=HANG)
        await rt.terminate(pid, "test over")
    assert "unguarded.lua:2: history has timer 1h, code made activity app:echo" in failed[0], failed
