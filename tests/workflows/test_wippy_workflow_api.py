"""The workflow side of Wippy's process and workflow API, on a real Temporal server.

Written from wippyai/docs en/temporal/workflows.md ("workflow.exec", "workflow.attrs",
"history_length / history_size", "Topic-Based Subscription", "Signal Acknowledgment",
"Post-Start Linking", "Unmonitor / Unlink"), en/temporal/activities.md ("Activity Options",
"Failure Modes") and en/lua/core/process.md ("Process Options", "Topic Subscription", "Process
Upgrade"). Each workflow's history is replayed in a fresh Python process.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Callable

from temporalio.api.enums.v1 import EventType

from _issue3 import history, make_flows
from moontide_testing import replay_in_fresh_process, running


def _scheduled(events: list) -> list:
    return [e.activity_task_scheduled_event_attributes for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]


async def test_the_pages_activity_options(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local executor = funcs.new():with_options({
          ["activity.start_to_close_timeout"] = "30s",
          ["activity.schedule_to_close_timeout"] = "5m",
          ["activity.heartbeat_timeout"] = "10s",
          ["activity.retry_policy"] = {
              maximum_attempts = 3,
              initial_interval = 1000,
              backoff_coefficient = 2.0,
              maximum_interval = 60000,
          }
      })
      local a = assert(executor:call("app:echo", 1))
      local legacy = funcs.new():with_options({
          ["temporal.activity.start_to_close_timeout"] = 1500,          -- milliseconds
          ["activity.id"] = "charge-1",
          ["activity.summary"] = "Charge the order payment",
          ["activity.priority"] = { priority_key = 3 },
      })
      local b = assert(legacy:call("app:echo", 2))
      return { a, b }
    end
    """
    app = make_flows(make_app, {"flow": flow})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == [1, 2]
        first, second = _scheduled(await history(await rt.client("app:client"), pid.workflow_id))
        assert first.start_to_close_timeout.ToSeconds() == 30
        assert first.schedule_to_close_timeout.ToSeconds() == 300
        assert first.heartbeat_timeout.ToSeconds() == 10
        retry = first.retry_policy
        assert (retry.maximum_attempts, retry.initial_interval.ToMilliseconds(), retry.backoff_coefficient,
                retry.maximum_interval.ToMilliseconds()) == (3, 1000, 2.0, 60000)
        assert second.start_to_close_timeout.ToMilliseconds() == 1500
        assert second.activity_id == "charge-1"
        assert second.priority.priority_key == 3
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_failure_modes_reach_the_caller_with_wippys_kinds(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    """activities.md "Failure Modes": a runtime crash is Internal, a missing activity NotFound."""
    flow = """
    return function()
      local executor = funcs.new():with_options({
          ["activity.retry_policy"] = {maximum_attempts = 1}
      })
      local _, crash = executor:call("app:crash", 1)
      local _, missing = executor:call("app:missing_activity", 1)
      return { crash = errors.is(crash, errors.INTERNAL), crash_text = tostring(crash),
               missing = errors.is(missing, errors.NOT_FOUND), missing_text = tostring(missing) }
    end
    """
    crash = "return function() local t = nil; return t.field end"
    app = make_flows(make_app, {"flow": flow}, {"crash": crash})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        out = await rt.result(pid)
        assert out["crash"] is True and "attempt to index a nil value" in out["crash_text"]
        assert out["missing"] is True and "app:missing_activity" in out["missing_text"]
        (scheduled,) = _scheduled(await history(await rt.client("app:client"), pid.workflow_id))
        assert scheduled.activity_type.name == "app:crash"  # the missing one was never scheduled
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


CHILD = """
return function(input)
  return { doubled = input.n * 2 }
end
"""


async def test_exec_history_and_attrs(make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function(order)
      local result, err = workflow.exec("app:child", {n = order.n})
      if err then return nil, err end
      local _, missing = workflow.exec("app:nope", {})
      local before = workflow.history_length()
      local size = workflow.history_size()
      assert(funcs.call("app:echo", 1))
      local after = workflow.history_length()
      local ok, aerr = workflow.attrs({
          memo = { notes = "Priority customer", source = "web" },
      })
      local _, empty = workflow.attrs({})
      local _, reserved = workflow.attrs({ memo = { ["moontide.code"] = "x" } })
      return { result = result, missing = errors.is(missing, errors.NOT_FOUND), before = before,
               after = after, size = size, info_size = workflow.info().history_size, ok = ok,
               empty = errors.is(empty, errors.INVALID), reserved = errors.is(reserved, errors.INVALID) }
    end
    """
    app = make_flows(make_app, {"flow": flow, "child": CHILD})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None, {"n": 21})
        out = await rt.result(pid)
        assert out["result"] == {"doubled": 42}
        assert out["missing"] is True and out["ok"] is True and out["empty"] is True and out["reserved"] is True
        assert 0 < out["before"] < out["after"]  # the activity's events came in between
        assert out["size"] > 0 and out["info_size"] >= out["size"]
        memo = await (await (await rt.handle(pid)).describe()).memo()
        assert memo["notes"] == "Priority customer" and memo["source"] == "web" and "moontide.code" in memo
        client = await rt.client("app:client")
        children = [e.start_child_workflow_execution_initiated_event_attributes for e in
                    await history(client, pid.workflow_id)
                    if e.event_type == EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED]
        assert [c.workflow_type.name for c in children] == ["app:child"]
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


# en/temporal/workflows.md, "Signal Acknowledgment": request-reply between workflows.
SERVER = """
return function()
  local ch = process.listen("get_status", {message = true})
  local msg = ch:receive()
  process.send(msg:from(), "status_response", {status = "processing", progress = 75, topic = msg:topic()})
  local raw = process.listen("plain"):receive()
  return { asked_by = msg:from(), data = msg:payload():data(), raw = raw }
end
"""

CALLER = """
return function()
  local response_ch = process.listen("status_response")
  local workflow_pid = assert(process.spawn("app:server", "app:worker"))
  process.send(workflow_pid, "get_status", {detail = true})
  local timeout = time.after("30s")
  local result = channel.select{
      response_ch:case_receive(),
      timeout:case_receive()
  }
  local status
  if result.channel == response_ch then
      status = result.value
  end
  process.send(workflow_pid, "plain", {n = 1})
  local _, bad = process.listen("x", {colour = true})
  local _, reserved = process.listen("@inbox")
  return { status = status, me = process.pid(), exit = process.events():receive().result.value,
           bad = tostring(bad), reserved = errors.is(reserved, errors.INVALID) }
end
"""


async def test_listen_with_message_objects_and_reply_to_the_sender(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"server": SERVER, "caller": CALLER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:caller", None)
        out = await rt.result(pid)
        assert out["status"] == {"status": "processing", "progress": 75, "topic": "get_status"}
        assert out["exit"] == {"asked_by": out["me"], "data": {"detail": True}, "raw": {"n": 1}}
        assert "unsupported process.listen option colour" in out["bad"] and out["reserved"] is True
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


LONG = """
return function(input)
  process.inbox():receive()
  return "done"
end
"""


async def test_post_start_linking_unmonitor_and_process_options(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    flow = """
    return function()
      local before = process.get_options().trap_links
      local ok, err = process.set_options({trap_links = true})
      local _, bad = process.set_options({colour = true})

      local pid, err = process.spawn(
          "app:long_workflow",
          "app:worker",
          {iterations = 100}
      )

      -- Link after workflow has started
      time.sleep("200ms")
      local ok, err = process.link(pid)

      -- If workflow is terminated, receive LINK_DOWN
      process.terminate(pid)

      local events_ch = process.events()
      local event = events_ch:receive()

      -- unmonitor: no EXIT for that child
      local quiet = assert(process.spawn("app:long_workflow", "app:worker", {}))
      assert(process.unmonitor(quiet))
      process.send(quiet, "go", 1)
      time.sleep("1s")
      local later = channel.select{ events_ch:case_receive(), default = true }
      local _, stranger = process.monitor("{app:client@app:worker|not-a-child}")
      return { before = before, ok = ok, trap = process.get_options().trap_links, bad = tostring(bad),
               kind = event.kind, is_link_down = event.kind == process.event.LINK_DOWN, from = event.from == pid,
               quiet = later.default == true, stranger = errors.is(stranger, errors.INVALID) }
    end
    """
    app = make_flows(make_app, {"flow": flow, "long_workflow": LONG})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        out = await rt.result(pid)
        assert out["before"] is False and out["ok"] is True and out["trap"] is True
        assert "option colour is not supported" in out["bad"]
        assert out["is_link_down"] is True and out["from"] is True
        assert out["quiet"] is True and out["stranger"] is True
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


UPGRADING = """
return function(state)
  state = state or { n = 0, runs = {} }
  state.n = state.n + 1
  state.runs[#state.runs + 1] = workflow.info().run_id
  if state.n < 3 then
    process.upgrade(nil, state)                -- keep this definition, re-run with new state
  end
  if state.n == 3 then
    process.upgrade("app:upgraded", state)     -- upgrade to a new definition, passing state
  end
  return "not reached"
end
"""

UPGRADED = """
return function(state)
  local _, err = process.upgrade("app:nope", state)
  return { n = state.n, runs = #state.runs, pid = process.pid(), run = workflow.info().run_id,
           type = workflow.info().workflow_type, bad = errors.is(err, errors.NOT_FOUND) }
end
"""


async def test_upgrade_continues_as_new_keeping_the_pid(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"upgrading": UPGRADING, "upgraded": UPGRADED})
    wid = f"up-{uuid.uuid4().hex[:8]}"
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:upgrading", None, workflow_id=wid)
        out = await rt.result(pid)
        assert out == {"n": 3, "runs": 3, "pid": str(pid), "run": out["run"], "type": "app:upgraded", "bad": True}
        client = await rt.client("app:client")
        # every run continued as new into the next, on one workflow ID
        first_run = (await history(client, wid, run_id=rt._started_runs[("app:client", wid)]))
        assert first_run[-1].event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
