"""Values crossing between Lua and Python: JSON text made in Lua with sorted keys,
the empty-table rule, clear Invalid errors naming the path, exact numbers."""

from __future__ import annotations

from typing import Any

import pytest
from lua_helpers import done, make_runtime, run_lua, run_python

from moontide import errors
from moontide.lua import Runtime


def lua_value(body: str, *args: Any, modules: list[str] | None = None) -> tuple[Runtime, Any]:
    rt = make_runtime()
    vals = done(run_lua(body, *args, rt=rt, modules=modules or ["json"]))
    return rt, vals[0]


def cross(body: str, *args: Any, **kw: Any) -> Any:
    rt, v = lua_value(body, *args, **kw)
    return rt.from_lua(v)


def invalid(body: str, *args: Any, **kw: Any) -> str:
    rt, v = lua_value(body, *args, **kw)
    with pytest.raises(errors.Invalid) as info:
        rt.from_lua(v)
    return info.value.message


def test_nested_tables_with_sorted_keys() -> None:
    rt, v = lua_value("return {zeta = 1, alpha = {c = {3, 2, 1}, b = true, a = 'x'}, mid = {}}")
    out = rt.from_lua(v)
    assert out == {"alpha": {"a": "x", "b": True, "c": [3, 2, 1]}, "mid": {}, "zeta": 1}
    assert list(out) == ["alpha", "mid", "zeta"]
    assert list(out["alpha"]) == ["a", "b", "c"]


def test_json_text_has_sorted_keys() -> None:
    assert cross("return json.encode({b = 1, a = {d = 1, c = 2}, [''] = 0})") == '{"":0,"a":{"c":2,"d":1},"b":1}'


def test_empty_table_is_object_unless_marked_array() -> None:
    assert cross("return {}") == {}
    assert cross("return json.array()") == []
    assert cross("return {a = {}, b = json.array(), c = json.array({1, 2})}") == {"a": {}, "b": [], "c": [1, 2]}


def test_decoded_empty_array_round_trips() -> None:
    assert cross("return (json.decode('[]'))") == []
    assert cross("return json.encode(json.decode('{\"a\": [], \"b\": {}, \"c\": [[]]}'))") == \
        '{"a":[],"b":{},"c":[[]]}'


def test_python_empty_list_round_trips() -> None:
    rt = make_runtime()
    arg = rt.to_lua({"xs": [], "obj": {}, "nested": [[], {}]})
    out = done(run_lua("local v = ... return v, json.encode(v)", arg, rt=rt, modules=["json"]))
    assert rt.from_lua(out[0]) == {"xs": [], "obj": {}, "nested": [[], {}]}
    assert out[1] == '{"nested":[[],{}],"obj":{},"xs":[]}'


@pytest.mark.parametrize("body, message", [
    ("return {a = {b = function() end}}", "value.a.b: function values cannot cross to JSON"),
    ("return {list = {1, 2, coroutine.create(print)}}", "value.list[3]: thread values cannot cross to JSON"),
    ("local t = {a = {}} t.a.b = t return t", "value.a.b: table contains itself"),
    ("return {n = 0/0}", "value.n: number"),
    ("return {x = {1/0}}", "value.x[1]: number inf has no JSON form"),
    ("return {x = -1/0}", "value.x: number -inf has no JSON form"),
    ("return {a = {[1] = 1, [40] = 3}}", "value.a: array with 2 values has index 40; fill the gaps with json.null"),
    ("return json.array({1, 2, x = 3})", "value: array has named fields"),
    ("return {[0] = 1, [1] = 2}", "value: table mixes field names with the key 0"),
    ("return {1, 2, name = 'x'}", "value: table mixes field names with the key 1"),
    ("return {[true] = 1}", "value: table mixes field names with the key true"),
    ("return {[{}] = 1}", "value: table mixes field names with the key of type table"),
    ("return {s = 'ok \\xff'}", "value.s: string is not valid UTF-8"),
])
def test_bad_values_are_invalid_naming_the_path(body: str, message: str) -> None:
    msg = invalid(body)
    assert msg.startswith(message), msg
    assert "0x" not in msg  # no addresses: the same text in every process


def test_nan_message() -> None:
    msg = invalid("return {n = 0/0}")
    assert msg.endswith("nan has no JSON form"), msg


def test_userdata_is_invalid() -> None:
    rt = make_runtime()
    v = done(run_lua("local x = ... return {x = x}", object(), rt=rt))[0]
    with pytest.raises(errors.Invalid, match=r"^value\.x: userdata values cannot cross to JSON$"):
        rt.from_lua(v)


