"""json.decode (and every other value Python puts into Lua) close to the memory cap.

lupa builds tables and pushes strings with no protected call around it, so an
allocation the cap refused there used to longjmp across Python's frames: inside
a host call (json.decode, base64.decode) the process then hung for good, waiting
for the GIL it held itself; outside one (a step's resume value, to_lua in a
driver) Lua panicked and aborted the process. Those cases run in a fresh
interpreter with a timeout (a hang holds the GIL, so no thread could time it
out), and must end with the usual memory error, the runtime usable afterwards.
"""

from __future__ import annotations

import json
import textwrap

import pytest
from lua_helpers import failed, make_runtime, run_lua, run_python

from moontide import errors

MIB = 1 << 20
CAP_MESSAGE = "Lua memory limit of 8 MiB exceeded"

# Sizes for an 8 MiB cap: "under" decodes to a value taking a good part of the
# cap, "over" to one that does not fit (by less than twice the cap).
SHAPES = {
    "numbers": ("json.dumps(list(range(n)))", 200_000, 300_000),
    "strings": ("json.dumps(['s%07d' % i for i in range(n)])", 40_000, 200_000),
    "objects": ("json.dumps([{'a': i, 'b': 'x%d' % i} for i in range(n)])", 20_000, 100_000),
    "nested": ("json.dumps([[[i, -i] for i in range(100)] for _ in range(n)])", 150, 1_000),
}

PRELUDE = """
    import json
    from lua_helpers import make_runtime, run_lua, start_chunk, wrap_body, Done, Failed, Yield

    def outcome(step):
        if isinstance(step, Done):
            return ["done", list(step.values)]
        if isinstance(step, Failed):
            return ["failed", type(step.error).__name__, str(step.error)]
        return ["yield", step.op]

    def small_rt():
        # a large instruction budget: memory runs out first
        return make_runtime(memory_limit=8 << 20, instruction_budget=500_000_000)

    def park(rt, n):
        # an execution holding n strings of ~70 bytes, waiting in time.sleep
        th = start_chunk(rt, wrap_body(
            f"local t = {{}} for i = 1, {n} do t[i] = ('v'):rep(64) .. i end time.sleep('1s') return #t, t[{n}]"),
            modules=["time"])
        return th, outcome(th.step())

    # ~3 MiB live at once: fits only if what failed was given back
    MEDIUM = "local t = {} for i = 1, 30000 do t[i] = ('y'):rep(64) .. i end return #t"
    DECODE = "local t = json.decode(...) return #t"
"""


def run_case(body: str) -> dict:
    out = run_python(textwrap.dedent(PRELUDE) + textwrap.dedent(body), timeout=20)
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_decode_over_the_cap_fails_at_once_and_under_it_succeeds(shape: str) -> None:
    make, under, over = SHAPES[shape]
    got = run_case(f"""
        rt = small_rt()
        over = (lambda n: {make})({over})
        under = (lambda n: {make})({under})
        res = {{}}
        res["over"] = outcome(run_lua(DECODE, over, rt=rt, modules=["json"]))
        res["used_after"] = rt.memory_used()
        res["medium"] = outcome(run_lua(MEDIUM, rt=rt))
        res["under"] = outcome(run_lua(DECODE, under, rt=rt, modules=["json"]))
        res["over_again"] = outcome(run_lua(DECODE, over, rt=rt, modules=["json"]))
        print(json.dumps(res))
    """)
    assert got["over"] == ["failed", "BudgetExceeded", CAP_MESSAGE]
    assert got["used_after"] < 2 * MIB  # what the decode built was given back ...
    assert got["medium"] == ["done", [30000]]  # ... so other code can use it
    assert got["under"] == ["done", [under]]
    assert got["over_again"] == ["failed", "BudgetExceeded", CAP_MESSAGE]


def test_pcall_does_not_catch_a_decode_over_the_cap() -> None:
    got = run_case("""
        rt = small_rt()
        big = json.dumps(list(range(300_000)))
        res = {"pcall": outcome(run_lua("local ok, e = pcall(json.decode, ...) return ok, tostring(e)", big,
                                        rt=rt, modules=["json"]))}
        res["medium"] = outcome(run_lua(MEDIUM, rt=rt))
        print(json.dumps(res))
    """)
    assert got == {"pcall": ["failed", "BudgetExceeded", CAP_MESSAGE], "medium": ["done", [30000]]}


def test_decode_beside_an_execution_holding_most_of_the_memory_evicts_that_one() -> None:
    # A parks holding ~5 of the 8 MiB; B's decode would fit alone but not beside
    # A's data: A, the hog, is evicted (it fails at its next step) and B goes on.
    got = run_case("""
        rt = small_rt()
        parked, res = park(rt, 50000)
        res = {"parked": res}
        res["decode"] = outcome(run_lua(DECODE, json.dumps(list(range(200_000))), rt=rt, modules=["json"]))
        res["resumed"] = outcome(parked.step(True, True))
        res["decode_alone"] = outcome(run_lua(DECODE, json.dumps(list(range(200_000))), rt=rt, modules=["json"]))
        print(json.dumps(res))
    """)
    assert got["parked"] == ["yield", "sleep"]
    assert got["decode"] == ["done", [200_000]]
    assert got["resumed"][:2] == ["failed", "BudgetExceeded"] and "evicted" in got["resumed"][2]
    assert got["decode_alone"] == ["done", [200_000]]


