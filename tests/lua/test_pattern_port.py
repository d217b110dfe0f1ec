"""The Lua port of Lua 5.4's pattern matcher (modules/_patterns.lua) gives exactly
what the C functions give: values, captures, positions and error messages.

The sandbox runs the port for backtracking patterns over large subjects, so a
difference here would be a difference users see only on large inputs.
"""

from __future__ import annotations

from typing import Any

import pytest
from lua_helpers import done, make_runtime, run_lua

from moontide.lua import Runtime

FIND: list[tuple[str, str, int | None]] = [
    ("hello world", "o", None), ("hello world", "o w", None), ("hello world", "l+", None),
    ("hello", "l*", None), ("hello", "x*", None), ("hello", "(h)(e)", None), ("hello", "()ll()", None),
    ("hello", "^h", None), ("hello", "^e", None), ("hello", "o$", None), ("hello", "l$", None),
    ("a$b", "$b", None), ("hello", "", 10), ("hello", "", 6), ("hello", "l", -2), ("hello", "l", -100),
    ("hello", "l", 0), ("THE (quick) fox", "%((%a+)%)", None), ("f(a(b)c)d", "%b()", None),
    ("f(a(b)c", "%b()", None), ("THE (quick) fox", "%f[%a]%a+", None),
    ("hello world from Lua", "%f[%a]%a+%f[%A]", 3), ("key = value", "(%w+)%s*=%s*(%w+)", None),
    ("abcabc", "(abc)%1", None), ("abcabd", "(abc)%1", None), ("aaab", "a-b", None), ("aaab", "a-", None),
    ("[x]", "[]]", None), ("a-b", "[a%-]+", None), ("a^b", "[%^b]+", None), ("x=1, y=22", "(%a)=(%d+)", 5),
    ("  trim me  ", "^%s*(.-)%s*$", None), ("2024-01-02", "(%d+)-(%d+)-(%d+)", None), ("abc1", "[^%a]", None),
    ("a.b", "%.", None), ("abc", "a?b?c?d?", None), ("hello", "(l)(l)?", None), ("0x1F", "^0[xX](%x+)$", None),
    ("\n\t x", "%c+", None), ("a,b,,c", "([^,]*)", None), ("áé ü", "[\u00c0-\u00ff]+", None),
    ("AbC dEf", "%u%l%u", None), ("a1_b2", "[%w_]+", None), ("a.b;c!", "%p", None), ("xyz", "[a-c]", None),
    ("x-y", "[x-]", None), ("deadBEEF", "%X", None), ("tab\there", "%S+%s(%S+)", None), ("()", "%(%)", None),
    ("aaa", "a-$", None), ("ab", "(a)(b)()", None), ("abc", "((a)(b))", None), ("abc", ".-", 2),
    ("one two", "(%a+) (%a+)", None), ("aXbXc", "X(.-)X", None), ("[[x]]", "%[(%b[])%]", None),
    ("\x00a\x00", "%z", None), ("a\x00b", "a%zb", None), ("end", "d$", None), ("x", "[%a-z]", None),
    # errors
    ("abc", "%", None), ("abc", "[a", None), ("abc", "(a", None), ("abc", "a)", None), ("abc", "%1", None),
    ("abc", "%f", None), ("abc", "%fa", None), ("abc", "%b", None), ("abc", "a%b(", None),
    ("abc", "(()" * 17 + ")" * 17, None), ("a" * 250, "a?" * 250, None), ("abc", "(a)%2", None),
    ("abc", "(a%1)", None), ("abc", "[%", None), ("abc", "%0", None),
]

GSUB: list[tuple[str, str, Any, int | None]] = [
    ("hello world", "o", "0", None), ("hello world", "(o)", "[%1]", None), ("hello", "", "-", None),
    ("hello world", "%w+", "%0 %0", None), ("hello world", "(%w+)", "<%1>", 1), ("abc", "%w", "%%", None),
    ("abc", "()", "%1", None), ("abc", "b", 5, None), ("abc", "b", 2.5, None), ("abc", "^a", "X", None),
    ("aaa", "^a", "X", None), ("abc", "x*", "-", None), ("hello world", "l+", "L", 0),
    ("hello world", "l", "L", -1), ("hello", "", "-", 2), ("a b c", "%s", "", None),
    ("abc", "b", "%2", None), ("abc", "b", "%", None), ("abc", "b", "%x", None),
    ("hello world", "%w+", "TABLE", None), ("hello world", "(%w+) (%w+)", "SWAP", None),
    ("hello world", "%w+", "FALSE", None), ("hello world", "%w+", "NUMBER", None),
    ("hello world", "%w+", "BADTABLE", None), ("hello world", "(%w+)", "POSTABLE", None),
    ("abc", "()", "POSFN", None),
]

GMATCH: list[tuple[str, str, int | None]] = [
    ("hello world from Lua", "%a+", None), ("k=v, a=b", "(%w+)=(%w+)", None), ("abc", "", None),
    ("abc", "()", None), ("hello", "l", 4), ("^a^a", "^a", None), ("one two", "%a+", -3),
    ("abc", ".-", None), ("aaa", "a*", None), ("x", "%", None), ("abc", "a", 10),
]

