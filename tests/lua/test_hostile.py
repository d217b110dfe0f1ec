"""Hostile code on a shared runtime cannot change what another execution sees, nor read its data.

One runtime serves many executions (``Shards``). An attacker tampers with
everything it can reach (``hostile.CRAWL``) while a victim is parked in a wait
on the same runtime; the victim's ordinary results (``hostile.CANARY``) must be
those of a victim on a runtime of its own, it must find no trace of the
attacker, and the attacker's spies must see none of its calls. The named
attacks of the issue that found the holes come first, each on its own.
"""

from __future__ import annotations

from typing import Any

import pytest
from hostile import ATTACKER, VICTIM
from lua_helpers import Done, Yield, done, failed, make_runtime, run_lua, start_chunk, wrap_body

from moontide.lua import Runtime

#: Every module a Lua entry can declare.
ALL_MODULES = ["funcs", "time", "uuid", "process", "channel", "workflow", "json", "base64", "hash", "errors",
               "logger", "http", "crypto", "ctx", "payload", "http_client", "events", "registry"]


def _start(rt: Runtime, source: str, modules: list[str], name: str) -> Any:
    source = source.replace("WAIT", "sleep(1)").replace("DURING", "time.sleep(1)")
    return start_chunk(rt, source, rt.to_lua({m: True for m in modules}), modules=modules, chunkname=name)


def _finish(thread: Any) -> list[Any]:
    """Step a thread through its one sleep to the end; its result as JSON."""
    first = thread.step()
    assert isinstance(first, Yield) and first.op == "sleep", first
    return _json(thread, done(thread.step(True, True)))


def _json(thread: Any, values: tuple[Any, ...]) -> Any:
    return thread.runtime.from_lua(values[0])


@pytest.mark.parametrize("modules", [ALL_MODULES, ["time"]], ids=["all-modules", "time-only"])
def test_attacker_crawling_everything_changes_nothing_for_a_victim(modules: list[str]) -> None:
    alone = _finish(_start(Runtime(), VICTIM, modules, "victim.lua"))
    rt = Runtime()
    victim = _start(rt, VICTIM, modules, "victim.lua")
    assert isinstance(victim.step(), Yield)                  # parked in its sleep
    attacker = _start(rt, ATTACKER, modules, "attacker.lua")
    assert isinstance(attacker.step(), Yield)                # tampered, now parked
    before, after, found = _json(victim, done(victim.step(True, True)))
    tables, stolen = _json(attacker, done(attacker.step(True, True)))
    late = _finish(_start(rt, VICTIM, modules, "late.lua"))  # started after the attack
    assert tables >= 10 * len(modules) ** 0.5, "the crawler reached next to nothing: the test would prove nothing"
    assert before == alone[0]
    assert after == alone[1]
    assert found == "", "the victim found the attacker's mark"
    assert stolen == 0, "the attacker's spies saw another execution's calls"
    assert late == alone


def test_the_victim_sees_a_change_made_in_its_own_execution() -> None:
    """The canary and the scan can fail: the crawler run inside the victim's own execution is seen."""
    src = VICTIM.replace("local before = canary(M)", "local before = canary(M)\n" + _SELF_ATTACK)
    before, after, found = _finish(_start(Runtime(), src, ["json", "errors", "time"], "victim.lua"))
    assert before != after
    assert found != ""


_SELF_ATTACK = """
  tostring = function() return "PWNED" end
  string = setmetatable({}, {__index = function() return function() return "PWNED" end end})
"""


# -- the attacks that found the holes, one by one ------------------------------------------------

def _victim_after(attack: str, check: str, modules: list[str]) -> tuple[Any, ...]:
    """Run ``attack`` in one execution, then ``check`` in another on the same runtime."""
    rt = make_runtime(instruction_budget=20_000_000)
    run_lua(attack + "\nreturn true", rt=rt, modules=modules)
    return done(run_lua(check, rt=rt, modules=modules))


def test_nil_G_does_not_open_the_shared_base_environment() -> None:
    attack = """
        _G = nil
        local base = _G
        if base then
          base.tostring = function() return "PWNED" end
          base.leaked = "PWNED"
          base.pairs = function() error("pairs broken by another execution") end
        end
    """
    assert _victim_after(attack, "local n = 0 for _ in pairs({1}) do n = n + 1 end return tostring(1), leaked, n",
                         []) == ("1", None, 1)


