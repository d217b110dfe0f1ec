"""C string functions ignore the instruction hook: the sandbox bounds what they
can cost before calling them (DESIGN.md section 9)."""

from __future__ import annotations

import time

import pytest
from lua_helpers import done, eval_lua, failed, run_lua, run_python


def test_backtracking_pattern_refused_fast() -> None:
    t0 = time.monotonic()
    err = failed(run_lua("local r = string.find(string.rep('a', 30000), '.-.-.-b')\nreturn r"))
    assert time.monotonic() - t0 < 1
    msg = str(err)
    assert "string.find: a pattern with 3 repetitions over 30000 bytes could run for minutes" in msg
    assert "test.lua:1:" in msg


@pytest.mark.parametrize("call", [
    "s:match('(.-)x(.-)y')",
    "s:gsub('.-.-b', '')",
    "s:gmatch('a*.-b')",
    "string.match(s, '.*.*b')",
])
def test_other_pattern_functions_guarded_too(call: str) -> None:
    err = failed(run_lua(f"local s = string.rep('a', 30000)\nlocal r = {call}\nreturn r"))
    assert "could run for minutes" in str(err)
    assert "test.lua:2:" in str(err)


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
    t0 = time.monotonic()
    got = done(run_lua("""
        local s = string.rep("word   \\t\\n ", 10000)
        local out, n = s:gsub("%s+", " ")
        local words = 0
        for _ in out:gmatch("%a+") do words = words + 1 end
        return #s, #out, n, words
    """))
    assert got == (100000, 50000, 10000, 10000)
    assert time.monotonic() - t0 < 2


def test_reasonable_rep_works() -> None:
    assert eval_lua("return #string.rep('ab', 1000000, ',')") == 2999999


# A pattern with one repetition is quadratic, with k repetitions O(n^(k+1)):
# the guard only refuses 2+ repetitions over more than 16 KiB. Both probes
# below ran for over a minute (the first measured 68 s) with nothing stopping
# them. Run in a subprocess so the suite never hangs.
@pytest.mark.xfail(strict=True, reason="design question: string pattern cost is bounded only for 2+ repetitions "
                   "over subjects > 16 KiB; '.-b' over 100 KB or '.-.-b' over 16,000 bytes still run for minutes "
                   "in C where the instruction hook cannot stop them")
@pytest.mark.parametrize("probe", [
    "return string.find(string.rep('a', 100000), '.-b')",
    "return string.find(string.rep('a', 16000), '.-.-b')",
])
def test_backtracking_pattern_below_guard_is_bounded(probe: str) -> None:
    out = run_python(f"""
        from lua_helpers import run_lua
        step = run_lua({probe!r})
        print(type(step).__name__)
    """, timeout=5)
    assert out.strip() in ("Done", "Failed")


@pytest.mark.xfail(strict=True, reason="design question: work done in C (string.rep, gsub, table.concat ...) is "
                   "not charged to the instruction budget, so a cheap loop of expensive C calls runs far longer "
                   "than the budget suggests")
def test_expensive_c_calls_in_a_loop_are_budgeted() -> None:
    out = run_python("""
        from lua_helpers import run_lua, make_runtime
        rt = make_runtime(instruction_budget=20_000_000, memory_limit=256 << 20)
        step = run_lua("for i = 1, 5000 do local s = string.rep('x', 50000000) end return 1", rt=rt)
        print(type(step).__name__)
    """, timeout=5)
    assert out.strip() == "Failed"