# Lua helpers run on the raw state (not user code): `c` is the C function and
# `port` the Lua matcher; each returns a printable description of the outcome.
HELPERS = r"""
local function show(ok, ...)
  local out = { ok and "ok" or "error" }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = type(v) == "string" and ("%q"):format(v) or (math.type(v) or type(v)) .. ":" .. tostring(v)
  end
  return table.concat(out, " ")
end
local REPL = {
  TABLE = { hello = "HI", world = false },
  SWAP = function(a, b) return b .. " " .. a end,
  FALSE = function() return false end,
  NUMBER = function(w) return #w end,
  BADTABLE = { hello = {} },
  POSTABLE = setmetatable({}, { __index = function(_, k) return "<" .. k .. ">" end }),
  POSFN = function(p) return "[" .. p .. "]" end,
}
local function find(f, s, p, init) return show(pcall(f, s, p, init)) end
local function gsub(f, s, p, r, n) return show(pcall(f, s, p, REPL[r] or r, n)) end
local function gmatch(f, s, p, init)
  return show(pcall(function()
    local out = {}
    for a, b in f(s, p, init) do out[#out + 1] = tostring(a) .. "|" .. tostring(b) end
    return table.concat(out, ",")
  end))
end
return find, gsub, gmatch
"""


@pytest.fixture(scope="module")
def rt() -> Runtime:
    return make_runtime()


@pytest.fixture(scope="module")
def helpers(rt: Runtime) -> Any:
    return rt.lua.execute(HELPERS)


def port_fn(rt: Runtime, name: str) -> Any:
    port = rt.sandbox.lua_patterns
    if name in ("find", "match"):
        # as the sandbox does: find without special characters is a plain find
        return rt.lua.eval(f"""function(port) return function(s, p, init)
            if {str(name == 'find').lower()} and not p:find("[%^%$%*%+%?%.%(%[%%%-]") then
              return s:find(p, init, true)
            end
            return port.find_aux({str(name == 'find').lower()}, s, p, init)
          end end""")(port)
    return port[name]


@pytest.mark.parametrize("name", ["find", "match"])
@pytest.mark.parametrize("s, p, init", FIND)
def test_find_and_match(rt: Runtime, helpers: Any, name: str, s: str, p: str, init: int | None) -> None:
    find = helpers[0]
    c = rt.lua.globals().string[name]
    assert find(port_fn(rt, name), s, p, init) == find(c, s, p, init)


@pytest.mark.parametrize("s, p, repl, n", GSUB)
def test_gsub(rt: Runtime, helpers: Any, s: str, p: str, repl: Any, n: int | None) -> None:
    gsub = helpers[1]
    assert gsub(port_fn(rt, "gsub"), s, p, repl, n) == gsub(rt.lua.globals().string.gsub, s, p, repl, n)


@pytest.mark.parametrize("s, p, init", GMATCH)
def test_gmatch(rt: Runtime, helpers: Any, s: str, p: str, init: int | None) -> None:
    gmatch = helpers[2]
    assert gmatch(port_fn(rt, "gmatch"), s, p, init) == gmatch(rt.lua.globals().string.gmatch, s, p, init)


def test_error_cases_really_error(rt: Runtime, helpers: Any) -> None:
    # the table above must exercise errors, or equality proves little
    outs = [helpers[0](port_fn(rt, "find"), s, p, i) for s, p, i in FIND]
    assert sum(o.startswith("error") for o in outs) >= 12


def test_sandbox_functions_switch_to_the_port_on_large_subjects() -> None:
    # a backtracking pattern over 3,000 bytes runs in Lua inside the sandbox;
    # what it returns is what C returns for the same call (argument coercion too)
    rt = make_runtime(instruction_budget=200_000_000)
    body = """
        local s = string.rep("key = value; ", 250) .. "last=1"
        local out = {}
        out[1] = table.concat({ s:find("(%w+)%s*=%s*(%w+)", 100) }, ",")
        out[2] = table.concat({ s:match("(%w+)=(%d)$") }, ",")
        out[3] = select(2, s:gsub("(%w+)%s*=%s*(%w+)", "%2=%1"))
        local n = 0
        for k, v in s:gmatch("(%w+)%s*=%s*(%w+)") do n = n + 1 end
        out[4] = n
        out[5] = (s:gsub("(%w+)%s*=%s*(%w+)", { value = "V" }, 3)):sub(1, 40)
        out[6] = table.concat({ string.find(12345678901234, "(%d+)4$") }, ",")
        return table.concat(out, " | ")
    """
    sandboxed = done(run_lua(body, rt=rt))[0]
    used = rt.sandbox.instructions_used()
    raw = rt.lua.execute(body)
    assert sandboxed == raw
    assert used > 50_000  # the port ran (C would have been charged far less)
