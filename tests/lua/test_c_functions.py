"""C string functions ignore the instruction hook: the sandbox charges what they
cost to the budget, and runs backtracking pattern matches in Lua, where the hook
counts each step."""

from __future__ import annotations

import pytest
from lua_helpers import done, eval_lua, failed, make_runtime, run_lua, run_python

from moontide import errors


def test_backtracking_pattern_runs_under_the_budget() -> None:
    # the C matcher would run this for minutes; the Lua matcher counts each step
    err = failed(run_lua("local r = string.find(string.rep('a', 30000), '.-.-.-b')\nreturn r"))
    assert isinstance(err, errors.BudgetExceeded), err
    assert "test.lua:1:" in str(err)


@pytest.mark.parametrize("call", [
    "s:match('(.-)x(.-)y')",
    "s:gsub('.-.-b', '')",
    "s:gmatch('a*.-b')()",
    "string.match(s, '.*.*b')",
    "s:find('(a*)%1b')",
    "s:find('%b()')",
    "(('(').rep('(', 30000)):find('%b()')",
])
def test_other_pattern_functions_budgeted_too(call: str) -> None:
    err = failed(run_lua(f"local s = string.rep('a', 30000)\nlocal r = {call}\nreturn r"))
    assert isinstance(err, errors.BudgetExceeded), err
    assert "test.lua:2:" in str(err)


def test_pattern_error_from_the_lua_matcher_names_the_line() -> None:
    # large subject and a backtracking pattern: the Lua matcher runs and finds the error
    err = failed(run_lua("local s = string.rep('a', 30000)\nlocal r = s:find('a*a*[b') return r"))
    assert str(err).startswith("test.lua:2: malformed pattern (missing ']')"), str(err)


def test_plain_find_on_large_string_allowed() -> None:
    assert eval_lua("return string.find(string.rep('a', 30000) .. '.-.-b', '.-.-b', 1, true)") == 30001


def test_huge_rep_refused() -> None:
    err = failed(run_lua("local s = string.rep('x', 2^28)\nreturn #s"))
    assert "string.rep: result of 268435456 bytes is over the 67108864 byte limit" in str(err)
    assert "test.lua:1:" in str(err)


def test_huge_rep_refused_as_method_and_with_separator() -> None:
    assert "over the 67108864 byte limit" in str(failed(run_lua("return #('x'):rep(2^28)")))
    assert "over the 67108864 byte limit" in str(failed(run_lua("return #string.rep('', 2^27, '-')")))


def test_normal_gsub_on_100kb_still_works() -> None:
    got = done(run_lua("""
        local s = string.rep("word   \\t\\n ", 10000)
        local out, n = s:gsub("%s+", " ")
        local words = 0
        for _ in out:gmatch("%a+") do words = words + 1 end
        return #s, #out, n, words
    """))
    assert got == (100000, 50000, 10000, 10000)


def test_reasonable_rep_works() -> None:
    assert eval_lua("return #string.rep('ab', 1000000, ',')") == 2999999


# A pattern with one repetition is quadratic, with k repetitions O(n^(k+1)).
# Both probes ran for over a minute in C (the first measured 68 s) before the
# Lua matcher took them over. Run in a subprocess so the suite never hangs.
@pytest.mark.parametrize("probe", [
    "return string.find(string.rep('a', 100000), '.-b')",
    "return string.find(string.rep('a', 16000), '.-.-b')",
    "return string.find(string.rep('a', 40), string.rep('a?', 40) .. string.rep('a', 40))",
])
def test_backtracking_pattern_below_guard_is_bounded(probe: str) -> None:
    out = run_python(f"""
        from lua_helpers import run_lua
        step = run_lua({probe!r})
        print(type(step).__name__, step.error.kind)
    """, timeout=10)
    assert out.strip() == "Failed BudgetExceeded"


# Each of these spent minutes in C with only a few Lua instructions per call.
@pytest.mark.parametrize("loop", [
    "for i = 1, 5000 do local s = string.rep('x', 50000000) end",
    "local t = {} for i = 1, 1000 do t[i] = string.rep('x', 1000) end for i = 1, 1e6 do local s = table.concat(t) end",
    "local big = string.rep('x', 1000000) for i = 1, 1e6 do local s = string.format('%s%s', big, big) end",
    "local big = string.rep('x', 1000000) for i = 1, 1e6 do local s = big:gsub('y', 'z') end",
    "local big = string.rep('x', 1000000) for i = 1, 1e6 do local s = big:find('xy', 1, true) end",
    "local big = string.rep('x', 1000000) for i = 1, 1e6 do local s = big:upper() end",
])
def test_expensive_c_calls_in_a_loop_are_budgeted(loop: str) -> None:
    out = run_python(f"""
        from lua_helpers import run_lua, make_runtime
        rt = make_runtime(instruction_budget=20_000_000, memory_limit=256 << 20)
        step = run_lua({loop!r} + " return 1", rt=rt)
        print(type(step).__name__, step.error.kind)
    """, timeout=20)
    assert out.strip() == "Failed BudgetExceeded"


def used_by(body: str) -> int:
    """Instructions charged to run ``body`` (hook counts come in steps of 1,000)."""
    rt = make_runtime(instruction_budget=2_000_000_000)
    done(run_lua(body, rt=rt))
    return int(rt.sandbox.instructions_used())


def test_c_work_is_charged_by_bytes() -> None:
    base = used_by("local s = 'x' return 1")
    assert used_by("local s = string.rep('x', 16000000) return 1") - base == 1_000_000
    assert used_by("local s = ('ab'):rep(8000000, ',') return 1") - base == 1_500_000


def test_cheap_c_calls_are_not_overcharged() -> None:
    # typical small calls: a few hundred to ~1,500 instructions each, so 300 of
    # each fit in the small test budget of 1,000,000
    assert eval_lua("""
        local n = 0
        for i = 1, 300 do
          local line = "key" .. i .. " = value" .. i
          local k, v = line:match("^(%w+)%s*=%s*(%w+)$")
          if k and line:find("value", 1, true) and line:gsub("%s+", "") then n = n + 1 end
        end
        return n
    """) == 300


def test_concatenation_in_a_loop_stops_at_the_cpu_limit() -> None:
    # `..` copies both strings in one instruction: 20,000 copies of 4 MB are
    # ~120,000 instructions (far inside the budget) and ~80 GB of copying
    # (4-16 s of CPU here without the net); the CPU net stops it after a second
    err = failed(run_lua("""
        local s = string.rep("x", 4000000)
        local t
        for i = 1, 20000 do t = s .. i end
        return #t
    """))
    assert isinstance(err, errors.BudgetExceeded), err
    assert "CPU limit of 1 s" in str(err) and "test.lua:4:" in str(err), str(err)


def test_ordinary_concatenation_is_untouched_by_the_cpu_limit() -> None:
    assert eval_lua("local t = {} for i = 1, 2000 do t[#t + 1] = 'k' .. i end return #table.concat(t, ',')") > 0


def test_the_cpu_limit_grows_with_the_instruction_budget() -> None:
    # a budget raised for long steps must not be cut short by the net's default second
    assert make_runtime(instruction_budget=20_000_000).cpu_limit == 1.0
    assert make_runtime(instruction_budget=100_000_000).cpu_limit == 5.0
    assert make_runtime(instruction_budget=1_000).cpu_limit == 1.0
