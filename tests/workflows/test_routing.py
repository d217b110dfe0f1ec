"""Wippy's meta.temporal routing on a real Temporal dev server (en/temporal/*.md).

``meta.temporal.workflow.worker`` registers a workflow with one worker, ``meta.temporal.activity.worker``
a function with one worker (a workflow's funcs.call schedules it on that worker's task queue),
``meta.temporal.workflow.name`` is the Temporal workflow type, a client's ``tq_prefix`` prefixes every
task queue, and a spawn host may name a worker by its task queue. What Temporal recorded (task queues
in the history, the workflow type) is what is checked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client

from moontide_testing import TEMPORAL_ENTRIES, running
from moontide import errors
from moontide.runtime import AppRuntime

HANG = 90

# two workers, front and back, of a client with a task queue prefix
APP = TEMPORAL_ENTRIES.replace("127.0.0.1:1\n", '127.0.0.1:1\n    tq_prefix: "p-"\n') \
    .replace("name: worker", "name: front").replace("TASK_QUEUE", "TASK_QUEUE-front") + """\
  - name: back
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE-back

  - name: order
    kind: workflow.lua
    source: |
      return function(amount)
        local charged = funcs.call("app:charge", amount)
        local stamp = funcs.call("app:stamp", charged)
        return { charged = charged, stamp = stamp, queue = workflow.info().task_queue }
      end
    method: ""
    modules: [funcs, workflow]
    meta:
      temporal:
        workflow:
          worker: app:front

  - name: charge
    kind: function.lua
    source: "return function(amount) return amount * 2 end"
    meta:
      temporal:
        activity:
          worker: back

  - name: stamp
    kind: function.lua
    source: "return function(v) return 'stamped ' .. tostring(v) end"

  - name: renamed
    kind: workflow.lua
    source: |
      return function(v) return { got = v, queue = workflow.info().task_queue, type = workflow.info().workflow_type } end
    modules: [workflow]
    meta:
      temporal:
        workflow:
          worker: back
          name: RenamedFlow

  - name: parent
    kind: workflow.lua
    source: |
      return function(queue)
        local out, err = process.exec("app:renamed", queue, "from parent")
        if err then return { error = err:message() } end
        return out
      end
    modules: [process]
    meta:
      temporal:
        workflow:
          worker: front
"""


def scheduled_queues(events: list[HistoryEvent]) -> dict[str, str]:
    """activity type -> task queue it was scheduled on."""
    return {e.activity_task_scheduled_event_attributes.activity_type.name:
            e.activity_task_scheduled_event_attributes.task_queue.name
            for e in events if e.HasField("activity_task_scheduled_event_attributes")}


async def result(rt: AppRuntime, pid: Any) -> Any:
    return await asyncio.wait_for(rt.result(pid), HANG)


@pytest.fixture
def app_dir(make_app: Callable[..., Path]) -> Path:
    return make_app({"app.yaml": APP})


async def test_workflow_and_activities_run_on_the_workers_their_meta_names(
        app_dir: Path, temporal_address: str, task_queue: str) -> None:
    front, back = f"p-{task_queue}-front", f"p-{task_queue}-back"
    async with running(app_dir, temporal_address) as rt:
        # two workers, but the workflow names one: no host needed
        pid = await rt.spawn("app:order", None, 21)
        assert pid.host == "app:front"
        assert await result(rt, pid) == {"charged": 42, "stamp": "stamped 42", "queue": front}
        events = [e async for e in (await rt.handle(pid)).fetch_history_events()]
        desc = await (await rt.handle(pid)).describe()
    assert desc.task_queue == front
    # charge is registered with back: scheduled on back's queue; stamp names no worker: the workflow's own
    assert scheduled_queues(events) == {"app:charge": back, "app:stamp": front}


async def test_a_routed_workflow_is_refused_on_another_worker(app_dir: Path, temporal_address: str) -> None:
    async with running(app_dir, temporal_address) as rt:
        with pytest.raises(errors.Invalid, match=r"app:order runs on worker app:front \(its "
                                                 r"meta.temporal.workflow.worker\), not on app:back"):
            await rt.spawn("app:order", "app:back", 1)
        # the child side: parent (on front) asks for the renamed workflow (routed to back) on front
        out = await result(rt, await rt.spawn("app:parent", "app:front", "app:front"))
    assert out == {"error": "process.exec: app:renamed runs on worker app:back (its meta.temporal.workflow.worker), "
                            "not on app:front"}


async def test_custom_workflow_name_and_a_host_given_as_its_task_queue(
        app_dir: Path, temporal_address: str, task_queue: str) -> None:
    back = f"p-{task_queue}-back"
    async with running(app_dir, temporal_address) as rt:
        pid = await rt.spawn("app:renamed", back, "by queue")  # the host named by the queue it polls
        assert pid.host == "app:back"
        assert await result(rt, pid) == {"got": "by queue", "queue": back, "type": "RenamedFlow"}
        assert (await (await rt.handle(pid)).describe()).workflow_type == "RenamedFlow"
        # a Temporal client outside Moontide starts it by its name
        client = await Client.connect(temporal_address)
        outside = await asyncio.wait_for(client.execute_workflow("RenamedFlow", "outside", id=f"{task_queue}-out",
                                                                 task_queue=back), HANG)
        assert outside == {"got": "outside", "queue": back, "type": "RenamedFlow"}
        # a child workflow started from Lua gets the name too, on the routed worker's queue
        parent = await rt.spawn("app:parent", "front", back)
        assert await result(rt, parent) == {"got": "from parent", "queue": back, "type": "RenamedFlow"}


async def test_a_function_registered_elsewhere_is_refused_on_another_queue(
        app_dir: Path, temporal_address: str, task_queue: str) -> None:
    # a caller that schedules app:charge on front's queue by hand: front does not run it (NotFound, at once)
    text = (app_dir / "app.yaml").read_text() + """
  - name: stray
    kind: workflow.lua
    source: |
      return function(queue)
        local v, err = funcs.new():with_options({ task_queue = queue }):call("app:charge", 1)
        return { value = v, kind = err and err:kind(), message = err and err:message() }
      end
    modules: [funcs]
"""
    (app_dir / "app.yaml").write_text(text)
    async with running(app_dir, temporal_address) as rt:
        out = await result(rt, await rt.spawn("app:stray", "app:front", f"p-{task_queue}-front"))
    assert out.get("value") is None and out["kind"] == "NotFound", out
    assert "registered with another temporal.worker" in out["message"], out