def test_host_answer_string_over_the_cap_is_a_memory_error() -> None:
    # base64.decode answers with a string lupa pushes: 4.5 MiB beside its 6 MiB input
    got = run_case("""
        import base64
        rt = small_rt()
        text = base64.b64encode(b"z" * (9 << 19)).decode()
        res = {"decode": outcome(run_lua("return #base64.decode(...)", text, rt=rt, modules=["base64"]))}
        res["medium"] = outcome(run_lua(MEDIUM, rt=rt))
        res["small"] = outcome(run_lua("return #base64.decode(...)", text[:4096], rt=rt, modules=["base64"]))
        print(json.dumps(res))
    """)
    assert got == {"decode": ["failed", "BudgetExceeded", CAP_MESSAGE], "medium": ["done", [30000]],
                   "small": ["done", [3072]]}


def test_resume_value_over_the_cap_fails_the_execution() -> None:
    # a workflow's activity result (a string) bigger than the cap, resumed into Lua
    got = run_case("""
        rt = small_rt()
        th = start_chunk(rt, wrap_body("local v = time.sleep('1s') return #v"), modules=["time"])
        res = {"parked": outcome(th.step())}
        res["resumed"] = outcome(th.step(True, "x" * (10 << 20)))
        th2 = start_chunk(rt, wrap_body("local v = time.sleep('1s') return #v"), modules=["time"])
        th2.step()
        res["fits"] = outcome(th2.step(True, "x" * (2 << 20)))
        print(json.dumps(res))
    """)
    assert got == {"parked": ["yield", "sleep"], "resumed": ["failed", "BudgetExceeded", CAP_MESSAGE],
                   "fits": ["done", [2 << 20]]}


def test_to_lua_outside_a_step_over_the_cap_raises() -> None:
    # a driver building a resume value while parked executions hold the memory
    got = run_case("""
        import lupa.lua54 as lupa
        rt = small_rt()
        parked, res = park(rt, 60000)
        res = {"parked": res}
        try:
            rt.to_lua([{"k": "y" * 100 + str(i)} for i in range(30000)])
            res["to_lua"] = "built"
        except lupa.LuaMemoryError as e:
            res["to_lua"] = str(e)
        res["resumed"] = outcome(parked.step(True, rt.to_lua({"ok": [1, 2, 3]})))
        print(json.dumps(res))
    """)
    assert got == {"parked": ["yield", "sleep"], "to_lua": CAP_MESSAGE, "resumed": ["done", [60000, "v" * 64 + "60000"]]}


# -- the instruction budget ---------------------------------------------------

def test_decode_is_charged_to_the_budget() -> None:
    rt = make_runtime()
    text = json.dumps(list(range(10_000)))
    assert run_lua("local t = json.decode(...) return #t", text, rt=rt, modules=["json"]).values == (10_000,)
    # bytes / 4 + 200 a table + 16 an item, beside the few instructions the code runs
    charged = rt.sandbox.instructions_used()
    assert charged >= len(text) // 4 + 200 + 16 * 10_000, charged
    assert charged < len(text) // 4 + 200 + 16 * 10_000 + 5_000, charged


@pytest.mark.parametrize("body", [
    "local t = json.decode(...) return #t",
    "local ok, e = pcall(json.decode, ...) return ok, e",
])
def test_decode_over_the_budget_fails_and_is_not_caught(body: str) -> None:
    # ~1.8M instructions of decoding against a budget of 1M: it stops before building it all
    rt = make_runtime(instruction_budget=1_000_000)
    err = failed(run_lua(body, json.dumps(list(range(100_000))), rt=rt, modules=["json"]))
    assert isinstance(err, errors.BudgetExceeded), err
    assert "instruction budget of 1,000,000" in str(err)


def test_decode_of_a_text_over_the_budget_fails_before_parsing() -> None:
    rt = make_runtime(instruction_budget=1_000_000)
    text = json.dumps("x" * (5 * MIB))  # charged 1.3M for its bytes alone
    err = failed(run_lua("local s = json.decode(...) return #s", text, rt=rt, modules=["json"]))
    assert isinstance(err, errors.BudgetExceeded) and "instruction budget" in str(err), err
    # the same text within a bigger budget decodes
    assert run_lua("local s = json.decode(...) return #s", text, rt=make_runtime(instruction_budget=5_000_000),
                   modules=["json"]).values == (5 * MIB,)


def test_a_process_resumed_with_a_message_over_the_cap_fails_alone() -> None:
    # processes step their threads through processes._stepper.step_raw (the inbox's text
    # straight into Lua), not Thread.step: the same check must come first there
    got = run_case("""
        from moontide.processes._stepper import step_raw
        rt = small_rt()
        res = {}
        for name, size in (("over", 10 << 20), ("fits", 2 << 20)):
            th = start_chunk(rt, wrap_body("local v = time.sleep('1s') return #v"), modules=["time"])
            th.step()
            out = step_raw(rt, th, th.host, rt._step, True, "x" * size)
            res[name] = outcome(out) if not isinstance(out, tuple) else ["yield", out[1]]
        res["medium"] = outcome(run_lua(MEDIUM, rt=rt))
        print(json.dumps(res))
    """)
    assert got == {"over": ["failed", "BudgetExceeded", CAP_MESSAGE], "fits": ["done", [2 << 20]],
                   "medium": ["done", [30000]]}
