"""Bad input on a process host fails cleanly (issue 11, item 3): what Lua could not take never enters a process.

A message into an inbox is refused at the door with ``Invalid`` naming its
problem and path (its sender waits for the delivery, so it is told), and the
messages after it arrive; spawn arguments from Python are checked the same way;
values up to ``MAX_DEPTH`` cross.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide import errors
from moontide.processes import control
from moontide.runtime import AppRuntime
from moontide.values import MAX_DEPTH
from moontide_testing import moontide, nested

TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"
COLLECT = """
local function depth(t) local n = 0 while type(t) == "table" do n = n + 1 t = t[1] end return n end
return function(n, arg)
  local got = {}
  for _ = 1, n do
    local data = process.inbox():receive():payload():data()
    got[#got + 1] = data.n or depth(data)   -- {n = k}, or how deep it was
  end
  return { got = got, arg_depth = depth(arg) }
end
"""


#: payload texts only a program outside Lua can hand to a host, and what the refusal says
BAD_TEXT = {
    '"\\ud800"': "payload: string holds a lone surrogate \\ud800",
    '{"a": "\udcff"}': "payload.a: string is not valid UTF-8 (byte 0xff)",
    "[" * 10_000 + "]" * 10_000: "payload[1][1][1][1][1][1][1][1]...(244 more)...[1][1][1][1]: " + TOO_DEEP,
    "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1): TOO_DEEP,
    "NaN": "payload: NaN is not a JSON number",
}


async def test_a_message_lua_could_not_take_is_refused_and_the_next_ones_arrive(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"collect": COLLECT})
    async with running(app) as system:
        pid = system.spawn("app:collect", "app:host", 3, nested(MAX_DEPTH))
        await system.send(pid, "m", {"n": 1})
        for text, words in BAD_TEXT.items():  # as moontide.deliver / moontide.control hand it over
            with pytest.raises(errors.Invalid) as info:
                await system.deliver(pid, "m", text)
            assert info.value.message.startswith(f"deliver to {pid}: payload")
            assert words in info.value.message
        for payload, words in [("\ud800", "lone surrogate"), (nested(MAX_DEPTH + 1), TOO_DEEP),
                               (nested(5000), TOO_DEEP)]:
            with pytest.raises(errors.Invalid, match=f"send to {pid}: payload.*{words}"):
                await system.send(pid, "m", payload)
        await settle(system, pid)
        assert system.status(pid)["status"] == "RUNNING"
        await system.send(pid, "m", {"n": 2})
        await system.send(pid, "m", nested(MAX_DEPTH))  # at the limit: crosses
        result = await asyncio.wait_for(system.result(pid), 30)
    assert result == {"got": [1, 2, MAX_DEPTH], "arg_depth": MAX_DEPTH}


async def test_spawn_arguments_lua_could_not_take_are_refused_naming_them(make_app: Callable[..., Path]) -> None:
    app = process_app(make_app, {"collect": COLLECT})
    async with running(app) as system:
        for args, words in [((1, nested(MAX_DEPTH + 1)), "argument 2[1][1]"),
                            ((1, nested(5000)), "argument 2[1][1]"),
                            ((1, {"who": "\ud800"}), "argument 2.who: string holds a lone surrogate"),
                            ((float("nan"),), "argument 1: number nan has no JSON form")]:
            with pytest.raises(errors.Invalid) as info:
                system.spawn("app:collect", "app:host", *args)
            assert info.value.message.startswith("process.spawn of app:collect: ")
            assert words in info.value.message
        assert system.host("app:host").spawned == 0


async def test_a_bad_message_from_another_program_is_refused_and_status_still_answers(
        make_app: Callable[..., Path], temporal_address: str) -> None:
    app = process_app(make_app, {"collect": COLLECT}, workflows={"noop": "return function() return 1 end"})
    async with AppRuntime(app, temporal=temporal_address, serve=True) as rt:
        pid = str(await rt.spawn("app:collect", "app:host", 2))
        client = await rt.client("app:client")
        # another program's request, through the host run's moontide.control queue
        with pytest.raises(errors.Invalid, match="lone surrogate"):
            await control(client, "send", pid, "m", '"\\ud800"', None)
        with pytest.raises(errors.Invalid, match=TOO_DEEP):
            await control(client, "send", pid, "m", "[" * 10_000 + "]" * 10_000, None)
        sent = await asyncio.to_thread(moontide, "send", pid, "m", '"\\ud800"', "--app", str(app),
                                       "--temporal", temporal_address)
        assert sent.returncode == 2 and "lone surrogate \\ud800" in sent.stderr, sent
        status = await asyncio.to_thread(moontide, "status", pid, "--app", str(app), "--temporal", temporal_address)
        assert status.returncode == 0 and "RUNNING" in status.stdout, status
        outside = AppRuntime(app, temporal=temporal_address)
        await outside.send(pid, "m", {"n": 1})
        await outside.send(pid, "m", {"n": 2})
        result = await asyncio.wait_for(outside.result(pid), 30)
    assert result["got"] == [1, 2]
