"""The ctx module (Wippy's en/lua/core/context.md) and funcs' with_context (en/lua/core/funcs.md), in functions.

Functions call each other in-process here (``moontide.workflows.Functions``);
tests/workflows/test_wippy_modules.py carries the context through Temporal
(workflows, activities, child workflows) and tests/processes through process hosts.
"""

from __future__ import annotations

from typing import Any

import pytest
from lua_helpers import code_of, done, run_lua

from moontide.workflows import Functions

SHOW = "return function(...) return { all = ctx.all(), args = {...} } end"


def functions(sources: dict[str, str]) -> Functions:
    codes = {f"app:{name}": code_of(src, id=f"app:{name}", modules=["ctx", "funcs", "errors", "json"])
             for name, src in sources.items()}
    return Functions(codes, pool_size=2)


def test_get_and_all_read_the_executions_context() -> None:
    from moontide.lua.host import FunctionHost
    from lua_helpers import make_runtime, start_chunk, wrap_body

    rt = make_runtime()
    host = FunctionHost(rt)
    host.context = {"request_id": "r1", "user": {"id": 7, "roles": ["a"]}, "n": None}
    got = done(start_chunk(rt, wrap_body("""
        local all = ctx.all()
        all.request_id = "changed"   -- a fresh table each time: nothing to change in the context
        local v, err = ctx.get("missing")
        local e, eerr = ctx.get("")
        local t, terr = ctx.get(42)
        return ctx.get("request_id"), ctx.get("user").roles[1], ctx.all().request_id, v,
               errors.is(err, errors.NOT_FOUND), tostring(err), e, errors.is(eerr, errors.INVALID),
               t, errors.is(terr, errors.INVALID)
    """), modules=["ctx", "errors"], host=host).step())
    assert got == ("r1", "a", "r1", None, True, "ctx.get: key not found: missing", None, True, None, True)
    assert host.context["request_id"] == "r1"


def test_no_context_is_an_empty_table() -> None:
    got = done(run_lua("return next(ctx.all()) == nil, type(ctx.all())", modules=["ctx"]))
    assert got == (True, "table")


def test_with_context_reaches_the_called_function_and_calls_pass_it_on() -> None:
    fns = functions({
        "entry": """
            return function()
              local plain = funcs.call("app:show", "plain")
              local exec = funcs.new():with_context({trace_id = "abc-123", flags = {dark_mode = true}})
              local with = exec:call("app:show", "with")
              local more = exec:with_context({trace_id = "override", extra = 1}):call("app:show")
              local nested = exec:call("app:relay")
              local f = exec:async("app:show")
              local async = f:result():data()   -- in function code a future is done when made
              local opts = exec:with_options({start_to_close_timeout = "5s"}):call("app:show")
              return { plain = plain.all, with = with.all, more = more.all, nested = nested, async = async.all,
                       opts = opts.all, mine = ctx.all() }
            end
        """,
        "show": SHOW,
        "relay": "return function() return funcs.call('app:show').all end",
    })
    out = fns.call("app:entry", [], context={"request_id": "r1"})
    base = {"request_id": "r1"}
    assert out["mine"] == base
    assert out["plain"] == base                                     # inherited as it is
    assert out["with"] == {**base, "trace_id": "abc-123", "flags": {"dark_mode": True}}
    assert out["more"] == {**base, "trace_id": "override", "flags": {"dark_mode": True}, "extra": 1}
    assert out["nested"] == out["with"]                             # and passed on by the callee
    assert out["async"] == out["with"]
    assert out["opts"] == out["with"]                               # with_options keeps the context


def test_with_context_bad_values() -> None:
    fns = functions({"entry": """
        return function()
          local e1, err1 = funcs.new():with_context({[1] = "x"})
          local e2, err2 = funcs.new():with_context({f = print})
          local ok3, err3 = pcall(function() return funcs.new():with_context("nope") end)
          return { e1 == nil, errors.is(err1, errors.INVALID), tostring(err1), e2 == nil,
                   errors.is(err2, errors.INVALID), tostring(err2), ok3, tostring(err3) }
        end
    """})
    out = fns.call("app:entry", [])
    assert out[:6] == [True, True, "with_context: keys must be strings", True, True,
                       "context.f: function values cannot cross to JSON"]
    assert out[6] is False and "with_context: expected a table of context values" in out[7]


@pytest.mark.parametrize("context", [None, {}])
def test_a_call_without_context_sees_an_empty_one(context: Any) -> None:
    fns = functions({"show": SHOW})
    assert fns.call("app:show", [1], context=context) == {"all": {}, "args": [1]}


def test_the_callee_cannot_change_the_callers_context() -> None:
    fns = functions({
        "entry": "return function() funcs.call('app:meddle') return ctx.all() end",
        "meddle": "return function() local t = ctx.all() t.x = 'changed' funcs.new():with_context({x = 2}) end",
    })
    assert fns.call("app:entry", [], context={"x": 1}) == {"x": 1}
