"""The instruction budget: runaway Lua fails the activation with BudgetExceeded,
whatever it does to dodge it, and the runtime stays usable."""

from __future__ import annotations

import pytest
from lua_helpers import (SMALL_BUDGET, Done, Yield, code_of, done, failed, make_runtime, run_lua, run_python,
                         start_chunk, wrap_body)

from moontide import errors
from moontide.lua import instantiate
from moontide.lua.host import FunctionHost


def assert_budget(err: errors.MoontideError) -> None:
    assert isinstance(err, errors.BudgetExceeded), f"{type(err).__name__}: {err}"
    assert err.kind == "BudgetExceeded"
    assert f"instruction budget of {SMALL_BUDGET:,} instructions" in str(err)


def test_infinite_loop_fails_with_budget_exceeded() -> None:
    err = failed(run_lua("while true do end"))
    assert_budget(err)
    assert "runaway loop" in str(err)
    assert "test.lua:1" in str(err)  # the traceback names the user's code


@pytest.mark.parametrize("body", [
    "pcall(function() while true do end end) return 'escaped'",
    "for i = 1, 10 do pcall(function() while true do end end) end return 'escaped'",
    "xpcall(function() while true do end end, function(m) return m end) return 'escaped'",
    "local ok = pcall(pcall, function() while true do end end) return 'escaped'",
])
def test_pcall_cannot_swallow_it(body: str) -> None:
    assert_budget(failed(run_lua(body)))


def test_loop_in_wrapped_coroutine_stopped() -> None:
    assert_budget(failed(run_lua("return coroutine.wrap(function() while true do end end)()")))


@pytest.mark.parametrize("body", [
    "local ok, e = pcall(coroutine.wrap(function() while true do end end)) return 'escaped', ok, e",
    "local co = coroutine.create(function() while true do end end)\n"
    "local ok, e = coroutine.resume(co) return 'escaped', ok, e",
    "local co = coroutine.wrap(function() pcall(function() while true do end end) coroutine.yield(1) end)\n"
    "local ok, e = pcall(co) return 'escaped', ok, e",
])
def test_coroutine_cannot_swallow_it_for_its_caller(body: str) -> None:
    # the error ends the user coroutine; its caller must not carry on as if nothing happened
    assert_budget(failed(run_lua(body)))


def test_error_object_with_looping_tostring_is_budgeted() -> None:
    # Run in a subprocess: before the defence, turning the error into text ran
    # the __tostring outside any budget and never returned.
    out = run_python("""
        from lua_helpers import run_lua
        step = run_lua("error(setmetatable({}, {__tostring = function() while true do end end}))")
        print(type(step.error).__name__)
    """, timeout=30)
    assert out.strip() == "BudgetExceeded"


def test_loop_in_imported_library_chunk_raises_at_instantiate() -> None:
    rt = make_runtime()
    lib = code_of("local n = 0 while true do n = n + 1 end return {}", chunkname="lib.lua", id="test:lib")
    code = code_of("local lib = require('lib') return function() return 1 end", imports=[("lib", lib)])
    with pytest.raises(errors.BudgetExceeded) as info:
        instantiate(rt, code, host=FunctionHost(rt), seed=1)
    assert "instruction budget" in str(info.value)
    assert "lib.lua:1" in str(info.value)


def test_loop_in_entry_chunk_raises_at_instantiate() -> None:
    rt = make_runtime()
    with pytest.raises(errors.BudgetExceeded):
        instantiate(rt, code_of("while true do end return function() end"), host=FunctionHost(rt), seed=1)


def test_runtime_usable_after_budget_failure() -> None:
    rt = make_runtime()
    assert_budget(failed(run_lua("while true do end", rt=rt)))
    assert_budget(failed(run_lua("pcall(coroutine.wrap(function() while true do end end)) return 1", rt=rt)))
    # other code on the same runtime: a fresh budget, pcall and coroutines work
    got = done(run_lua("""
        local n = 0
        for i = 1, 50000 do n = n + i end
        local ok, e = pcall(error, "inner")
        local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
        return n, ok, e, gen() + gen() + gen()
    """, rt=rt))
    assert got == (1250025000, False, "inner", 6)


def test_budget_is_per_activation() -> None:
    """Each step gets the whole budget: 2 x ~700k instructions pass when a sleep separates them."""
    rt = make_runtime()
    loop = "local n = 0 for i = 1, 350000 do n = n + i end"
    thread = start_chunk(rt, wrap_body(f"{loop} time.sleep('1s') {loop} return n"), modules=["time"])
    first = thread.step()
    assert isinstance(first, Yield) and first.op == "sleep" and first.args == (1_000_000_000,)
    second = thread.step(True, True)
    assert isinstance(second, Done) and second.values == (61250175000,)
    # ... and one activation running both loops is over it
    assert_budget(failed(run_lua(f"{loop} {loop} return n", rt=rt)))


def test_budget_is_counted_in_instructions_not_time() -> None:
    # the same code fails at the same point every time (replay sees the same failure)
    def where() -> str:
        return str(failed(run_lua("""
            count = 0
            local ok = pcall(function() while true do count = count + 1 end end)
            return count
        """)))
    assert where() == where()


def test_hook_survives_a_budget_failure_inside_user_coroutine_created_earlier() -> None:
    rt = make_runtime()
    body = """
        local gen = coroutine.wrap(function()
          coroutine.yield(1)
          while true do end
        end)
        gen()
        time.sleep(1)
        return gen()
    """
    thread = start_chunk(rt, wrap_body(body), modules=["time"])
    assert isinstance(thread.step(), Yield)
    assert_budget(failed(thread.step(True, True)))


def test_instantiate_with_looping_index_metamethod_is_budgeted() -> None:
    out = run_python("""
        from lua_helpers import code_of, make_runtime
        from moontide.lua import instantiate
        from moontide.lua.host import FunctionHost
        rt = make_runtime()
        code = code_of("return setmetatable({}, {__index = function() while true do end end})", method="main")
        try:
            instantiate(rt, code, host=FunctionHost(rt), seed=1)
        except Exception as e:
            print(type(e).__name__)
    """, timeout=5)
    assert out.strip() in ("BudgetExceeded", "Invalid")
