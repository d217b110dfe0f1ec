"""The hot-path stepper gives exactly Thread.step's outcomes (it replays every non-yield through it)."""

from __future__ import annotations

from typing import Any

import pytest

from moontide.lua import code as code_mod
from moontide.lua import host as host_mod
from moontide.lua import runtime as rt_mod
from moontide.processes._stepper import step_raw

CASES = {
    "returns": "return 42, 'x'",
    "raises": "error('boom')",
    "error_object": "error(errors.new{ kind = 'Unavailable', message = 'down', retryable = true })",
    "returns_error": "return nil, errors.new{ kind = 'NotFound', message = 'gone' }",
    "runaway": "while true do end",
    "memory": "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000000) .. i end",
    "yields_again": "time.sleep(5) return 1",
}


def _start(rt: rt_mod.Runtime, body: str) -> tuple[rt_mod.Thread, Any]:
    source = f"return function()\n  time.sleep(0)\n  {body}\nend\n"
    code = code_mod.LuaCode(id="app:case", kind="process.lua", source=source, chunkname="case.lua",
                            modules=("time", "errors"))
    host = host_mod.FunctionHost(rt)
    fn = code_mod.instantiate(rt, code, host=host, seed=1)
    thread = rt.start(fn, host)
    first = thread.step()
    assert isinstance(first, rt_mod.Yield) and first.op == "sleep"
    return thread, host


def _describe(step: Any) -> Any:
    if isinstance(step, tuple):  # the raw yield
        return ("yield", step[1], tuple(step[2:]))
    if isinstance(step, rt_mod.Yield):
        return ("yield", step.op, tuple(step.args))
    if isinstance(step, rt_mod.Done):
        return ("done", step.values)
    assert isinstance(step, rt_mod.Failed)
    e = step.error
    return ("failed", type(e).__name__, e.kind, e.retryable, str(e))


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_raw_matches_thread_step(case: str) -> None:
    # a runtime each: what one case leaves behind must not change the other's outcome
    rt_a, rt = (rt_mod.Runtime(memory_limit=16 << 20, instruction_budget=2_000_000) for _ in range(2))
    a, _ = _start(rt_a, CASES[case])
    b, host_b = _start(rt, CASES[case])
    expected = _describe(a.step(True, True))
    got = _describe(step_raw(rt, b, host_b, rt._step, True, True))
    if case == "returns_error":
        # the error object is a Lua table: compare what it says
        assert got[0] == expected[0] == "done" and rt.error_from_lua(got[1][1]).kind == "NotFound"
    else:
        assert got == expected
    if case == "memory":
        assert b.co is None and a.co is None
    # the runtime is still usable after each case
    c, host_c = _start(rt, "return 'after'")
    assert _describe(step_raw(rt, c, host_c, rt._step, True, True)) == ("done", ("after",))
