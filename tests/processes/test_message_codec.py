"""The Lua-side JSON decoder that turns message payloads into Lua values: same result as json + to_lua."""

from __future__ import annotations

import json

import pytest

from moontide.lua.runtime import Runtime
from moontide.processes._codec import codec

SAMPLES = [
    '{"i":1}', "[1,2,{\"a\":[],\"b\":{}}]", '"h\\u00e9llo\\n\\ud83d\\ude00 \\"q\\" \\\\ \\/"', "12345678901234567890",
    "1.5e3", "-0.25", "0", "-7", "true", "false", '{"a":null,"b":"x"}', "[]", "{}", ' { "x" : [ 1 , 2 ] } ',
    "null", "[1,null,3]", '{"a":[null,{"b":null}]}',
    '"ünïcödé ✓"', '{"nested":{"deeper":{"list":[[1],[2,[3]]]}}}', '[true,false,"s",1.25]', '""',
]


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return Runtime()


@pytest.mark.parametrize("text", SAMPLES)
def test_decode_matches_python(rt: Runtime, text: str) -> None:
    # inside an array, so both sides are Lua values (a big integer becomes a float, null json.null)
    ours = codec(rt).decode(f"[{text}]")
    theirs = rt.to_lua([json.loads(text)])
    assert rt.sandbox.to_json(ours) == rt.sandbox.to_json(theirs)
    assert rt.from_lua(ours) == rt.from_lua(theirs)


def test_message_table_and_fallback(rt: Runtime) -> None:
    c = codec(rt)
    msg = c.message("t", None, '{"a":[1]}')
    assert rt.from_lua(msg) == {"topic": "t", "payload": {"a": [1]}}
    assert c.message("t", "{x|1.1}", None)["payload"] is None
    # text the Lua decoder refuses goes through Python's json (and its error)
    with pytest.raises(json.JSONDecodeError):
        c.decode("{bad")


def test_null_inside_an_array_is_json_null(rt: Runtime) -> None:
    arr = codec(rt).decode("[1,null,3]")
    is_null = rt.lua.eval("function(v, null) return rawequal(v, null) end")
    assert is_null(arr[2], rt.sandbox.null)  # not a hole (nil): the same json.null as everywhere
    assert rt.sandbox.to_json(arr) == "[1,null,3]"
