"""Errors name the file and line, keep their kind, and bad code is answered
clearly ("for Lua, the line")."""

from __future__ import annotations

import pytest
from lua_helpers import code_of, done, failed, make_runtime, run_chunk, run_lua, run_python

from moontide import errors
from moontide.lua import check_syntax, instantiate
from moontide.lua.host import FunctionHost

ORDERS = """\
local function charge(order)
  if order.total < 0 then
    error("boom")
  end
  return order.total
end

return function(order)
  local total = charge(order)
  return total
end
"""


def test_lua_error_names_file_line_and_traceback() -> None:
    rt = make_runtime()
    err = failed(run_chunk(ORDERS, rt.to_lua({"total": -1}), rt=rt, chunkname="orders.lua"))
    assert isinstance(err, errors.LuaError)
    assert err.kind == "LuaError"
    assert str(err).startswith("orders.lua:3: boom")
    tb = err.traceback
    assert "orders.lua:3: in " in tb  # charge
    assert "orders.lua:9: in " in tb  # the caller
    assert "[C]" not in tb and "prelude" not in tb


def test_same_code_succeeds() -> None:
    rt = make_runtime()
    assert done(run_chunk(ORDERS, rt.to_lua({"total": 5}), rt=rt, chunkname="orders.lua")) == (5,)


def test_runtime_error_message() -> None:
    err = failed(run_lua("local t = nil\nreturn t.x", chunkname="calc.lua"))
    assert "calc.lua:2: attempt to index a nil value (local 't')" in str(err)


def test_inline_source_line_numbers_offset_by_first_line() -> None:
    source = "return function()\n  local x = 1\n  error('inline boom')\nend"
    err = failed(run_chunk(source, chunkname="app.yaml", first_line=10))
    assert str(err).startswith("app.yaml:12: inline boom")  # line 3 of the source is line 12 of the YAML
    assert "app.yaml:12:" in err.traceback


def test_error_object_keeps_kind() -> None:
    err = failed(run_lua("error(errors.new{kind = 'NotFound', message = 'x', retryable = true})",
                         modules=["errors"]))
    assert isinstance(err, errors.LuaError)
    assert (err.kind, err.message, err.retryable) == ("NotFound", "x", True)


def test_an_error_object_cannot_be_changed() -> None:
    # what an error holds is private: user code cannot change it, so only its own strings leave
    got = done(run_lua("""
        local e = errors.new{kind = 'NotFound', message = 'x'}
        local a = pcall(function() e.kind = 'Other' end)
        local b = pcall(rawset, e, 'message', 'changed')
        local c = pcall(setmetatable, e, {})
        return a, b, c, e:kind(), e:message(), rawget(e, 'kind')
    """, modules=["errors"]))
    assert got == (False, False, False, "NotFound", "x", None)


def test_a_raised_plain_table_is_a_lua_error() -> None:
    err = failed(run_lua("error({kind = 'NotFound', message = 'plain'})"))
    assert (err.kind, err.message) == ("LuaError", "(error object is a table value)")


def test_error_with_table_value_has_no_address() -> None:
    err = failed(run_lua("error({code = 1})"))
    assert err.message == "(error object is a table value)"
    err = failed(run_lua("error(setmetatable({}, {__tostring = function() return 'custom' end}))"))
    assert err.message == "custom"
    err = failed(run_lua("error(42)"))
    assert err.message == "42"


def test_returned_nil_err_becomes_error_with_kind() -> None:
    rt = make_runtime()
    vals = done(run_lua("return nil, errors.new{kind = 'Timeout', message = 'slow', details = {after = 3}}",
                        rt=rt, modules=["errors"]))
    e = rt.error_from_lua(vals[1])
    assert (e.kind, e.message, e.retryable, e.details) == ("Timeout", "slow", False, {"after": 3})


