"""Values at the edge of what crosses between Lua and the host: one depth limit (moontide.values.MAX_DEPTH)
that the Lua encoder, json.decode and Python all keep, and text that is not UTF-8 failing as Invalid
with its path (issue 11, item 3). Real lupa, no Temporal."""

from __future__ import annotations

import pytest
from lua_helpers import done, make_runtime, run_lua

from moontide import errors, values
from moontide.values import MAX_DEPTH
from moontide_testing import nested

#: builds a table nested ``n`` deep: {{{...}}} with one element per level
NEST = """
local function nest(n)
  local t = json.array()
  local cur = t
  for _ = 2, n do local c = json.array() cur[1] = c cur = c end
  return t
end
"""
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def test_the_limit_is_documented() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[2] / "docs" / "lua-api.md").read_text()
    assert f"{MAX_DEPTH} levels" in doc


def test_json_encode_up_to_the_limit_and_an_error_past_it() -> None:
    out = done(run_lua(NEST + """
      local d = ...
      local at = json.encode(nest(d))
      local past, err = json.encode({ order = { lines = nest(d - 1) } })
      return #at, past, errors.is(err, errors.INTERNAL), tostring(err)
    """, MAX_DEPTH, modules=["json", "errors"]))
    assert out[0] == 2 * MAX_DEPTH
    assert out[1] is None and out[2] is True  # json's errors are Internal, as in Wippy
    # the path names where it went too deep (a long path keeps its ends)
    assert out[3].startswith("value.order.lines[1][1][1][1][1][1]...(")
    assert TOO_DEEP in out[3]


def test_json_decode_up_to_the_limit_and_an_error_past_it() -> None:
    out = done(run_lua("""
      local d = ...
      local at = json.decode(string.rep("[", d) .. string.rep("]", d))
      local past, err = json.decode(string.rep("[", d + 1) .. string.rep("]", d + 1))
      local huge, err2 = json.decode(string.rep("[", 10000) .. string.rep("]", 10000))
      local depth, t = 0, at
      while type(t) == "table" do depth = depth + 1 t = t[1] end
      return depth, past, errors.is(err, errors.INTERNAL), tostring(err), huge, errors.is(err2, errors.INTERNAL),
        tostring(err2)
    """, MAX_DEPTH, modules=["json", "errors"]))
    assert out[0] == MAX_DEPTH
    assert out[1] is None and out[2] is True and TOO_DEEP in out[3]
    assert out[3].startswith("json.decode[1][1]")
    assert out[4] is None and out[5] is True and TOO_DEEP in out[6]


def test_json_decode_of_a_lone_surrogate_is_an_error_naming_the_path() -> None:
    out = done(run_lua(r"""
      local v, err = json.decode('{"a": [1, "ok", "\\ud800"]}')
      local pair = json.decode('"\\ud83d\\ude00"')
      return v, errors.is(err, errors.INTERNAL), tostring(err), pair
    """, modules=["json", "errors"]))
    assert out[0] is None and out[1] is True
    assert out[2] == "json.decode.a[3]: string holds a lone surrogate \\ud800, which is not text (UTF-8 cannot encode it)"
    assert out[3] == "\U0001F600"  # a valid pair is text


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 10_000])
def test_a_result_past_the_limit_is_invalid_not_a_recursion_error(depth: int) -> None:
    rt = make_runtime()
    table = done(run_lua(NEST + "return nest(...)", depth, rt=rt, modules=["json"]))[0]
    with pytest.raises(errors.Invalid, match=TOO_DEEP) as info:
        rt.from_lua(table, "result")
    assert info.value.message.startswith("result[1][1]")
    at = done(run_lua(NEST + "return nest(...)", MAX_DEPTH, rt=rt, modules=["json"]))[0]
    assert rt.from_lua(at, "result") == nested(MAX_DEPTH)


def test_arguments_past_the_limit_fail_at_the_call_site() -> None:
    out = done(run_lua(NEST + """
      local v, err = process.send("{host|r.1}", "t", { batch = nest(...) })
      return v, err:kind(), err:message()
    """, MAX_DEPTH, modules=["process", "json"]))
    assert out[0] is None and out[1] == "Invalid"  # before anything reached the host
    assert out[2].startswith("payload.batch[1][1]") and TOO_DEEP in out[2]


def test_values_decode_names_the_problem_and_its_path() -> None:
    cases = {
        b'{"items": [{"sku": "a\xffb"}]}': "order.items[1].sku: string is not valid UTF-8 (byte 0xff)",
        b'{"items": [{"\xfe": 1}]}': "order.items[1]: field name is not valid UTF-8 (byte 0xfe)",
        b"\xff": "order: not valid UTF-8 text (invalid start byte at byte 0)",
        b'["\\ud800"]': "order[1]: string holds a lone surrogate \\ud800, which is not text (UTF-8 cannot encode it)",
        b'{"n": NaN}': "order: NaN is not a JSON number",
        b"[1,": "order: not JSON: Expecting value: line 1 column 4 (char 3)",
    }
    for data, message in cases.items():
        with pytest.raises(errors.Invalid) as info:
            values.decode(data, "order")
        assert info.value.message == message
    deep = b'{"a": ' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    with pytest.raises(errors.Invalid, match=TOO_DEEP) as info:
        values.decode(deep, "input", "spawn of app:x")
    assert info.value.message.startswith("spawn of app:x: input.a[1][1][1][1][1][1][1]...(")
    assert values.decode(b'"\\ud83d\\ude00"', "v") == "\U0001F600"
    assert values.decode("[" * MAX_DEPTH + "]" * MAX_DEPTH, "v") == nested(MAX_DEPTH)


def test_values_encode_refuses_what_lua_could_not_take() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    cases = [
        (nested(5000), TOO_DEEP),
        (nested(MAX_DEPTH + 1), TOO_DEEP),
        ({"a": ["\ud800"]}, "payload.a[1]: string holds a lone surrogate \\ud800"),
        ({"a": float("nan")}, "payload.a: number nan has no JSON form"),
        ({"a": {1, 2}}, "payload.a: a Python set is not a JSON value"),
        (cyclic, "payload[1]: the value contains itself"),
    ]
    for value, words in cases:
        with pytest.raises(errors.Invalid) as info:
            values.encode(value, "payload")
        assert words in info.value.message
    assert values.encode(nested(MAX_DEPTH), "payload") == "[" * MAX_DEPTH + "]" * MAX_DEPTH
