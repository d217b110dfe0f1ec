"""Spawning as Wippy's Workflows page writes it: spawners with ``:with_name`` and ``:with_message``
(startup messages, i.e. signal-with-start), ``workflow.*`` start options and their ID conflict
policies, from a workflow (child workflows), from function code and from Python.

Written from wippyai/docs en/temporal/workflows.md ("Spawn with Name", "Spawn with Explicit
Workflow ID", "ID Conflict Policies", "Workflow Start Options", "Startup Messages") and
en/lua/core/process.md ("SpawnBuilder Methods"). Each workflow's history is replayed in a
fresh Python process.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable

import pytest
from temporalio.api.enums.v1 import EventType

from _issue3 import history, make_flows, signal_names
from moontide_testing import replay_in_fresh_process, running
from moontide import errors
from moontide.runtime import Pid

# The page's counter: applies "increment" messages until "finish" (inbox order: startup messages first).
COUNTER = """
return function(input)
  local counter = input.initial or 0
  local seen = {}
  local inbox = process.inbox()
  while true do
    local msg = inbox:receive()
    seen[#seen + 1] = msg:topic()
    if msg:topic() == "increment" then
      counter = counter + msg:payload():data().amount
    elseif msg:topic() == "finish" then
      return { final_counter = counter, seen = seen, from = msg:from() }
    end
  end
end
"""

# The page's two spawns of one name (en/temporal/workflows.md, "Startup Messages"), from a workflow.
TWO_SPAWNS = """
return function(name)
  local first = process
      .with_options({})
      :with_name(name)
      :with_message("increment", {amount = 3})

  local pid, err = first:spawn("app:counter", "app:worker", {initial = 0})
  assert(pid, err)

  local second = process
      .with_options({})
      :with_name(name)
      :with_message("increment", {amount = 2})

  local pid2, err2 = second:spawn("app:counter", "app:worker", {initial = 999})
  assert(pid2, err2)
  process.send(pid, "finish", {})
  local ev = process.events():receive()
  return { same = pid2 == pid, pid = pid, result = ev.result.value, me = process.pid() }
end
"""

# The same from function code (a Temporal client start: signal-with-start), then the page's
# three-message spawner.
FROM_FUNCTION = """
return function(name)
  local first = process.with_options({}):with_name(name):with_message("increment", {amount = 3})
  local pid, err = first:spawn("app:counter", "app:worker", {initial = 0})
  if not pid then return nil, err end
  local second = process.with_options({}):with_name(name):with_message("increment", {amount = 2})
  local pid2, err2 = second:spawn("app:counter", "app:worker", {initial = 999})
  if not pid2 then return nil, err2 end
  local spawner = process
      .with_options({})
      :with_name(name .. "-3")
      :with_message("increment", {amount = 2})
      :with_message("increment", {amount = 1})
      :with_message("increment", {amount = 4})
  local pid3, err3 = spawner:spawn_monitored("app:counter", "app:worker", {initial = 0})
  if not pid3 then return nil, err3 end
  return { pid = pid, pid2 = pid2, pid3 = pid3 }
end
"""


def _name(prefix: str = "counter") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_named_spawn_from_a_workflow_answers_the_running_one_and_still_delivers_its_messages(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"counter": COUNTER, "parent": TWO_SPAWNS})
    name = _name()
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:parent", None, name)
        out = await rt.result(pid)
        assert out["same"] is True and out["pid"] == f"{{app:client@app:worker|{name}}}"
        # initial 0, +3 from the first spawner, +2 from the second (its input {initial = 999} is ignored)
        assert out["result"] == {"final_counter": 5, "seen": ["increment", "increment", "finish"], "from": out["me"]}
        client = await rt.client("app:client")
        starts = [e for e in await history(client, name)
                  if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
        assert len(starts) == 1  # one execution: the second spawn resolved to it
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
        assert await replay_in_fresh_process(rt, out["pid"]) == "REPLAYED"


async def test_startup_messages_from_function_code_come_with_the_start(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    name = _name()
    # a workflow calls the function: it runs as a real activity, its spawns go through a Temporal client
    app = make_flows(make_app, {"counter": COUNTER, "caller": """
        return function(name) return funcs.call("starter", name) end
    """}, {"starter": FROM_FUNCTION})
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:caller", None, name))
        assert out["pid"] == out["pid2"] == f"{{app:client@app:worker|{name}}}"
        client = await rt.client("app:client")
        # signal-with-start: the first message is in the same request as the start, before anything else
        events = await history(client, name)
        kinds = [EventType.Name(e.event_type) for e in events[:3]]
        assert kinds[:2] == ["EVENT_TYPE_WORKFLOW_EXECUTION_STARTED", "EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED"]
        assert await signal_names(client, name) == ["increment", "increment"]
        await rt.send(out["pid"], "finish", {})
        done = await rt.result(out["pid"])
        assert done["final_counter"] == 5 and "from" not in done  # a plain Temporal client sent "finish"
        await rt.send(out["pid3"], "finish", {})
        third = await rt.result(out["pid3"])
        assert third["final_counter"] == 7 and third["seen"] == ["increment"] * 3 + ["finish"]
        for pid in (out["pid"], out["pid3"]):
            assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


CONFLICTS = """
return function(wid)
  local out = {}
  local function try(label, options)
    local pid, err = process.with_options(options):spawn("app:waiter", "app:worker", label)
    out[label] = pid and "pid" or tostring(err)
    out[label .. "_already"] = err ~= nil and errors.is(err, errors.ALREADY_EXISTS)
    return pid
  end
  local pid = try("first", { ["workflow.id"] = wid })
  try("reuse", { ["workflow.id"] = wid })                                  -- default with explicit ID
  try("fail", { ["workflow.id"] = wid, ["workflow.id_conflict_policy"] = "fail" })
  try("error", { ["workflow.id"] = wid, ["workflow.execution_error_when_already_started"] = true })
  try("legacy", { ["temporal.workflow.id"] = wid, ["temporal.workflow.id_conflict_policy"] = "fail" })
  local replaced = try("replace", { ["workflow.id"] = wid, ["workflow.id_conflict_policy"] = "terminate_existing" })
  out.same_pid = replaced == pid
  process.send(replaced, "go", "now")
  for _ = 1, 2 do  -- the terminated first child's end (an error), and the replacement's (a value)
    local ev = process.events():receive()
    if ev.result.error then out.terminated = true else out.exit = ev.result.value end
  end
  return out
end
"""

WAITER = """
return function(label)
  local msg = process.inbox():receive()
  return { label = label, got = msg:payload():data() }
end
"""


async def test_id_conflict_policies_of_a_spawn_from_a_workflow(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"parent": CONFLICTS, "waiter": WAITER})
    wid = _name("order")
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:parent", None, wid)
        out = await rt.result(pid)
        assert out["first"] == out["reuse"] == out["replace"] == "pid"
        for label in ("fail", "error", "legacy"):
            assert out[f"{label}_already"] is True, out[label]
            assert wid in out[label]
        assert out["same_pid"] is True
        # the first child was terminated to make room (its parent hears of it); the replacement ran to its end
        assert out["terminated"] is True
        assert out["exit"] == {"label": "replace", "got": "now"}
        client = await rt.client("app:client")
        runs = [e for e in await history(client, wid)
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED]
        assert [r.workflow_execution_started_event_attributes.input.payloads[0].data for r in runs] == [b'"replace"']
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_id_conflict_policies_of_a_python_spawn(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"waiter": WAITER})
    wid = _name("order")
    async with running(app, temporal_address) as rt:
        first = await rt.spawn("app:waiter", None, "first", options={"workflow.id": wid})
        assert first == Pid("app:client", "app:worker", wid)
        run_id = (await (await rt.handle(first)).describe()).run_id
        assert await rt.spawn("app:waiter", None, "again", name=wid) == first
        assert (await (await rt.handle(first)).describe()).run_id == run_id
        with pytest.raises(errors.MoontideError) as info:
            await rt.spawn("app:waiter", None, "x", options={"workflow.id": wid,
                                                             "workflow.execution_error_when_already_started": True})
        assert info.value.kind == "AlreadyExists"
        # a named spawn's startup message reaches the running one (no second start)
        assert await rt.spawn("app:waiter", None, "y", name=wid, messages=[("go", {"n": 1})]) == first
        assert await rt.result(first) == {"label": "first", "got": {"n": 1}}
        # generated IDs: every spawn a fresh execution
        a, b = await rt.spawn("app:waiter", None, "a"), await rt.spawn("app:waiter", None, "b")
        assert a != b
        for p in (a, b):
            await rt.terminate(p)


async def test_the_pages_workflow_start_options(make_app: Callable[..., Path], temporal_address: str) -> None:
    """en/temporal/workflows.md, "Workflow Start Options" (the options that can go together on one start)."""
    options: dict[str, Any] = {
        "workflow.execution_timeout": "24h",
        "workflow.run_timeout": "1h",
        "workflow.task_timeout": "30s",
        "workflow.id_conflict_policy": "fail",
        "workflow.retry_policy": {"initial_interval": 1000, "backoff_coefficient": 2.0,
                                  "maximum_interval": 300000, "maximum_attempts": 3},
        "workflow.memo": {"source": "api"},
        "workflow.start_delay": "5m",
        "workflow.parent_close_policy": "terminate",   # a top-level start has no parent: no effect
        "workflow.summary": "an order",
        "workflow.priority": {"priority_key": 2},
    }
    app = make_flows(make_app, {"waiter": WAITER})
    async with running(app, temporal_address) as rt:
        wid = _name("order")
        pid = await rt.spawn("app:waiter", None, "x", options={"workflow.id": wid, **options})
        client = await rt.client("app:client")
        started = (await history(client, wid))[0].workflow_execution_started_event_attributes
        assert started.workflow_execution_timeout.ToTimedelta() == timedelta(hours=24)
        assert started.workflow_run_timeout.ToTimedelta() == timedelta(hours=1)
        assert started.workflow_task_timeout.ToTimedelta() == timedelta(seconds=30)
        assert started.first_workflow_task_backoff.ToTimedelta() == timedelta(minutes=5)
        retry = started.retry_policy
        assert (retry.initial_interval.ToMilliseconds(), retry.backoff_coefficient, retry.maximum_interval.ToSeconds(),
                retry.maximum_attempts) == (1000, 2.0, 300, 3)
        assert started.priority.priority_key == 2
        desc = await (await rt.handle(pid)).describe()
        assert (await desc.memo())["source"] == "api"
        assert await desc.static_summary() == "an order"
        await rt.terminate(pid)
        # the cron schedule, on a start of its own (Temporal takes no start delay with it)
        cron = await rt.spawn("app:waiter", None, "c", options={"workflow.cron_schedule": "0 */6 * * *"})
        first = (await history(client, cron.workflow_id))[0].workflow_execution_started_event_attributes
        assert first.cron_schedule == "0 */6 * * *"
        await rt.terminate(cron)


async def test_a_bad_option_names_itself(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local out = {}
      for _, opts in ipairs({
        { ["workflow.execution_timeout"] = "soon" },
        { ["workflow.retry_policy"] = { maximum_attempts = "three" } },
        { ["workflow.id_reuse_policy"] = "whenever" },
        { ["workflow.colour"] = "red" },
      }) do
        local _, err = process.with_options(opts):spawn("app:waiter", "app:worker")
        out[#out + 1] = errors.is(err, errors.INVALID) and tostring(err) or "not refused"
      end
      return out
    end
    """
    app = make_flows(make_app, {"flow": flow, "waiter": WAITER})
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:flow", None))
    assert "workflow.execution_timeout" in out[0] and "milliseconds" in out[0]
    assert "workflow.retry_policy.maximum_attempts" in out[1]
    assert "workflow.id_reuse_policy" in out[2] and "allow_duplicate" in out[2]
    assert "unknown spawn option 'workflow.colour'" in out[3]


async def test_a_spawn_host_named_by_its_task_queue(make_app: Callable[..., Path], temporal_address: str,
                                                    task_queue: str) -> None:
    flow = """
    return function(queue)
      local pid = assert(process.spawn("app:waiter", queue, "by queue"))
      process.send(pid, "go", 1)
      return process.events():receive().result.value
    end
    """
    app = make_flows(make_app, {"flow": flow, "waiter": WAITER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", task_queue, task_queue)
        assert pid.host == "app:worker"
        assert await rt.result(pid) == {"label": "by queue", "got": 1}


# :exec honours the spawner's name and startup messages as :spawn does (en/lua/core/process.md,
# "SpawnBuilder Methods"): from a workflow (a child it waits for), and from function code (a client start).
EXEC_NAMED = """
return function(name)
  local out, err = process.with_options({})
      :with_name(name)
      :with_message("increment", {amount = 3})
      :with_message("increment", {amount = 4})
      :with_message("finish", {})
      :exec("app:counter", "app:worker", {initial = 1})
  if out == nil then return nil, err end
  local has_pid, me = pcall(process.pid)   -- function code has no pid
  return { result = out, me = has_pid and me or nil }
end
"""


async def test_exec_from_a_workflow_uses_the_name_and_the_startup_messages(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"counter": COUNTER, "parent": EXEC_NAMED})
    name = _name("exec")
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:parent", None, name)
        out = await rt.result(pid)
        assert out["result"] == {"final_counter": 8, "seen": ["increment", "increment", "finish"],
                                 "from": out["me"]}
        client = await rt.client("app:client")
        assert await signal_names(client, name) == ["increment", "increment", "finish"]  # the child's own ID
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_exec_from_function_code_uses_the_name_and_the_startup_messages(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"counter": COUNTER, "caller": """
        return function(name) return funcs.call("starter", name) end
    """}, {"starter": EXEC_NAMED})
    name = _name("exec")
    async with running(app, temporal_address) as rt:
        out = await rt.result(await rt.spawn("app:caller", None, name))
        assert out["result"]["final_counter"] == 8 and out["result"]["seen"] == ["increment", "increment", "finish"]
        client = await rt.client("app:client")
        assert await signal_names(client, name) == ["increment", "increment", "finish"]
