"""SIGKILL of a real worker process (``moontide run APP --temporal ADDR``) mid-execution (issue 2).

A second worker process finishes what the first started: during a durable
timer, during an activity, and in the middle of a loop whose next activity
comes from ``pairs()`` order, which differs between processes unless the
sandbox orders it. History must show every completed activity exactly once.
"""

from __future__ import annotations

import asyncio
import json
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio.api.enums.v1 import EventType, PendingActivityState
from temporalio.api.history.v1 import HistoryEvent

from moontide_testing import TEMPORAL_ENTRIES, WorkerProcess, eventually
from moontide.runtime import AppRuntime, Pid

T = TypeVar("T")

#: Guard against a hang; not a speed check.
HANG = 90

WORKER_OPTIONS = {"sticky_schedule_to_start_timeout": "1s"}


@pytest.fixture
def workers(tmp_path: Path, temporal_address: str) -> Iterator[Callable[[Path], Awaitable[WorkerProcess]]]:
    """Start worker processes; every one still alive at the end is stopped."""
    started: list[WorkerProcess] = []

    async def start(app: Path) -> WorkerProcess:
        w = WorkerProcess(app, temporal_address, tmp_path / f"worker-{len(started) + 1}.log")
        started.append(w)
        return await w.start()

    yield start
    for w in started:
        w.stop()


def make_crash_app(make_app: Callable[..., Path], workflow: str, functions: dict[str, str]) -> Path:
    """Workflow ``app:wf`` (wf.lua) and functions ``app:<name>``; functions may share a file via ``file:``."""
    lines = [textwrap.dedent(TEMPORAL_ENTRIES).strip("\n"), f"    worker_options: {json.dumps(WORKER_OPTIONS)}",
             "  - name: wf\n    kind: workflow.lua\n    source: file://wf.lua\n    modules: [funcs, time]"]
    files = {"wf.lua": textwrap.dedent(workflow).lstrip("\n")}
    for name, src in functions.items():
        if src.startswith("file:"):
            path = src[len("file:"):]
        else:
            path = f"{name}.lua"
            files[path] = textwrap.dedent(src).lstrip("\n")
        lines.append(f"  - name: {name}\n    kind: function.lua\n    source: file://{path}\n    modules: [time]")
    files["app.yaml"] = "\n".join(lines) + "\n"
    return make_app(files)


async def history(rt: AppRuntime, pid: Pid) -> list[HistoryEvent]:
    return [e async for e in (await rt.handle(pid)).fetch_history_events()]


def count(evs: list[HistoryEvent], name: str) -> int:
    kind = EventType.Value("EVENT_TYPE_" + name)
    return sum(1 for e in evs if e.event_type == kind)


