"""No way out of the sandbox: no Python bridge, no io/os/debug/package, text-only load,
no string.dump, and the host callable unreachable."""

from __future__ import annotations

import pytest
from lua_helpers import done, eval_lua, failed, make_runtime, run_lua, start_chunk, wrap_body

from moontide import errors

ALL_MODULES = ["funcs", "time", "uuid", "process", "channel", "workflow", "json", "base64", "hash", "errors",
               "logger", "http"]


def done_pair(body: str, **kw: object) -> tuple[object, object]:
    vals = done(run_lua(body, **kw))
    return vals[0], vals[1]


def test_python_global_is_nil() -> None:
    assert eval_lua("return type(python)") == "nil"
    assert eval_lua("return rawget(_G, 'python') == nil") is True


@pytest.mark.parametrize("expr", ["python.eval", "python.builtins", "python.none.__class__"])
def test_python_members_unreachable(expr: str) -> None:
    ok, msg = done_pair(f"return pcall(function() return {expr} end)")
    assert ok is False
    assert "attempt to index a nil value (global 'python')" in msg


@pytest.mark.parametrize("name", ["io", "debug", "package", "collectgarbage", "dofile", "loadfile"])
def test_dangerous_globals_are_nil(name: str) -> None:
    assert eval_lua(f"return type({name})") == "nil"


@pytest.mark.parametrize("name", ["execute", "remove", "rename", "getenv", "exit", "tmpname", "setlocale"])
def test_os_has_no_process_or_file_functions(name: str) -> None:
    assert eval_lua(f"return type(os.{name})") == "nil"


def test_os_keeps_only_deterministic_functions() -> None:
    names = eval_lua("local n = {} for k in pairs(os) do n[#n + 1] = k end return table.concat(n, ',')")
    assert names == "clock,date,difftime,time"


def test_string_dump_is_nil_both_ways() -> None:
    assert eval_lua("return type(string.dump)") == "nil"
    assert eval_lua("return type(('x').dump)") == "nil"


def test_string_metatable_gives_nothing_away() -> None:
    assert eval_lua("return getmetatable('')") is False
    ok, msg = done_pair("return pcall(function() return getmetatable('').__index end)")
    assert ok is False and "attempt to index a boolean value" in msg
    # strings index the sandbox's string table, not the raw one
    assert eval_lua("return ('x').dump == nil and ('x').rep == string.rep") is True
    assert eval_lua("return ('').__index") is None


def test_require_undeclared_module_names_it() -> None:
    err = failed(run_lua("local m = require('os')\nreturn m", modules=["json"]))
    assert 'require("os"): module not declared' in str(err)
    assert "test:entry" in str(err)


def test_require_file_path_names_it() -> None:
    err = failed(run_lua("local m = require('../../etc/passwd')\nreturn m"))
    assert 'require("../../etc/passwd"): module not declared' in str(err)


def test_require_declared_module_works_and_is_the_global() -> None:
    assert eval_lua("return require('json') == json and type(json.encode)", modules=["json"]) == "function"


def test_require_existing_but_undeclared_module_refused() -> None:
    # hash exists in lua/modules/, but this program did not declare it
    err = failed(run_lua("local h = require('hash')\nreturn h", modules=["json"]))
    assert 'require("hash"): module not declared' in str(err)


def test_load_text_works_in_the_programs_env() -> None:
    assert eval_lua("x = 20 return load('return x + 1 + 1')()") == 22
    assert eval_lua("return load('return ...', 'n', 't')(5)") == 5


def test_load_binary_chunk_refused() -> None:
    f, msg = done_pair("return load('\\27Lua\\84\\0\\25\\147\\13\\10\\26\\10')")
    assert f is None
    assert "attempt to load a binary chunk" in msg


@pytest.mark.parametrize("mode", ["b", "bt"])
def test_load_binary_mode_refused(mode: str) -> None:
    err = failed(run_lua(f"local f = load('return 1', 'x', '{mode}')\nreturn f"))
    assert "load: only text chunks are allowed (mode 't')" in str(err)


def test_load_reader_function_refused() -> None:
    err = failed(run_lua("local f = load(function() return nil end)\nreturn f"))
    assert "load: only text chunks are allowed" in str(err)


