"""``meta.temporal.activity.local: true`` runs a function as a real Temporal local activity.

en/temporal/activities.md, "Local Activities". A local activity runs in the calling workflow's worker
and is recorded in the workflow's history as a marker, with no activity task on any queue. On replay
the marker's result is used: the function does not run again. The replay is checked in a fresh
worker process (``moontide run``) after the first one was SIGKILLed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

from moontide_testing import TEMPORAL_ENTRIES, WorkerProcess, eventually, running
from moontide.runtime import AppRuntime, Pid

HANG = 90

ENTRIES = TEMPORAL_ENTRIES + """\
    worker_options: {sticky_schedule_to_start_timeout: 1s}
  - name: validate
    kind: function.lua
    source: |
      return function(order)
        logger.info("validating " .. order.id)
        if order.bad then
          return nil, errors.new({ kind = "Invalid", message = "bad order " .. order.id })
        end
        return { id = order.id, token = uuid.v4() }
      end
    modules: [logger, uuid, errors]
    meta:
      temporal:
        activity:
          worker: worker
          local: true
  - name: quick
    kind: workflow.lua
    source: |
      return function(order, opts)
        local call = funcs.call
        if opts then
          local executor = funcs.new():with_options(opts)
          call = function(...) return executor:call(...) end
        end
        local v, err = call("app:validate", order)
        if err then return { kind = err:kind(), message = err:message() } end
        return v
      end
    modules: [funcs]
  - name: waits
    kind: workflow.lua
    source: |
      return function(order)
        local v = funcs.call("app:validate", order)
        local go = process.listen("go"):receive()
        return { token = v.token, go = go }
      end
    modules: [funcs, process, channel]
"""


def events_of(evs: list[HistoryEvent], name: str) -> list[HistoryEvent]:
    kind = EventType.Value("EVENT_TYPE_" + name)
    return [e for e in evs if e.event_type == kind]


def marker_results(evs: list[HistoryEvent]) -> list[Any]:
    """The results the local activity markers recorded."""
    out = []
    for e in events_of(evs, "MARKER_RECORDED"):
        attrs = e.marker_recorded_event_attributes
        assert attrs.marker_name == "core_local_activity"
        if "result" in attrs.details:
            out.append(json.loads(attrs.details["result"].payloads[0].data))
    return out


async def history(rt: AppRuntime, pid: Pid) -> list[HistoryEvent]:
    return [e async for e in (await rt.handle(pid)).fetch_history_events()]


async def test_a_local_activity_is_a_marker_in_history_not_an_activity_task(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_app({"app.yaml": ENTRIES})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:quick", None, {"id": "o-1"})
        out = await asyncio.wait_for(rt.result(pid), HANG)
        evs = await history(rt, pid)
    assert out["id"] == "o-1" and len(out["token"]) == 36
    assert events_of(evs, "ACTIVITY_TASK_SCHEDULED") == []
    assert marker_results(evs) == [out]


async def test_a_local_activity_error_reaches_the_workflow_with_its_kind(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_app({"app.yaml": ENTRIES})
    async with running(app, temporal_address) as rt:
        bad = await asyncio.wait_for(rt.result(await rt.spawn("app:quick", None, {"id": "o-2", "bad": True})), HANG)
        # a local activity has no task queue (nor heartbeat): the option is refused, not ignored
        queued = await asyncio.wait_for(rt.result(await rt.spawn("app:quick", None, {"id": "o-3"},
                                                                 {"task_queue": "elsewhere"})), HANG)
    assert bad == {"kind": "Invalid", "message": "bad order o-2"}
    assert queued["kind"] == "Invalid"
    assert queued["message"].startswith("option task_queue: app:validate is a local activity")


@pytest.fixture
def workers(tmp_path: Path, temporal_address: str) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for w in started:
        w.stop()


async def test_a_fresh_worker_process_replays_the_marker_without_running_the_function_again(
        make_app: Callable[..., Path], temporal_address: str, tmp_path: Path, workers: list[WorkerProcess]) -> None:
    app = make_app({"app.yaml": ENTRIES})
    first = WorkerProcess(app, temporal_address, tmp_path / "first.log")
    workers.append(first)
    await first.start()
    rt = AppRuntime(app, temporal=temporal_address)  # a client only: the workers are the processes
    pid = await rt.spawn("app:waits", None, {"id": "o-9"})
    # the local activity ran in the first process and its marker is recorded; then that process dies
    evs = await eventually(lambda: history(rt, pid), lambda e: marker_results(e) != [], what="the marker")
    (recorded,) = marker_results(evs)
    first.kill()
    second = WorkerProcess(app, temporal_address, tmp_path / "second.log")
    workers.append(second)
    await second.start()
    await rt.send(pid, "go", "now")
    out = await asyncio.wait_for(rt.result(pid), HANG)
    evs = await history(rt, pid)
    assert out == {"token": recorded["token"], "go": "now"}
    # the second process replayed the whole history (the first one's cache died with it)...
    identities = {e.workflow_task_started_event_attributes.identity for e in events_of(evs, "WORKFLOW_TASK_STARTED")}
    assert any(str(second.pid) in i for i in identities), identities
    assert events_of(evs, "WORKFLOW_TASK_FAILED") == []
    # ... and took the marker's result: the function ran once, in the first process
    assert first.output().count("validating o-9") == 1
    assert "validating o-9" not in second.output()
    assert events_of(evs, "ACTIVITY_TASK_SCHEDULED") == [] and len(events_of(evs, "MARKER_RECORDED")) == 1
