"""Typed Lua in workflows and processes (issue 13), on the real Temporal dev server.

A workflow written in the typed dialect is killed (SIGKILL of its worker
process) during a durable timer and finished by a fresh worker process, which
replays it: the translation is the same text in every process, so history
matches. A typed process reads a real inbox message through `process.Message`,
and an inline (YAML) typed workflow's error names the YAML file and line.
"""

from __future__ import annotations

from typing import Any

import pytest

from moontide_testing import eventually
from moontide import errors
from moontide.runtime import AppRuntime

from test_crash import HANG, count, finish, history, make_crash_app, workers  # noqa: F401  (workers: a fixture)

TYPED_WORKFLOW = """
type Order = {
    id: string @min_len(1),
    items: {{sku: string, qty: integer @min(1)}} @min_len(1),
    express?: boolean,
}
type Receipt = {order: string, stamps: {string}, total: integer}

local function count_items(order: Order): integer
    local n: integer = 0
    for _, item in ipairs(order.items) do n = n + item.qty end
    return n
end

return function(input: any): Receipt
    local order = Order(input)
    local first = funcs.call("stamp", "before " .. order.id) :: string
    time.sleep(order.express and "1ms" or "2s")
    local second = funcs.call("stamp", "after " .. (order!).id) as string
    local total: integer @min(1) = count_items(order)
    return Receipt({ order = order.id, stamps = { first, second }, total = total })
end
"""

STAMP = "return function(what: string): string return 'done ' .. what end"


async def test_a_typed_workflow_killed_during_its_timer_is_replayed_by_a_fresh_worker(
        make_app: Any, temporal_address: str, workers: Any) -> None:  # noqa: F811 (test_crash's fixture)
    app = make_crash_app(make_app, TYPED_WORKFLOW, {"stamp": STAMP})
    rt = AppRuntime(app, temporal=temporal_address)
    first = await workers(app)
    pid = await rt.spawn("app:wf", None, {"id": "o-1", "items": [{"sku": "a", "qty": 2}, {"sku": "b", "qty": 1}]})
    await eventually(lambda: history(rt, pid), lambda evs: count(evs, "TIMER_STARTED") == 1, what="timer started",
                     timeout=HANG)
    first.kill()
    second = await workers(app)
    result, evs = await finish(rt, pid, first, second)
    assert result == {"order": "o-1", "stamps": ["done before o-1", "done after o-1"], "total": 3}
    assert count(evs, "TIMER_FIRED") == 1 and count(evs, "ACTIVITY_TASK_COMPLETED") == 2

    # and a bad order fails the workflow with the path of what is wrong
    bad = await rt.spawn("app:wf", None, {"id": "o-2", "items": [{"sku": "a", "qty": 0}]})
    with pytest.raises(errors.MoontideError) as info:
        await rt.result(bad)
    assert info.value.kind == "Invalid"
    assert "Order.items[1].qty: must be >= 1, got 0" in info.value.message


INLINE_APP = """\
version: "1.0"
namespace: app
entries:
  - name: client
    kind: temporal.client
    address: 127.0.0.1:1
  - name: worker
    kind: temporal.worker
    client: client
    task_queue: TASK_QUEUE
  - name: host
    kind: process.host
  - name: flow
    kind: workflow.lua
    source: |
      type Input = {name: string}
      return function(input: Input?): string
        local who: string = (input!).name
        return "hello " .. who
      end
  - name: reader
    kind: process.lua
    modules: [process]
    source: |
      type Message = process.Message
      type Greeting = {text: string @min_len(1)}
      return function(n: integer @min(1)): {string}
        local got: {string} = {}
        for i = 1, n do
          local msg = Message(process.inbox():receive())
          got[i] = msg:topic() .. ": " .. Greeting(msg:payload():data()).text
        end
        return got
      end
"""


async def test_typed_inline_workflow_and_process(make_app: Any, temporal_address: str, task_queue: str) -> None:
    app = make_app({"app.yaml": INLINE_APP.replace("TASK_QUEUE", task_queue)})
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        assert await rt.result(await rt.spawn("app:flow", None, {"name": "ann"})) == "hello ann"
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(await rt.spawn("app:flow", None, None))
        # the inline source's line 3 is the YAML's line 18
        assert "app.yaml:18: attempt to index a nil value (local 'input')" in info.value.message

        reader = await rt.spawn("app:reader", "app:host", 2)
        await rt.send(reader, "hi", {"text": "one"})
        await rt.send(reader, "hey", {"text": "two"})
        assert await rt.result(reader) == ["hi: one", "hey: two"]

        wrong = await rt.spawn("app:reader", "app:host", 1)
        await rt.send(wrong, "hi", {"text": ""})
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(wrong)
        assert "Greeting.text: length must be >= 1, got 0" in info.value.message
        with pytest.raises(errors.MoontideError) as info:
            await rt.result(await rt.spawn("app:reader", "app:host", 0))
        assert "n: must be >= 1, got 0" in info.value.message