def completed_per_activity(evs: list[HistoryEvent]) -> dict[str, int]:
    """ActivityTaskCompleted events per activity ID."""
    ids = {e.event_id: e.activity_task_scheduled_event_attributes.activity_id
           for e in evs if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    out = {i: 0 for i in ids.values()}
    for e in evs:
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            out[ids[e.activity_task_completed_event_attributes.scheduled_event_id]] += 1
    return out


def task_workers(evs: list[HistoryEvent]) -> list[str]:
    """The identity of the worker that took each workflow task (``pid@host``)."""
    return [e.workflow_task_started_event_attributes.identity
            for e in evs if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED]


def no_task_failures(evs: list[HistoryEvent]) -> list[str]:
    return [e.workflow_task_failed_event_attributes.failure.message
            for e in evs if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED]


def task_failures_logged(*procs: WorkerProcess) -> list[str]:
    """Workflow task failures a worker logged: after the first, Temporal keeps them out of history."""
    return [line for p in procs for line in p.output().splitlines() if "Failing workflow task" in line]


async def finish(rt: AppRuntime, pid: Pid, *procs: WorkerProcess) -> tuple[Any, list[HistoryEvent]]:
    """Wait until the execution closes, or a workflow task fails (e.g. nondeterminism); result and history."""
    def over(evs: list[HistoryEvent]) -> bool:
        closed = count(evs, "WORKFLOW_EXECUTION_COMPLETED") + count(evs, "WORKFLOW_EXECUTION_FAILED")
        return closed + count(evs, "WORKFLOW_TASK_FAILED") > 0 or bool(task_failures_logged(*procs))

    evs = await eventually(lambda: history(rt, pid), over, what="the execution closed", timeout=HANG)
    assert no_task_failures(evs) == []
    assert task_failures_logged(*procs) == []
    return await asyncio.wait_for(rt.result(pid), HANG), await history(rt, pid)


STAMP = "return function(what) return 'done ' .. what end"


async def test_killed_during_sleep_a_new_worker_process_finishes(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    app = make_crash_app(make_app, """
    return function(order)
      local a = funcs.call("stamp", "before " .. order.id)
      time.sleep("2s")
      local b = funcs.call("stamp", "after " .. order.id)
      return { a, b }
    end
    """, {"stamp": STAMP})
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    pid = await rt.spawn("app:wf", None, {"id": "o-1"})
    await eventually(lambda: history(rt, pid), lambda evs: count(evs, "TIMER_STARTED") == 1, what="timer started",
                     timeout=HANG)
    first.kill()
    second = await workers(app)
    result, evs = await finish(rt, pid, first, second)
    assert result == ["done before o-1", "done after o-1"]
    assert count(evs, "TIMER_STARTED") == 1 and count(evs, "TIMER_FIRED") == 1
    assert list(completed_per_activity(evs).values()) == [1, 1]
    who = task_workers(evs)
    assert who[0].startswith(f"{first.pid}@")
    assert who[-1].startswith(f"{second.pid}@")  # the second process finished it


async def test_killed_during_an_activity_a_new_worker_process_finishes_it_once(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    app = make_crash_app(make_app, """
    return function()
      local a = funcs.call("stamp", "first")
      local slow = funcs.new():with_options{ start_to_close_timeout = "3s",
                                             retry_policy = { initial_interval = "100ms" } }
      local b = slow:call("slow", "2s")
      local c = funcs.call("stamp", "last")
      return { a, b, c }
    end
    """, {"stamp": STAMP, "slow": """
    return function(d)
      time.sleep(d)
      return "slept " .. d
    end
    """})
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    pid = await rt.spawn("app:wf")

    async def slow_started() -> bool:
        desc = await (await rt.handle(pid)).describe()
        return any(p.activity_type.name == "app:slow" and p.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
                   for p in desc.raw_description.pending_activities)

    await eventually(slow_started, bool, what="app:slow running on the first worker", timeout=HANG)
    first.kill()
    second = await workers(app)
    result, evs = await finish(rt, pid, first, second)
    assert result == ["done first", "slept 2s", "done last"]
    done = completed_per_activity(evs)
    assert len(done) == 3 and set(done.values()) == {1}
    types = {e.event_id: e.activity_task_scheduled_event_attributes.activity_type.name for e in evs
             if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED}
    attempts = [(types[a.scheduled_event_id], a.attempt) for a in (
        e.activity_task_started_event_attributes for e in evs
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED)]
    assert [t for t, _ in attempts] == ["app:stamp", "app:slow", "app:stamp"]
    assert attempts[0][1] == attempts[2][1] == 1
    assert attempts[1][1] >= 2  # slow's first attempt died with the first worker
    assert task_workers(evs)[-1].startswith(f"{second.pid}@")


#: 20 keys, inserted in an order that is not sorted.
KEYS = ["kiwi", "apple", "mango", "zebra", "delta", "bravo", "yak", "lima", "echo", "oscar",
        "tango", "hotel", "quartz", "fig", "nectar", "umbrella", "violet", "golf", "india", "juliet"]


async def test_pairs_order_survives_a_second_worker_process(
        make_app: Callable[..., Path], temporal_address: str, workers: Any) -> None:
    # Each step calls the function named by the *first* key pairs() yields,
    # so the activity types in history follow the iteration order: a
    # process-dependent order fails replay in the second process with
    # [TMPRL1100] Nondeterminism.
    keys = ", ".join(f'"{k}"' for k in KEYS)
    app = make_crash_app(make_app, f"""
    return function()
      local left = {{}}
      for _, k in ipairs({{ {keys} }}) do left[k] = true end
      local call = funcs.new():with_options{{ start_to_close_timeout = "1s",
                                              retry_policy = {{ initial_interval = "100ms" }} }}
      local order = {{}}
      while next(left) ~= nil do
        local k
        for key in pairs(left) do k = key break end
        order[#order + 1] = assert(call:call(k, k))
        left[k] = nil
      end
      return order
    end
    """, {"visit": """
    return function(k)
      time.sleep("200ms")
      return k
    end
    """, **{k: "file:visit.lua" for k in KEYS}})
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    pid = await rt.spawn("app:wf")
    await eventually(lambda: history(rt, pid), lambda evs: count(evs, "ACTIVITY_TASK_COMPLETED") >= 4,
                     what="4 activities completed", timeout=HANG)
    first.kill()
    before = count(await history(rt, pid), "ACTIVITY_TASK_COMPLETED")
    assert before < len(KEYS), "the first worker finished before the kill: nothing was replayed"
    second = await workers(app)
    result, evs = await finish(rt, pid, first, second)
    assert result == sorted(KEYS)
    scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in evs
                 if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
    assert scheduled == [f"app:{k}" for k in sorted(KEYS)]
    assert list(completed_per_activity(evs).values()) == [1] * len(KEYS)
    who = task_workers(evs)
    assert who[0].startswith(f"{first.pid}@") and who[-1].startswith(f"{second.pid}@")
