"""Executions sharing one runtime cannot change what the others see.

A runtime (``Shards``) serves many executions: compiled code, the standard
library tables, modules and the metatables of the objects modules hand out are
shared. Every way of writing into them is refused; each test then checks that
another execution of the same runtime still sees the original.
"""

from __future__ import annotations

import pytest
from lua_helpers import done, failed, make_runtime, run_lua

#: What another execution checks afterwards: all true when nothing was changed.
_CHECK = """
local e = errors.new{kind = "NotFound", message = "m"}
return tostring(string.find) ~= "x" and string.find("abc", "b") == 2
  and type(tostring) == "function" and tostring(12) == "12"
  and e:kind() == "NotFound" and tostring(e) == "m"
  and time.unix(60):unix() == 60 and tostring(time.unix(0)) == "1970-01-01T00:00:00Z"
  and json.encode(json.array()) == "[]" and json.array()[1] == nil
  and os.time{year = 1970, month = 1, day = 1, hour = 0} == 0
"""

MODULES = ["errors", "time", "json", "funcs"]


@pytest.mark.parametrize("attack, refused", [
    ("rawset(string, 'find', 'x')", "attempt to change string.find (read-only)"),
    ("rawset(os, 'time', function() return 0 end)", "attempt to change os.time (read-only)"),
    ("rawset(funcs, 'call', nil)", "attempt to change funcs.call (read-only)"),
    ("rawset(json, 'encode', nil)", "attempt to change json.encode (read-only)"),
    ("getmetatable(_G).__index.tostring = function() return 'x' end", "attempt to index a boolean value"),
    ("errors.new('x').kind = function() return 'x' end", "attempt to change error.kind (read-only)"),
    ("rawset(errors.new('x'), 'kind', function() return 'x' end)", "attempt to change error.kind (read-only)"),
    ("errors.new('x').__index.__tostring = function() return 'x' end", "attempt to index a nil value"),
    ("time.unix(0).__index.unix = function() return 0 end", "attempt to change time.unix (read-only)"),
    ("getmetatable(json.array()).__index = function() return 1 end", "attempt to index a boolean value"),
    ("local mt = getmetatable(json.array()); mt.__newindex = error", "attempt to index a boolean value"),
])
def test_shared_state_cannot_be_changed(attack: str, refused: str) -> None:
    rt = make_runtime()
    err = failed(run_lua(attack + "\nreturn true", rt=rt, modules=MODULES))
    assert refused in str(err)
    assert done(run_lua(_CHECK, rt=rt, modules=MODULES)) == (True,)


def test_check_detects_a_change() -> None:
    """The check above can fail: a change made inside the same execution is seen by it."""
    assert done(run_lua("tostring = function() return 'x' end\n" + _CHECK, modules=MODULES)) == (False,)


def test_globals_are_per_execution() -> None:
    rt = make_runtime()
    assert done(run_lua("shared_x = 42 tostring = nil return shared_x", rt=rt)) == (42,)
    assert done(run_lua("return shared_x, type(tostring)", rt=rt)) == (None, "function")


def test_user_metatables_still_work() -> None:
    got = done(run_lua("""
        local mt = {__index = function(_, k) return k .. "!" end}
        local t = setmetatable({}, mt)
        rawset(t, "a", 1)
        return t.a, t.b, getmetatable(t) == mt
    """))
    assert got == (1, "b!", True)


def test_gc_metamethod_refused() -> None:
    err = failed(run_lua("setmetatable({}, {__gc = function() end})\nreturn 1"))
    assert "__gc metamethods are not allowed" in str(err)


def test_json_array_can_be_marked_again_and_given_own_metatable() -> None:
    # hiding the array marker from getmetatable must not break re-marking or setmetatable
    got = done(run_lua("""
        local a = json.array(json.array({1}))
        local b = setmetatable(json.decode("[1, 2]"), {__index = function() return 0 end})
        return json.encode(a), b[9]
    """, modules=["json"]))
    assert got == ("[1]", 0)


# Same hole as Error/Time had, in the funcs, channel and process modules:
# a metatable whose __index is itself was handed out
# by `obj.__index`, and nested module tables were not read-only.

@pytest.mark.parametrize("attack, check", [
    ("funcs.new().__index.call = function() return 'changed' end", "return funcs.call('a:b')"),
    ("channel.Channel.receive = function() return 'changed' end", "return channel.new(1):receive()"),
    ("channel.new(1).__index.receive = function() return 'changed' end", "return channel.new(1):receive()"),
    ("process.registry.lookup = function() return 'changed' end", "return process.registry.lookup('x')"),
])
def test_module_objects_cannot_be_changed_for_others(attack: str, check: str) -> None:
    rt = make_runtime()
    mods = ["funcs", "channel", "process"]
    run_lua(attack + "\nreturn true", rt=rt, modules=mods)
    step = run_lua(check, rt=rt, modules=mods)
    assert not (hasattr(step, "values") and step.values[:1] == ("changed",))