@pytest.mark.parametrize("name, check, expected", [
    ("string", "return string.upper('a'), ('b'):upper()", ("A", "B")),
    ("table", "return table.concat({1, 2}, ',')", ("1,2",)),
    ("math", "return math.floor(2.5)", (2,)),
    ("os", "return os.difftime(3, 1)", (2,)),
    ("coroutine", "return coroutine.status(coroutine.running())", ("running",)),
    ("funcs", "return type(funcs.call)", ("function",)),
    ("json", "return json.encode({1})", ("[1]",)),
    ("errors", "return errors.is(errors.new('x'), 'Invalid')", (False,)),
    ("time", "return time.unix(7):unix()", (7,)),
])
def test_the_state_pairs_returns_is_no_way_into_a_shared_table(name: str, check: str,
                                                                 expected: tuple[Any, ...]) -> None:
    attack = f"""
        local _, raw = pairs({name})
        if type(raw) == "table" then
          for k, v in next, raw do pcall(rawset, raw, k, function() return "PWNED" end) end
        end
        for _, obj in ipairs({{errors and errors.new('x') or {{}}, time and time.unix(0) or {{}}}}) do
          local _, raw2 = pairs(obj.__index or {{}})
          if type(raw2) == "table" then for k in next, raw2 do pcall(rawset, raw2, k, 0) end end
        end
    """
    assert _victim_after(attack, check, ["funcs", "json", "errors", "time"]) == expected


def test_a_shared_inbox_cannot_be_rewired_to_read_other_executions_messages() -> None:
    attack = """
        local inbox = process.inbox()
        pcall(function() inbox.id = "PWNED" end)
        pcall(rawset, inbox, "wrap", function() return "PWNED" end)
        pcall(rawset, inbox, "receive", function() return "PWNED" end)
    """
    got = _victim_after(attack, "local i = process.inbox() return i.id, rawget(i, 'wrap'), rawget(i, 'receive')",
                        ["process"])
    assert "PWNED" not in [str(v) for v in got]
    assert got[1] is None and got[2] is None


# -- runaways the budget did not stop --------------------------------------------------------------

RUNAWAYS = [
    "xpcall(function() while true do end end, function() while true do end end)",
    "xpcall(error, function() while true do end end)",
    "string.rep('', math.maxinteger)",
    "string.rep('', math.maxinteger, '')",
    "table.move({}, 1, math.maxinteger - 1, 2)",
    "table.move({}, 1, 1 << 40, 1, {})",
    "table.concat(setmetatable({}, {__index = function() return '' end}), '', 1, math.maxinteger)",
    "table.insert(setmetatable({}, {__len = function() return math.maxinteger - 1 end}), 1, 'x')",
    "table.remove(setmetatable({}, {__len = function() return math.maxinteger end}), 1)",
    "table.unpack(setmetatable({}, {__index = function() return 1 end}), 1, 900000)",
    "local t = {} for i = 1, 200000 do t[i] = i end for i = 1, 1000 do table.sort(t, function(a, b) return a > b end) end",
    "local s = string.rep('x', 1 << 20) for i = 1, 1e9 do utf8.len(s) end",
    "local s = string.rep('1', 1 << 20) for i = 1, 1e9 do tonumber(s) end",
    "local s = string.rep('x', 1 << 20) for i = 1, 1e9 do string.byte(s, 1, 100000) end",
    "local s = string.rep('x', 1 << 20) for i = 1, 1e9 do utf8.offset(s, -1) end",
    "local s = string.rep('a=1 ', 1 << 18) for i = 1, 1e9 do load(s) end",
    "local t = {} for i = 1, 1e6 do t[i] = '' end for i = 1, 1e9 do table.concat(t) end",
    "local co = coroutine.create(function() local x <close> = setmetatable({}, {__close = function() "
    "while true do end end}) while true do end end) coroutine.resume(co) coroutine.close(co)",
]