def test_top_level_nan_and_inf() -> None:
    rt = make_runtime()
    for v in (float("nan"), float("inf")):
        with pytest.raises(errors.Invalid, match="has no JSON form"):
            rt.from_lua(v, "result")


def test_json_encode_reports_the_path_at_call_site() -> None:
    got = done(run_lua("local s, e = json.encode({f = print}) return s, errors.is(e, errors.INTERNAL), tostring(e)",
                       modules=["json", "errors"]))
    assert got == (None, True, "value.f: function values cannot cross to JSON")


def test_integers_stay_ints_floats_stay_floats() -> None:
    out = cross("return {i = 3, big = math.maxinteger, f = 0.1, whole = 1.0, neg0 = -0.0, half = 7 / 2, "
                "two = 4 / 2, huge = 1e300, tiny = 5e-324, p = 2^53}")
    assert out == {"i": 3, "big": 2**63 - 1, "f": 0.1, "whole": 1.0, "neg0": -0.0, "half": 3.5, "two": 2.0,
                   "huge": 1e300, "tiny": 5e-324, "p": 2.0**53}
    for k in ("i", "big"):
        assert type(out[k]) is int, k
    for k in ("f", "whole", "neg0", "half", "two", "huge", "tiny", "p"):
        assert type(out[k]) is float, k
    assert str(out["neg0"]) == "-0.0"


def test_top_level_numbers_keep_their_type() -> None:
    rt = make_runtime()
    i, f, w = done(run_lua("return 3, 0.1, 2.0", rt=rt))
    assert (rt.from_lua(i), rt.from_lua(f), rt.from_lua(w)) == (3, 0.1, 2.0)
    assert type(rt.from_lua(w)) is float


def test_float_round_trip_through_json_encode_decode() -> None:
    got = done(run_lua("""
        local v = json.decode(json.encode({a = 0.1, b = 1.0, c = 1/3, d = 3}))
        return v.a == 0.1, math.type(v.b), v.c == 1/3, math.type(v.d)
    """, modules=["json"]))
    assert got == (True, "float", True, "integer")


def test_python_to_lua_nested() -> None:
    rt = make_runtime()
    arg = rt.to_lua({"name": "x", "items": [1, 2.5, {"deep": [True, False]}], "n": None, "u": "héllo ✓"})
    got = done(run_lua("""
        local v = ...
        return v.name, #v.items, math.type(v.items[1]), math.type(v.items[2]), v.items[3].deep[1],
               v.items[3].deep[2], v.n, utf8.len(v.u), v.u
    """, arg, rt=rt))
    assert got == ("x", 3, "integer", "float", True, False, None, 7, "héllo ✓")


def test_python_to_lua_tables_are_fresh_lua_tables() -> None:
    # Python containers never enter Lua: no Python object behind the tables
    rt = make_runtime()
    arg = rt.to_lua({"a": [1]})
    got = done(run_lua("local v = ... return type(v), type(v.a), rawlen(v.a)", arg, rt=rt))
    assert got == ("table", "table", 1)


def test_from_lua_of_error_object_and_time() -> None:
    out = cross("return {e = errors.new{kind = 'NotFound', message = 'm'}, t = time.unix(0, 5)}",
                modules=["errors", "time"])
    assert out == {"e": {"kind": "NotFound", "message": "m", "retryable": False}, "t": "1970-01-01T00:00:00.000000005Z"}


def test_from_lua_user_tojson_loop_is_budgeted() -> None:
    """A user __tojson runs when Python converts the result, outside any step:
    before the defence it ran unbudgeted and never returned."""
    out = run_python("""
        from lua_helpers import make_runtime, run_lua
        from moontide import errors
        rt = make_runtime()
        v = run_lua("return setmetatable({}, {__tojson = function() while true do end end})", rt=rt).values[0]
        try:
            rt.from_lua(v, "result")
        except errors.Invalid as e:
            print(e.message)
        print(run_lua("return 1 + 1", rt=rt).values[0])
    """, timeout=30)
    assert out.splitlines() == [
        "result: converting the value to JSON ran past the instruction budget (a __tojson metamethod that does not end?)",
        "2",
    ]


