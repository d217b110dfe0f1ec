"""funcs.async futures per Wippy's en/lua/core/future.md, in workflows and processes.

f:result() reads the future without waiting (nil, nil while it runs; its
payload, or nil and the error); f:response() (alias f:channel()) receives
the payload, or the error, once it is done; f:error() wraps a failure as a
non-retryable Internal error; f:cancel() cancels it (Canceled from then on);
f:is_complete(), f:is_canceled(). Workflow tests replay their history in a
fresh process (``moontide_testing.replay_in_fresh_process``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from temporalio.api.enums.v1 import EventType

from _issue3 import history, make_flows
from moontide_testing import replay_in_fresh_process, running

SLOW = {"slow": """
    return function()
      time.sleep("1h")
      return "never"
    end
"""}


async def test_reading_a_canceled_future_does_not_end_the_workflow(make_app: Callable[..., Path],
                                                                    temporal_address: str) -> None:
    # The bug: result() after cancel() ended the whole workflow "[Canceled] Cancelled", even in pcall.
    flow = """
    return function()
      local f = funcs.async("app:slow", {})
      local canceled = f:cancel()
      local v, err = f:result()
      local ok, pv, perr = pcall(function() return f:result() end)
      local got, open = f:response():receive()
      local wrapped, failed = f:error()
      -- one already scheduled: Temporal is asked to cancel its activity
      local g = funcs.async("app:slow", {})
      time.sleep("10ms")
      g:cancel()
      local gv, gerr = g:result()
      return {
        scheduled = gv == nil and errors.is(gerr, errors.CANCELED),
        canceled = canceled, again = f:cancel(), is_canceled = f:is_canceled(), complete = f:is_complete(),
        v = v == nil, err = errors.is(err, errors.CANCELED), pcall = ok and pv == nil and errors.is(perr, errors.CANCELED),
        channel_closed = got == nil and open == false, error = failed and errors.is(wrapped, errors.INTERNAL),
        after = funcs.call("echo", "still running"),
      }
    end
    """
    app = make_flows(make_app, {"flow": flow}, SLOW)
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == {
            "scheduled": True, "canceled": True, "again": False, "is_canceled": True, "complete": True, "v": True, "err": True,
            "pcall": True, "channel_closed": True, "error": True, "after": "still running"}
        evs = await history(await rt.client("app:client"), pid.workflow_id)
        scheduled = [e.activity_task_scheduled_event_attributes.activity_type.name for e in evs
                     if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED]
        # the first was canceled before it was scheduled; the second's cancel reached Temporal
        assert scheduled == ["app:slow", "app:echo"]
        assert [e.event_type for e in evs].count(EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED) == 1
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


FUTURE_API = """
return function()
  local out = {}
  local f = funcs.async("nap", "200ms", { n = 1 })
  local v, err = f:result()
  out.pending = { v = v == nil, err = err == nil, complete = f:is_complete(), canceled = f:is_canceled() }
  local ch = f:response()
  out.alias = ch == f:channel()
  local payload, open = ch:receive()
  local value, verr = f:result()
  out.done = { open = open, data = payload:data().n, result = value:data().n, verr = verr == nil,
               complete = f:is_complete(), error = select(2, f:error()), cancel = f:cancel() }
  -- a failure: the channel's value is the error; result() keeps its kind and retryable; error() wraps it
  local bad = funcs.async("fail", "no stock")
  local got, bopen = bad:response():receive()
  local bv, berr = bad:result()
  local wrapped, has = bad:error()
  out.failed = { value_is_error = errors.is(got, "Unavailable"), open = bopen, result = bv == nil,
                 kind = errors.is(berr, "Unavailable"), message = tostring(berr), has = has,
                 wrapped = errors.is(wrapped, errors.INTERNAL), wrapped_message = tostring(wrapped) }
  -- polled by a select with a default: not ready, then the failure as the case's value
  local later = funcs.async("fail", "later")
  local first = channel.select{ later:response():case_receive(), default = true }
  later:response():receive()
  local second = channel.select{ later:response():case_receive(), default = true }
  out.polled = { first = first.default == true, second_ok = second.ok, second = tostring(second.value) }
  return out
end
"""


def expected_future_api() -> dict[str, object]:
    return {
        "pending": {"v": True, "err": True, "complete": False, "canceled": False},
        "alias": True,
        "done": {"open": True, "data": 1, "result": 1, "verr": True, "complete": True, "error": False,
                 "cancel": False},
        "failed": {"value_is_error": True, "open": True, "result": True, "kind": True, "message": "no stock",
                   "has": True, "wrapped": True, "wrapped_message": "no stock"},
        "polled": {"first": True, "second_ok": True, "second": "later"},
    }


async def test_the_future_api(make_app: Callable[..., Path], temporal_address: str) -> None:
    app = make_flows(make_app, {"flow": FUTURE_API})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:flow", None)
        assert await rt.result(pid) == expected_future_api()
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


# future.md's "Timeout Pattern" and "First-to-Complete", as the page writes them.
TIMEOUT_PATTERN = """
local time = require("time")

local function main(data)
  local future, err = funcs.async("app:slow", data)
  if err then
      return nil, err
  end

  local timeout, err = time.after("100ms")
  if err then
      return nil, err
  end

  local r = channel.select {
      future:channel():case_receive(),
      timeout:case_receive()
  }

  if r.channel == timeout then
      future:cancel()
      return nil, errors.new({ kind = errors.TIMEOUT, message = "Operation timed out" })
  end

  local payload, result_err = future:result()
  if result_err then
      return nil, result_err
  end
  local value, data_err = payload:data()
  if data_err then return nil, data_err end
  return value
end

return main
"""

FIRST_TO_COMPLETE = """
local function main(key)
  local f1, err = funcs.async("app:cache_get", key)
  if err then
      return nil, err
  end
  local f2, err = funcs.async("app:db_get", key)
  if err then
      return nil, err
  end

  local ch1 = f1:channel()
  local ch2 = f2:channel()

  local r = channel.select {
      ch1:case_receive(),
      ch2:case_receive()
  }

  -- The slower operation may still complete; this caller ignores its result.
  local winner
  if r.channel == ch1 then
      winner = f1
  else
      winner = f2
  end

  local payload, result_err = winner:result()
  if result_err then
      return nil, result_err
  end
  local value, data_err = payload:data()
  if data_err then return nil, data_err end
  return value
end

return main
"""

LOOKUPS = {
    "cache_get": """
        return function(key)
          time.sleep("50ms")
          return "cached " .. key
        end
    """,
    "db_get": """
        return function(key)
          time.sleep("3s")
          return "stored " .. key
        end
    """,
}


async def test_the_docs_timeout_and_first_to_complete_patterns(make_app: Callable[..., Path],
                                                              temporal_address: str) -> None:
    app = make_flows(make_app, {"timeout": TIMEOUT_PATTERN, "first": FIRST_TO_COMPLETE}, {**SLOW, **LOOKUPS})
    async with running(app, temporal_address) as rt:
        timed_out = await rt.spawn("app:timeout", None, {"x": 1})
        first = await rt.spawn("app:first", None, "k1")
        from moontide.runtime import WorkflowFailed

        try:
            await rt.result(timed_out)
            raise AssertionError("the timeout pattern did not time out")
        except WorkflowFailed as e:
            assert (e.kind, str(e)) == ("Timeout", "Operation timed out")
        assert await rt.result(first) == "cached k1"
        assert await replay_in_fresh_process(rt, timed_out) == "REPLAYED"
        assert await replay_in_fresh_process(rt, first) == "REPLAYED"
