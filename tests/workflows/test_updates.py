"""Temporal updates and Wippy's built-in queries (Wippy's service/temporal/workflow: update_manager.go, handler_events.go).

An update reaches the workflow as a message on its name from the pid
``{update|<update id>}``; the workflow answers there: ``ack`` then ``ok``
(the update's result) or ``error`` (it fails), or ``nak`` (it is refused).
The queries ``state`` (Wippy's queryable state: nothing sets it, so {}) and
``pid`` (the workflow ID) answer beside Moontide's ``moontide.status``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowUpdateFailedError
from temporalio.common import RawValue
from temporalio.exceptions import ApplicationError

from _issue3 import history, make_flows, wait_blocking
from moontide_testing import replay_in_fresh_process, running

# The docs' counter ("Multiple Signal Handlers"), its handlers in spawned coroutines; the main
# function hands them their messages (process.listen(topic, {message = true}) would too).
COUNTER = """
local function main(input)
    local counter = input.initial or 0
    local done = false
    local queues = { increment = channel.new(10), decrement = channel.new(10) }

    coroutine.spawn(function()
        local ch = queues.increment
        while not done do
            local msg, ok = ch:receive()
            if not ok then break end

            local data = msg:payload():data()
            local reply_to = msg:from()

            if type(data) ~= "table" or type(data.amount) ~= "number" then
                process.send(reply_to, "nak", "amount must be a number")
            else
                process.send(reply_to, "ack")
                counter = counter + data.amount
                process.send(reply_to, "ok", {value = counter})
            end
        end
    end)

    coroutine.spawn(function()
        local ch = queues.decrement
        while not done do
            local msg, ok = ch:receive()
            if not ok then break end

            local data = msg:payload():data()
            local reply_to = msg:from()

            if counter - data.amount < 0 then
                process.send(reply_to, "nak", "would result in negative value")
            else
                process.send(reply_to, "ack")
                counter = counter - data.amount
                process.send(reply_to, "ok", {value = counter})
            end
        end
    end)

    local inbox = process.inbox()
    while true do
        local msg = inbox:receive()
        local queue = queues[msg:topic()]
        if queue then
            queue:send(msg)
        elseif msg:topic() == "fail" then
            local _, early = process.send(msg:from(), "ok", "too soon")    -- not accepted yet
            process.send(msg:from(), "ack")
            process.send(msg:from(), "error", "failed on purpose after: " .. tostring(early))
        elseif msg:topic() == "finish" then
            process.send(msg:from(), "ack")
            process.send(msg:from(), "ok", {message = "finishing"})
            done = true
            local late, late_err = process.send(msg:from(), "ok", "again")
            return {final_counter = counter, late = late == nil and errors.is(late_err, errors.NOT_FOUND)}
        end
    end
end

return main
"""


async def test_updates_answered_with_the_reply_protocol(make_app: Callable[..., Path],
                                                         temporal_address: str) -> None:
    app = make_flows(make_app, {"counter": COUNTER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:counter", None, {"initial": 0})
        await wait_blocking(rt, pid, "receive on inbox")
        handle = await rt.handle(pid)
        assert await handle.execute_update("increment", {"amount": 2}) == {"value": 2}
        assert await handle.execute_update("increment", {"amount": 5}) == {"value": 7}
        assert await handle.execute_update("decrement", {"amount": 3}) == {"value": 4}
        with pytest.raises(WorkflowUpdateFailedError) as nak:
            await handle.execute_update("decrement", {"amount": 10})
        assert isinstance(nak.value.cause, ApplicationError)
        assert nak.value.cause.message == "would result in negative value"
        with pytest.raises(WorkflowUpdateFailedError) as bad:
            await handle.execute_update("increment", {"amount": "lots"})
        assert bad.value.cause.message == "amount must be a number"
        with pytest.raises(WorkflowUpdateFailedError) as failed:
            await handle.execute_update("fail", None)
        assert failed.value.cause.message.startswith("failed on purpose after: process.send to {update|")
        assert "send ack first" in failed.value.cause.message
        # the queries answer meanwhile
        assert await handle.query("state") == {}
        assert await handle.query("pid") == pid.workflow_id
        assert (await rt.status(pid))["lua"]["messages_received"] == 6
        assert await handle.execute_update("finish", {}) == {"message": "finishing"}
        assert await rt.result(pid) == {"final_counter": 4, "late": True}
        kinds = [e.event_type for e in await history(await rt.client("app:client"), pid.workflow_id)]
        assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == 7
        assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED) == 7
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"


async def test_an_update_that_cannot_be_decoded_is_rejected(make_app: Callable[..., Path],
                                                             temporal_address: str) -> None:
    app = make_flows(make_app, {"counter": COUNTER})
    async with running(app, temporal_address) as rt:
        pid = await rt.spawn("app:counter", None, {"initial": 1})
        await wait_blocking(rt, pid, "receive on inbox")
        handle = await rt.handle(pid)
        broken: Any = RawValue(Payload(metadata={"encoding": b"json/plain"}, data=b'{"amount": 1'))
        with pytest.raises(WorkflowUpdateFailedError) as e:
            await handle.execute_update("increment", broken)
        assert "its input cannot be decoded" in e.value.cause.message
        assert await handle.execute_update("increment", {"amount": 1}) == {"value": 2}
        kinds = [e.event_type for e in await history(await rt.client("app:client"), pid.workflow_id)]
        # refused before the workflow saw it: no trace in history, and the counter never saw it
        assert kinds.count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED) == 1
        assert (await rt.status(pid))["lua"]["messages_received"] == 1
        assert await replay_in_fresh_process(rt, pid) == "REPLAYED"