def test_error_from_lua_reads_fields_without_metamethods() -> None:
    """err["kind"] from Python would run a user __index outside any budget: hung before the defence."""
    out = run_python("""
        from lua_helpers import make_runtime, run_lua
        rt = make_runtime()
        vals = run_lua('''
            local loop = {__index = function() while true do end end}
            return nil, setmetatable({}, loop), setmetatable({kind = "Timeout", message = "slow"}, loop),
                   errors.new{kind = "NotFound", message = "gone", retryable = true, details = {id = 7}},
                   "plain text"
        ''', rt=rt, modules=["errors"]).values
        for v in vals[1:]:
            e = rt.error_from_lua(v)
            print(e.kind, "|", e.message, "|", e.retryable, "|", e.details)
    """, timeout=30)
    assert out.splitlines() == [
        "Internal | (error object is a table value) | True | None",
        "Timeout | slow | False | None",
        "NotFound | gone | True | {'id': 7}",
        "Internal | plain text | True | None",
    ]


def test_json_decode_values_are_plain_lua() -> None:
    got = done(run_lua("""
        local v = json.decode('{"a": [1, 2.5, "s", true, {"b": null}], "n": 12345678901}')
        return #v.a, math.type(v.a[1]), math.type(v.a[2]), v.a[4], next(v.a[5]), math.type(v.n), json.encode(v)
    """, modules=["json"]))
    assert got == (5, "integer", "float", True, None, "integer", '{"a":[1,2.5,"s",true,{}],"n":12345678901}')


def test_array_with_null_round_trips() -> None:
    assert cross("return (json.decode('[1, null, 3]'))") == [1, None, 3]
    assert cross("return (json.decode('[null, null]'))") == [None, None]


def test_decoded_null_in_an_array_is_json_null() -> None:
    got = done(run_lua("""
        local a = json.decode('{"xs": [1, null, 3, null], "gone": null}')
        return #a.xs, a.xs[2] == json.null, a.xs[4] == json.null, a.gone, tostring(json.null), type(json.null),
               json.encode(a), json.encode({json.null}), json.encode({k = json.null})
    """, modules=["json"]))
    assert got == (4, True, True, None, "null", "table", '{"xs":[1,null,3,null]}', "[null]", '{"k":null}')


def test_python_none_in_a_list_arrives_as_json_null() -> None:
    rt = make_runtime()
    arg = rt.to_lua({"xs": [None, 2, None], "nested": [[None]], "absent": None})
    out = done(run_lua("local v = ... return #v.xs, v.xs[1] == json.null, v.absent, v", arg, rt=rt, modules=["json"]))
    assert out[:3] == (3, True, None)
    assert rt.from_lua(out[3]) == {"xs": [None, 2, None], "nested": [[None]]}


def test_arrays_with_holes_encode_null() -> None:
    assert cross("return {1, nil, 3}") == [1, None, 3]
    assert cross("return json.array({nil, nil, 'x'})") == [None, None, "x"]
    assert cross("local t = {} t[1] = 'a' t[5] = 'e' return t") == ["a", None, None, None, "e"]


def test_json_null_is_read_only_and_shared() -> None:
    got = done(run_lua("""
        local ok1, e1 = pcall(function() json.null.x = 1 end)
        local ok2, e2 = pcall(rawset, json.null, "x", 1)
        local ok3 = pcall(setmetatable, json.null, {})
        return ok1, e1, ok2, e2, ok3, getmetatable(json.null), next(json.null)
    """, modules=["json"]))
    assert got[0] is False and "json.null" in got[1] and "read-only" in got[1]
    assert got[2] is False and "read-only" in got[3]
    assert got[4:] == (False, False, None)


def test_border_with_other_keys_is_not_an_array() -> None:
    # #t is 3 and there are 3 keys, but one of them is not 1..3
    assert invalid("local t = {1, nil, 3, x = 1} return t").startswith("value: array has named fields")


def test_encode_inside_tojson_and_after_a_failed_encode() -> None:
    # the encoder reuses scratch tables: a nested encode and a failed one must not disturb them
    got = done(run_lua("""
        local inner = setmetatable({}, {__tojson = function() return {nested = json.encode({a = {1, 2}})} end})
        local first = json.encode({x = inner, y = "after"})
        local bad, err = json.encode({f = print})
        local bomb = setmetatable({}, {__tojson = function() error("boom") end})
        local bad2, err2 = json.encode({deep = {bomb}})
        return first, err:message(), err2:message(), json.encode({ok = {true, "s"}})
    """, modules=["json"]))
    assert got[0] == '{"x":{"nested":"{\\"a\\":[1,2]}"},"y":"after"}'
    assert got[1] == "value.f: function values cannot cross to JSON"
    assert "boom" in got[2]
    assert got[3] == '{"ok":[true,"s"]}'
