"""Processes and workflows talking both ways, against the session's real Temporal dev server.

Process -> workflow goes through the bridge (``RuntimeBridge`` over ``AppRuntime``:
spawn, signal, result). Workflow -> process goes through the ``moontide.deliver``
activity, served on a task queue of the process's host run.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from temporalio import workflow
from temporalio.client import WorkflowFailureError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

from _procs import process_app, settle
from moontide.processes import (
    DELIVER_ACTIVITY,
    ProcessSystem,
    RuntimeBridge,
    deliver_task_queue,
    is_workflow_pid,
)
from moontide.runtime import AppRuntime

GREETER = """
return function(input)
  local msg = process.inbox():receive()
  return { name = input.name, text = msg.text, topic = msg:topic(), from = msg:from() }
end
"""

FAILING = """
return function()
  return nil, errors.new{ kind = "Declined", message = "card declined" }
end
"""


@contextlib.asynccontextmanager
async def both(app: Path, temporal_address: str) -> AsyncIterator[tuple[AppRuntime, ProcessSystem]]:
    """The app as `moontide run` serves it: workers on the dev server, and its processes, wired both ways."""
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        assert isinstance(rt.processes, ProcessSystem) and isinstance(rt.processes.bridge, RuntimeBridge)
        yield rt, rt.processes


async def test_a_process_spawns_a_workflow_sends_to_it_and_hears_its_exit(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    caller = """
    return function()
      local wf, err = process.spawn_monitored("greeter", "worker", { name = "ada" })
      if not wf then return nil, err end
      local ok, serr = process.send(wf, "hello", { text = "hi" })
      if not ok then return nil, serr end
      local ev = process.events():receive()
      return { wf = wf, kind = ev.kind, from_wf = ev.from == wf, result = ev.result.value, me = process.pid() }
    end
    """
    app = process_app(make_app, {"caller": caller}, workflows={"greeter": GREETER})
    async with both(app, temporal_address) as (rt, system):
        out = await system.result(system.spawn("app:caller", "app:host"))
    assert is_workflow_pid(out["wf"]) and out["wf"].startswith("{app:client@app:worker|greeter-")
    assert out["kind"] == "pid.exit" and out["from_wf"] is True
    assert out["result"] == {"name": "ada", "text": "hi", "topic": "hello", "from": out["me"]}


async def test_exec_of_a_workflow_returns_its_result_or_its_error(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    caller = """
    return function()
      local _, err = process.exec("failing", "worker")
      local linked = process.spawn_linked("failing", "worker")
      local ev = process.events():receive()
      return { err = err:kind() .. ": " .. err:message(), linked = ev.kind, linked_error = ev.result.error:kind() }
    end
    """
    app = process_app(make_app, {"caller": caller}, workflows={"failing": FAILING})
    async with both(app, temporal_address) as (rt, system):
        out = await system.result(system.spawn("app:caller", "app:host"))
    assert out == {"err": "Declined: card declined", "linked": "pid.link.down", "linked_error": "Declined"}


async def test_python_sends_to_a_workflow_through_the_process_system(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = process_app(make_app, {}, workflows={"greeter": GREETER})
    async with both(app, temporal_address) as (rt, system):
        pid = str(await rt.spawn("app:greeter", "app:worker", {"name": "bob"}))
        await system.send(pid, "hello", {"text": "yo"}, sender="{app:host|abc.1}")
        assert await system.result(pid) == {"name": "bob", "text": "yo", "topic": "hello", "from": "{app:host|abc.1}"}


@workflow.defn(name="moontide-test-deliver-probe", sandboxed=False)
class DeliverProbe:
    """A workflow that sends to a process pid the way the Lua workflow driver is to: the deliver activity."""

    @workflow.run
    async def run(self, pid: str, topic: str, payload_json: str) -> Any:
        return await workflow.execute_activity(
            DELIVER_ACTIVITY, args=[pid, topic, payload_json, "{app:client@app:worker|probe}"],
            task_queue=deliver_task_queue(pid), schedule_to_start_timeout=timedelta(seconds=10),
            start_to_close_timeout=timedelta(seconds=10))


async def test_a_workflow_reaches_a_process_through_the_deliver_activity(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    inbox = """
    return function()
      local msg = process.inbox():receive()
      return { topic = msg:topic(), from = msg:from(), data = msg:payload():data() }
    end
    """
    app = process_app(make_app, {"inbox": inbox}, workflows={"greeter": GREETER})
    async with both(app, temporal_address) as (rt, system):
        client = await rt.client("app:client")
        queue = f"probe-{uuid.uuid4().hex[:8]}"
        async with Worker(client, task_queue=queue, workflows=[DeliverProbe],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            pid = system.spawn("app:inbox", "app:host")
            await settle(system, pid)
            assert await client.execute_workflow(DeliverProbe.run, args=[pid, "approved", '{"ok":true,"n":[1,2]}'],
                                                 id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue) is True
            assert await system.result(pid) == {"topic": "approved", "from": "{app:client@app:worker|probe}",
                                                "data": {"ok": True, "n": [1, 2]}}
            # an exited process: the activity fails NotFound, not retrying
            with pytest.raises(WorkflowFailureError) as info:
                await client.execute_workflow(DeliverProbe.run, args=[pid, "late", "1"],
                                              id=f"probe-{uuid.uuid4().hex[:8]}", task_queue=queue)
            assert "NotFound" in repr(info.value.cause.cause)  # type: ignore[union-attr]


async def test_a_lua_workflow_sends_to_a_process(make_app: Callable[..., Path], temporal_address: str) -> None:
    sender = """
    return function(pid)
      local ok, err = process.send(pid, "from_workflow", { x = 1 })
      if not ok then return nil, err end
      return "sent"
    end
    """
    inbox = """
    return function()
      local msg = process.inbox():receive()
      return { topic = msg:topic(), from = msg:from(), x = msg.x }
    end
    """
    app = process_app(make_app, {"inbox": inbox}, workflows={"sender": sender})
    async with both(app, temporal_address) as (rt, system):
        pid = system.spawn("app:inbox", "app:host")
        wf = await rt.spawn("app:sender", "app:worker", pid)
        assert await rt.result(wf) == "sent"
        out = await system.result(pid)
    assert out == {"topic": "from_workflow", "from": str(wf), "x": 1}


# Waits for its first event (a workflow in one test, a process in the other).
CANCEL_WAITER = """
return function()
  local ev = process.events():receive()
  return { kind = ev.kind, reason = ev.reason, from = ev.from }
end
"""


async def test_a_process_that_cancels_a_workflow_is_named_in_its_pid_cancel_event(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    caller = """
    return function()
      local wf = process.spawn("waiter", "worker")
      local ok, err = process.cancel(wf, "order withdrawn")
      if not ok then return nil, err end
      return { wf = wf, me = process.pid() }
    end
    """
    app = process_app(make_app, {"caller": caller}, workflows={"waiter": CANCEL_WAITER})
    async with both(app, temporal_address) as (rt, system):
        out = await system.result(system.spawn("app:caller", "app:host"))
        ended = await rt.result(out["wf"])
    assert ended == {"kind": "pid.cancel", "reason": "order withdrawn", "from": out["me"]}


async def test_a_cancel_from_python_names_its_sender_to_the_process(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = process_app(make_app, {"waiter": CANCEL_WAITER})
    async with both(app, temporal_address) as (rt, system):
        pid = system.spawn("app:waiter", "app:host")
        await settle(system, pid)
        await rt.cancel(pid, "shutting down", sender="{ops}")
        assert await rt.result(pid) == {"kind": "pid.cancel", "reason": "shutting down", "from": "{ops}"}