def test_load_of_string_dump_impossible() -> None:
    ok, msg = done_pair("return pcall(function() return load(string.dump(function() end)) end)")
    assert ok is False
    assert "attempt to call a nil value (field 'dump')" in msg


def test_attribute_access_on_python_objects_refused() -> None:
    """If a Python object ever got into Lua, the attribute filter refuses every attribute."""
    rt = make_runtime()
    thread = start_chunk(rt, wrap_body("""
        local obj = ...
        local ok1, e1 = pcall(function() return obj.__class__ end)
        local ok2, e2 = pcall(function() return obj.real end)
        return ok1, tostring(e1), ok2, tostring(e2)
    """), 3 + 4j)
    ok1, e1, ok2, e2 = value_tuple(thread.step())
    assert ok1 is False and "Lua code has no access to Python objects" in e1
    assert ok2 is False and "Lua code has no access to Python objects" in e2


def value_tuple(step: object) -> tuple[object, ...]:
    return done(step)


# Walks every table reachable from the globals (module tables and their
# contents, metatables getmetatable gives, objects modules hand out) and
# reports any value that is not plain Lua data or a Lua function.
_SCAN = """
local extra = ...
if extra ~= nil then extra_value = extra end
local seen, found, n = {}, {}, 0
local function visit(v, path, depth)
  local t = type(v)
  if t == "userdata" or t == "thread" then found[#found + 1] = path .. " (" .. t .. ")" return end
  if t ~= "table" or seen[v] or depth > 12 then return end
  seen[v] = true
  n = n + 1
  for k, x in pairs(v) do visit(x, path .. "." .. tostring(k), depth + 1) end
  local mt = getmetatable(v)
  if type(mt) == "table" then visit(mt, path .. ".<mt>", depth + 1) end
  for _, key in ipairs({"__index", "__metatable", "Channel", "event", "registry"}) do
    local ok, x = pcall(function() return v[key] end)
    if ok and type(x) == "table" then visit(x, path .. "." .. key, depth + 1) end
  end
end
visit(_G, "_G", 0)
visit(time.now(), "time.now()", 0)
visit(errors.new("x"), "errors.new()", 0)
visit(json.array(), "json.array()", 0)
visit(json.decode('{"a": [1]}'), "json.decode()", 0)
visit(funcs.new(), "funcs.new()", 0)
visit(channel.new(1), "channel.new()", 0)
visit(process.inbox(), "process.inbox()", 0)
visit(process.with_options({}), "process.with_options()", 0)
visit(getmetatable(""), "getmetatable('')", 0)
return table.concat(found, ", "), n
"""


def test_no_userdata_reachable_from_globals_or_modules() -> None:
    found, tables = value_tuple(run_lua(_SCAN, modules=ALL_MODULES))
    assert found == ""
    assert tables > 20  # the walk really went through the modules


def test_scan_would_find_a_python_object() -> None:
    """The scan above can fail: a Python object placed in the globals is found."""
    found, _ = value_tuple(run_lua(_SCAN, object(), modules=ALL_MODULES))
    assert found == "_G.extra_value (userdata)"


def test_env_metatable_is_hidden() -> None:
    # getmetatable(_G).__index would be the base env every execution of the runtime shares
    assert eval_lua("return getmetatable(_G)") is False


@pytest.mark.parametrize("body, message", [
    ("string.x = 1", "attempt to change string.x (read-only)"),
    ("table.insert = nil", "attempt to change table.insert (read-only)"),
    ("funcs.call = nil", "attempt to change funcs.call (read-only)"),
    ("os.time = function() return 0 end", "attempt to change os.time (read-only)"),
    ("coroutine.wrap = nil", "attempt to change coroutine.wrap (read-only)"),
    ("math.pi = 3", "attempt to change math (read-only)"),
    ("json.encode = nil", "attempt to change json.encode (read-only)"),
    ("utf8.char = nil", "attempt to change utf8.char (read-only)"),
])
def test_shared_tables_are_read_only(body: str, message: str) -> None:
    err = failed(run_lua(body + "\nreturn 1", modules=["funcs", "json"]))
    assert isinstance(err, errors.LuaError)
    assert message in str(err)
    assert "test.lua:1:" in str(err)


def test_user_globals_are_writable() -> None:
    assert eval_lua("x = 1 string_ = 2 return x + string_") == 3