def test_binary_error_message_is_a_failure_not_a_crash() -> None:
    err = failed(run_lua("error('bad \\xff byte')"))
    assert isinstance(err, errors.Invalid)
    assert "not valid UTF-8" in str(err)
    err = failed(run_lua("return '\\xff'"))
    assert "not valid UTF-8" in str(err)


def test_instantiate_table_without_method_names_functions() -> None:
    rt = make_runtime()
    code = code_of("return {charge = function() end, refund = function() end, rate = 3}", chunkname="pay.lua",
                   id="app:pay")
    with pytest.raises(errors.Invalid) as info:
        instantiate(rt, code, host=FunctionHost(rt), seed=1)
    assert "pay.lua: app:pay: field method is missing" in info.value.message
    assert "(charge, refund)" in info.value.message


def test_instantiate_wrong_method_names_functions() -> None:
    rt = make_runtime()
    code = code_of("return {charge = function() end, refund = function() end}", method="cancel")
    with pytest.raises(errors.Invalid) as info:
        instantiate(rt, code, host=FunctionHost(rt), seed=1)
    assert "field method 'cancel' is not a function" in info.value.message
    assert "(functions: charge, refund)" in info.value.message


def test_instantiate_method_picks_function() -> None:
    rt = make_runtime()
    code = code_of("return {a = function() return 'A' end, b = function(x) return x * 2 end}", method="b")
    fn = instantiate(rt, code, host=FunctionHost(rt), seed=1)
    assert rt.start(fn, FunctionHost(rt), 21).step().values == (42,)


def test_instantiate_nothing_returned() -> None:
    rt = make_runtime()
    with pytest.raises(errors.Invalid, match="must return a function or a table of functions, not nothing"):
        instantiate(rt, code_of("local x = 1"), host=FunctionHost(rt), seed=1)


def test_instantiate_syntax_error() -> None:
    rt = make_runtime()
    with pytest.raises(errors.LuaError) as info:
        instantiate(rt, code_of("return function()\n  local = 1\nend", chunkname="bad.lua"),
                    host=FunctionHost(rt), seed=1)
    assert info.value.kind == "Invalid"
    assert str(info.value).startswith("bad.lua:2:")


def test_check_syntax() -> None:
    assert check_syntax("return function() return 1 end", "ok.lua") is None
    assert check_syntax("local x = 1\nlocal y = = 2\n", "bad.lua") == (2, "unexpected symbol near '='")
    assert check_syntax("return function()\n  if x then\nend", "open.lua") == \
        (3, "'end' expected (to close 'function' at line 1) near <eof>")
    # the last line of the source, never the wrapper's line after it
    assert check_syntax("local x = 1\ny", "eof.lua") == (2, "syntax error near <eof>")


def test_check_syntax_refuses_source_that_closes_the_wrapper() -> None:
    """'end, <expr>, function(_ENV)' would close the compile wrapper and run <expr>
    at compile time, with no budget. Run in a subprocess: it never returned before."""
    out = run_python("""
        from moontide.lua import check_syntax, Runtime
        from moontide import errors
        print(check_syntax("end, (function() while true do end end)(), function(_ENV)", "evil.lua"))
        try:
            Runtime().compile("end, (function() while true do end end)(), function(_ENV)", "evil.lua")
        except errors.LuaError as e:
            print(e.kind, e.message)
    """, timeout=30)
    assert out.splitlines() == ["(1, \"<eof> expected near 'end'\")",
                                "Invalid evil.lua:1: <eof> expected near 'end'"]


def test_error_in_imported_library_names_the_library() -> None:
    rt = make_runtime()
    lib = code_of("local M = {}\nfunction M.f() error('lib failed') end\nreturn M", chunkname="lib.lua", id="t:lib")
    code = code_of("local lib = require('lib')\nreturn function() lib.f() end", imports=[("lib", lib)])
    fn = instantiate(rt, code, host=FunctionHost(rt), seed=1)
    err = failed(rt.start(fn, FunctionHost(rt)).step())
    assert str(err).startswith("lib.lua:2: lib failed")
    assert "test.lua:2:" in err.traceback