@pytest.mark.parametrize("attack", RUNAWAYS)
def test_runaway_in_a_c_function_or_handler_is_stopped(attack: str) -> None:
    # In a subprocess: before the defence each of these ran for good and froze the process.
    from lua_helpers import run_python
    out = run_python(f"""
        import time
        from lua_helpers import run_lua, make_runtime
        rt = make_runtime()
        t = time.thread_time()
        step = run_lua({attack!r}, rt=rt)
        spent = time.thread_time() - t
        again = run_lua("return 1 + 1", rt=rt)
        print(type(step).__name__, getattr(step, "error", None).__class__.__name__, again.values, round(spent, 2))
    """, timeout=60)
    kind, error, again, spent = out.split(maxsplit=3)
    assert (kind, error) == ("Failed", "BudgetExceeded"), out
    assert again == "(2,)"


def test_a_handler_still_handles_ordinary_errors() -> None:
    assert done(run_lua("return xpcall(error, function(m) return 'handled ' .. m end, 'boom')")) == (
        False, "handled boom")


def test_charges_do_not_refuse_ordinary_work() -> None:
    got = done(run_lua("""
        local t = {}
        for i = 1, 10000 do table.insert(t, i) end
        table.insert(t, 1, 0)
        table.remove(t, 1)
        table.sort(t, function(a, b) return a > b end)
        local moved = table.move(t, 1, 100, 1, {})
        local s = table.concat(t, ",")
        return #t, t[1], #moved, #s, utf8.len(s), select("#", string.byte(s, 1, 1000)), #string.rep("", 1000)
    """))
    assert got == (10000, 10000, 100, 48893, 48893, 1000, 0)


def test_table_functions_keep_lua_semantics_on_tables_with_metatables() -> None:
    got = done(run_lua("""
        local log = {}
        local proxy = setmetatable({}, {
          __index = function(_, k) return k * 10 end,
          __newindex = function(t, k, v) log[#log + 1] = k .. "=" .. tostring(v) rawset(t, k, v) end,
          __len = function() return 3 end,
        })
        table.insert(proxy, 99)
        local cat = table.concat(setmetatable({}, {__index = function(_, i) return "i" .. i end}), ",", 1, 3)
        local u = {table.unpack(setmetatable({}, {__index = function(_, i) return i * 2 end}), 1, 3)}
        local moved = table.move(setmetatable({}, {__index = function(_, i) return i end}), 1, 3, 1, {})
        return table.concat(log, ";"), cat, table.concat(u, ","), table.concat(moved, ",")
    """))
    assert got == ("4=99", "i1,i2,i3", "2,4,6", "1,2,3")


@pytest.mark.parametrize("call, message", [
    ("string.format('%d', 'x')", "bad argument #2 to 'format'"),
    ("string.rep({}, 2)", "bad argument #1 to 'rep'"),
    ("table.concat({{}})", "invalid value (table) at index 1 in table for 'concat'"),
    ("table.insert({}, 1, 2, 3)", "wrong number of arguments to 'insert'"),
    ("utf8.len('abc', 1, 9)", "bad argument #3 to 'len'"),
    ("string.byte({})", "bad argument #1 to 'byte'"),
])
def test_errors_from_wrapped_c_functions_name_the_users_line(call: str, message: str) -> None:
    err = failed(run_lua(f"local x = 1\n{call}\nreturn x"))
    assert str(err).startswith("test.lua:2: "), str(err)
    assert message in str(err)


def test_a_new_execution_after_a_budget_failure_is_unaffected() -> None:
    rt = make_runtime()
    failed(run_lua("xpcall(error, function() while true do end end)", rt=rt))
    assert done(run_lua("return xpcall(error, function(m) return 'ok ' .. m end, 'e')", rt=rt)) == (False, "ok e")


def test_victim_thread_parked_across_an_attack_keeps_its_coroutines() -> None:
    rt = make_runtime()
    victim = start_chunk(rt, wrap_body("""
        local gen = coroutine.wrap(function() for i = 1, 3 do coroutine.yield(i) end end)
        local a = gen()
        time.sleep(1)
        return a, gen(), gen()
    """), modules=["time"])
    assert isinstance(victim.step(), Yield)
    failed(run_lua("coroutine.wrap = nil coroutine.yield = function() return 'PWNED' end", rt=rt, modules=["time"]))
    step = victim.step(True, True)
    assert isinstance(step, Done) and step.values == (1, 2, 3)
