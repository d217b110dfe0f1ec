"""The memory cap: a runaway allocation fails with a clear BudgetExceeded, and the
runtime (shared by other executions) is usable afterwards."""

from __future__ import annotations

import pytest
from lua_helpers import Yield, done, failed, make_runtime, run_lua, start_chunk, wrap_body

from moontide import errors
from moontide.lua import Runtime

BOMB = 'local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(64) .. i end return #t'
# ~6 MiB live at once: fits in 16 MiB only if the bomb's memory was given back
MEDIUM = 'local t = {} for i = 1, 60000 do t[i] = ("y"):rep(64) .. i end return #t'


def small_rt() -> Runtime:
    # a large instruction budget so that memory, not instructions, runs out
    return make_runtime(memory_limit=16 << 20, instruction_budget=500_000_000)


def assert_memory(err: errors.MoontideError) -> None:
    assert isinstance(err, errors.BudgetExceeded), f"{type(err).__name__}: {err}"
    assert str(err) == "Lua memory limit of 16 MiB exceeded"


def test_allocation_bomb_fails_with_clear_message() -> None:
    assert_memory(failed(run_lua(BOMB, rt=small_rt())))


@pytest.mark.parametrize("bomb", [
    'local t = {} for i = 1, 1e9 do t[i] = {} end',
    'local s = ("x"):rep(1e6) local t = {} for i = 1, 1e9 do t[i] = s .. i end',
    'local s = "x" while true do s = s .. s end',
    'local t = {} for i = 1, 1e9 do t[#t + 1] = tostring(i) end',
])
def test_other_bombs_fail_with_clear_message(bomb: str) -> None:
    assert_memory(failed(run_lua(bomb, rt=small_rt())))


def test_runtime_usable_after_memory_failure() -> None:
    rt = small_rt()
    for _ in range(3):
        assert_memory(failed(run_lua(BOMB, rt=rt)))
        # what filled the memory was given back ...
        assert rt.memory_used() < 4 << 20, rt.memory_used()
        # ... so another execution can use most of it
        assert done(run_lua(MEDIUM, rt=rt)) == (60000,)


def test_memory_failure_inside_user_coroutine() -> None:
    rt = small_rt()
    assert_memory(failed(run_lua(f"return coroutine.wrap(function() {BOMB} end)()", rt=rt)))
    assert done(run_lua(MEDIUM, rt=rt)) == (60000,)


def test_pcall_cannot_swallow_memory_error() -> None:
    step = run_lua(f"local ok, e = pcall(function() {BOMB} end) return ok, e", rt=small_rt())
    assert_memory(failed(step))


@pytest.mark.parametrize("catcher", [
    "local ok, e = xpcall(function() {bomb} end, function() return 'swallowed' end) return ok, e",
    "local co = coroutine.create(function() {bomb} end) local ok, e = coroutine.resume(co) return ok, e",
    "local ok, e = pcall(coroutine.wrap(function() {bomb} end)) return ok, e",
    "local ok, e = pcall(pcall, function() {bomb} end) return ok, e",
    "local ok, e = pcall(function() local ok2, e2 = pcall(function() {bomb} end) error('other') end) return ok, e",
])
def test_no_catcher_swallows_memory_error(catcher: str) -> None:
    assert_memory(failed(run_lua(catcher.format(bomb=BOMB), rt=small_rt())))


def test_other_errors_are_still_caught() -> None:
    assert done(run_lua("return pcall(error, 'x', 0)", rt=small_rt())) == (False, "x")


def test_other_executions_on_the_runtime_carry_on() -> None:
    # A parks holding data; B fills the memory (and tries to catch it) and fails;
    # A resumes with its data intact and the memory B held is given back.
    rt = small_rt()
    parked = start_chunk(rt, wrap_body(
        "local t = {} for i = 1, 1000 do t[i] = 'v' .. i end time.sleep('1s') return #t, t[1000]"),
        modules=["time"])
    assert isinstance(parked.step(), Yield)
    assert_memory(failed(run_lua(f"local ok = pcall(function() {BOMB} end) return ok", rt=rt)))
    assert done(parked.step(True, True)) == (1000, "v1000")
    assert done(run_lua(MEDIUM, rt=rt)) == (60000,)


def test_a_parked_hog_is_evicted_and_its_neighbours_carry_on() -> None:
    # The hog keeps ~11 of the 16 MiB and parks; each neighbour needs ~6 MiB for
    # a moment. Before, every neighbour failed with the memory error while the
    # hog went on holding the memory.
    rt = small_rt()
    hog = start_chunk(rt, wrap_body(
        "keep = {} for i = 1, 110000 do keep[i] = ('h'):rep(64) .. i end time.sleep('1s') return #keep"),
        modules=["time"])
    assert isinstance(hog.step(), Yield)
    small = start_chunk(rt, wrap_body("local t = {1, 2, 3} time.sleep('1s') return #t"), modules=["time"])
    assert isinstance(small.step(), Yield)
    for _ in range(3):
        assert done(run_lua(MEDIUM, rt=rt)) == (60000,)
    err = failed(hog.step(True, True))
    assert isinstance(err, errors.BudgetExceeded)
    assert "evicted: this execution held about" in str(err) and "memory limit of 16 MiB" in str(err)
    assert done(small.step(True, True)) == (3,)  # a small neighbour is never the one evicted


def test_an_execution_filling_the_cap_by_itself_fails_itself() -> None:
    rt = small_rt()
    neighbour = start_chunk(rt, wrap_body("local t = {1, 2} time.sleep('1s') return #t"), modules=["time"])
    assert isinstance(neighbour.step(), Yield)
    assert_memory(failed(run_lua(BOMB, rt=rt)))
    assert done(neighbour.step(True, True)) == (2,)
