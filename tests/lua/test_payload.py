"""The payload module, from Wippy's page (en/lua/data/payload.md)."""

from __future__ import annotations

import msgpack
import pytest
import yaml
from lua_helpers import done, make_runtime, run_lua

MODS = ["payload", "errors", "json", "base64"]


def lua(body: str, *args: object) -> tuple[object, ...]:
    return done(run_lua(body, *args, modules=MODS))


def test_format_constants() -> None:
    got = lua("""
        local f = payload.format
        return f.JSON, f.YAML, f.STRING, f.BYTES, f.MSGPACK, f.LUA, f.GOLANG, f.ERROR
    """)
    assert got == ("json/plain", "yaml/plain", "text/plain", "application/octet-stream", "application/msgpack",
                   "lua/any", "golang/any", "golang/error")


def test_new_payloads_are_lua_and_give_their_data_back() -> None:
    got = lua("""
        local t = payload.new({user_id = 123, name = "Alice", roles = {"admin", "user"}})
        local data = t:data()
        return t:get_format(), data.user_id, data.roles[2], payload.new("Hello"):data(), payload.new(42.5):data(),
               payload.new(true):data(), payload.new(nil):data(), payload.new(nil):get_format(),
               payload.new(errors.new("something failed")):get_format(), payload.new("x"):unmarshal(),
               tostring(t)
    """)
    assert got == ("lua/any", 123, "user", "Hello", 42.5, True, None, "lua/any", "golang/error", "x",
                   "payload{format=lua/any}")


def test_transcode_to_json_yaml_and_msgpack() -> None:
    got = lua("""
        local p = payload.new({name = "test", value = 123, items = {1, 2, 3}})
        local j = p:transcode(payload.format.JSON)
        local y = p:transcode(payload.format.YAML)
        local m = p:transcode(payload.format.MSGPACK)
        local back = m:transcode(payload.format.YAML):transcode(payload.format.JSON):data()
        -- the encoded form itself, as a string payload of the encoded payload's bytes
        return j:get_format(), y:get_format(), m:get_format(), j:data().value, y:data().items[3], m:unmarshal().name,
               back.name, back.items[2], p:transcode(payload.format.LUA):get_format(),
               j:transcode(payload.format.STRING) == nil
    """)
    assert got == ("json/plain", "yaml/plain", "application/msgpack", 123, 3, "test", "test", 2, "lua/any", True)


def test_encoded_forms_are_the_standard_ones() -> None:
    """What a transcode holds is plain JSON, YAML and MessagePack: other tools read it."""
    rt = make_runtime()
    code = """
        local p = payload.new({name = "test", value = 123, items = {1, 2}})
        local y = p:transcode(payload.format.YAML)
        local m = p:transcode(payload.format.MSGPACK)
        -- read the raw encodings through a STRING/BYTES-typed view: transcode keeps a string as it is
        return rawget(p:transcode(payload.format.JSON), "_raw"), rawget(y, "_raw"), base64.encode(rawget(m, "_raw"))
    """
    got = done(run_lua(code, rt=rt, modules=MODS))
    import base64
    import json

    value = {"name": "test", "value": 123, "items": [1, 2]}
    assert json.loads(got[0]) == value
    assert yaml.safe_load(got[1]) == value
    assert msgpack.unpackb(base64.b64decode(got[2])) == value


def test_string_and_bytes_hold_strings_as_they_are() -> None:
    got = lua("""
        local s = payload.new("Hello, World!"):transcode(payload.format.STRING)
        local b = payload.new("\\x00\\xff"):transcode(payload.format.BYTES)
        local n = payload.new(42):transcode(payload.format.STRING)
        local _, err = payload.new({a = 1}):transcode(payload.format.STRING)
        local j = payload.new("text"):transcode(payload.format.JSON)
        return s:data(), s:get_format(), #b:data(), b:get_format(), n:data(), errors.is(err, errors.INTERNAL),
               tostring(err), rawget(j, "_raw"), j:data()
    """)
    assert got == ("Hello, World!", "text/plain", 2, "application/octet-stream", "42", True,
                   "payload:transcode: a table has no text/plain form (transcode to JSON or YAML)", '"text"', "text")


def test_transcode_failures_are_internal() -> None:
    got = lua("""
        local _, unknown = payload.new(1):transcode("image/png")
        local _, fn = payload.new({f = print}):transcode(payload.format.JSON)
        local _, not_error = payload.new(1):transcode(payload.format.ERROR)
        return errors.is(unknown, errors.INTERNAL), tostring(unknown), errors.is(fn, errors.INTERNAL), tostring(fn),
               errors.is(not_error, errors.INTERNAL)
    """)
    assert got == (True, "payload:transcode: unknown format image/png (use a payload.format constant)", True,
                   "payload:transcode: payload.f: function values cannot cross to JSON", True)


def test_a_payload_crosses_as_its_value() -> None:
    rt = make_runtime()
    out = done(run_lua("""
        local y = payload.new({a = {1, 2}}):transcode(payload.format.YAML)
        return json.encode({p = payload.new({k = "v"}), y = y}), y
    """, rt=rt, modules=MODS))
    assert out[0] == '{"p":{"k":"v"},"y":{"a":[1,2]}}'
    assert rt.from_lua(out[1]) == {"a": [1, 2]}


@pytest.mark.parametrize("text, message", [
    ("a: &x [1, 2]\nb: *x\n", "YAML aliases (*name) are not supported"),
    ("a: [1, 2\n", "not YAML"),
    ("a: !!binary aGk=\n", "has no Lua form"),
])
def test_yaml_that_cannot_be_data(text: str, message: str) -> None:
    """Decoding refuses what would not be plain data (an alias could stand for gigabytes)."""
    from moontide import errors
    from moontide.lua.host import FunctionHost

    rt = make_runtime()
    with pytest.raises(errors.Invalid, match=message.replace("*", r"\*").replace("(", r"\(").replace(")", r"\)")):
        FunctionHost(rt).op_payload_decode("yaml/plain", text)


def test_payload_objects_are_per_execution() -> None:
    """The methods are shared and read-only; each payload is a fresh table."""
    got = lua("""
        local p = payload.new(1)
        local ok = pcall(function() p.get_format = nil end)
        local ok2 = pcall(function() payload.format.JSON = "x" end)
        local ok3 = pcall(function() payload.new = nil end)
        return payload.new(2) ~= payload.new(2), ok, ok2, ok3, getmetatable(p)
    """)
    assert got == (True, True, False, False, False)
