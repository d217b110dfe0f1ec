"""Typed Lua, types as runtime values (issue 13): casts, is, validators, reflection, comparison, isolation.

Each test runs typed Lua in the real sandbox (lupa, the prelude, the type
runtime of modules/_types.lua), as a function.lua entry or a library.lua one;
the workflow and process entry kinds run in tests/workflows/test_typed_workflow.py.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from lua_helpers import code_of, failed, make_runtime, run_chunk, run_lua, value
from moontide import errors
from moontide.lua import Failed, instantiate
from moontide.lua.host import FunctionHost


def lua(body: str, *args: Any, chunk: bool = False, **kw: Any) -> Any:
    """What the Lua returns, as JSON values (a function body, or a whole chunk returning the function)."""
    rt = make_runtime()
    step = (run_chunk if chunk else run_lua)(body, *args, rt=rt, **kw)
    return rt.from_lua(value(step))


def error_of(body: str, *args: Any, chunk: bool = False, **kw: Any) -> errors.MoontideError:
    return failed((run_chunk if chunk else run_lua)(body, *args, **kw))


TYPES = """
type Point = {x: number, y: number}
type Status = "pending" | "active" | "done"
type User = {
    name: string @min_len(1) @max_len(100),
    age: number @min(0) @max(150),
    email?: string @pattern("^[^@]+@[^@]+$"),
    tags?: {string},
}
type LoadState =
    {status: "loading"}
    | {status: "loaded", data: User}
    | {status: "error", message: string}
type Result<T, E> = {ok: true, value: T} | {ok: false, error: E}
type Node = {value: number, next: Node?}
type Named = {name: string}
type Aged = {age: number}
type Person = Named & Aged
type Scores = {[string]: number @min(0)}
"""


# -- casts and is ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("expr", "message"), [
    ('User({name = "ann", age = "x"})', "User.age: expected number, got string"),
    ('User({name = "", age = 1})', "User.name: length must be >= 1, got 0"),
    ('User({name = "ann", age = 200})', "User.age: must be <= 150, got 200"),
    ('User({name = "ann", age = -1})', "User.age: must be >= 0, got -1"),
    ('User({name = "ann", age = 3, email = "nope"})',
     'User.email: must match /^[^@]+@[^@]+$/, got "nope"'),
    ('User({name = "ann", age = 3, tags = {"a", 2}})', "User.tags[2]: expected string, got number"),
    ("User(nil)", "User: expected {name: string @min_len(1) @max_len(100), age: number @min(0) @max(150), "
                  "email?: string @pattern(\"^[^@]+@[^@]+$\"), tags?: {string}}, got nil"),
    ('User({age = 3})', "User.name: expected string, got nil"),
    ('Status("gone")', 'Status: expected "pending" | "active" | "done", got "gone"'),
    ('Point({x = 1, y = true})', "Point.y: expected number, got boolean"),
    ('LoadState({status = "loaded", data = {name = "a", age = "old"}})',
     "LoadState.data.age: expected number, got string"),
    ('LoadState({status = "unknown"})',
     'LoadState.status: expected "loading" | "loaded" | "error", got "unknown"'),
    ("Person({name = 'x'})", "Person.age: expected number, got nil"),
    ("Scores({a = 1, b = -2})", "Scores.b: must be >= 0, got -2"),
    ("Scores({[1] = 2})", "Scores: key 1: expected string, got number"),
    ("Scores({z = -1, m = 1, a = -2, b = -3})", "Scores.a: must be >= 0, got -2"),  # the first bad key in key order
    ("Node({value = 1, next = {value = 2, next = {value = 'x'}}})", "Node.next.next.value: expected number, got string"),
    ("Result({ok = true, value = 1})", None),
    ("integer(1.5)", "value: expected integer, got number 1.5"),
    ("string(42)", "value: expected string, got number"),
    ("number('1')", "value: expected number, got string"),
    ("boolean(nil)", "value: expected boolean, got nil"),
])
def test_a_cast_raises_an_invalid_error_naming_the_path(expr: str, message: str | None) -> None:
    src = TYPES + f"return function() return {expr} end\n"
    if message is None:
        lua(src, chunk=True)
        return
    err = error_of(src, chunk=True)
    assert err.kind == "Invalid"
    assert err.message == message


def test_a_cast_returns_the_value_and_is_returns_value_or_error() -> None:
    out = lua(TYPES + """
return function()
  local p = Point({x = 1, y = 2})
  local ok, none = User:is({name = "ann", age = 30})
  local bad, err = User:is({name = "ann", age = "x"})
  return {
    same = p.x + p.y, ok = ok.name, none = none == nil, bad = bad == nil,
    kind = err:kind(), message = err:message(), details = err:details(),
    int = math.type(integer(3.0)), str = string("s"), num = number(2.5), bool = boolean(false),
    upper = string.upper("abc") .. ("x"):rep(2), fmt = string.format("%d", 7),
  }
end
""", chunk=True)
    assert out == {"same": 3, "ok": "ann", "none": True, "bad": True, "kind": "Invalid",
                   "message": "User.age: expected number, got string",
                   "details": {"path": "User.age", "expected": "number", "got": "string"},
                   "int": "integer", "str": "s", "num": 2.5, "bool": False, "upper": "ABCxx", "fmt": "7"}


# -- validators on locals, parameters, fields, elements, union members ---------------------------------------------

@pytest.mark.parametrize(("body", "message"), [
    ("local x: number @min(0) = 1\nlocal y: number @min(0) @max(100) = 101", "y: must be <= 100, got 101"),
    ('local email: string @pattern("^.+@.+$") = "a@b"\nlocal bad: string @pattern("^.+@.+$") = "ab"',
     'bad: must match /^.+@.+$/, got "ab"'),
    ("local scores: {number @min(0) @max(100)} = {85, 90, 101}", "scores[3]: must be <= 100, got 101"),
    ('local id: number @min(1) | string @min_len(1) = 1\nlocal id2: number @min(1) | string @min_len(1) = ""',
     "id2: length must be >= 1, got 0"),
    ("local s: string @max_len(3) = 'héllo'", "s: length must be <= 3, got 5"),
    ("local a, b: number @min(0) = 1, -1", "b: must be >= 0, got -1"),
    ("local function f(age: number @min(0)) return age end\nf(5)\nf(-5)", "age: must be >= 0, got -5"),
    ("local function f(...: number @min(0)) end\nf(1, 2, -3)", "...[3]: must be >= 0, got -3"),
    ("local t: {string} @min_len(1) = {}", "t: length must be >= 1, got 0"),
])
def test_validators_check_annotated_locals_and_parameters(body: str, message: str) -> None:
    err = error_of(body)
    assert (err.kind, err.message) == ("Invalid", message)


def test_a_local_without_a_validator_or_a_value_is_not_checked() -> None:
    assert lua("""
local n: number = "not checked: annotations cost nothing"
local m: number @min(0)
local u: {name: string} = 5
return {n, m == nil, u}
""") == ["not checked: annotations cost nothing", True, 5]


@pytest.mark.parametrize("pattern", [
    "^[a-z]+(-[a-z]+)*$", r"^\d{3}-\d{4}$", r"^\w+@\w+\.(com|org)$", "colou?r", "^(ab|cd){2,3}$",
    r"^[^\s]+$", "^a.c$", "(?i)^hello", r"\bcat\b", "^[a-zA-Z]+$", "^.{2,4}$", "x*?y", "^$", r"^\x41\.",
    "^(a|ab)(c|bcd)(d*)$", "[0-9a-fA-F]{4}", "^é+$", r"^[^\d]*$", "a{2}", "(?s)a.b",
])
@pytest.mark.parametrize("subject", [
    "", "abc", "a-b-c", "555-1234", "me@host.org", "color", "colour", "abcd", "abcdab", "ab cd", "aXc",
    "Hello world", "the cat sat", "concat", "ABCdef", "ab", "abcde", "xxy", "A.b", "abcd", "beef", "éé", "a1",
    "aa", "a\nb",
])
def test_pattern_validators_match_as_regular_expressions_do(pattern: str, subject: str) -> None:
    out = lua(f"""
local T = __moontide_types.ann(__moontide_types.string, {{{{"pattern", {_lua_str(pattern)}, {_regex_table(pattern)}}}}})
return T:is(...) ~= nil
""", subject)
    assert out == (re.search(pattern, subject) is not None)


def test_posix_classes_in_patterns() -> None:
    assert lua("""
local ok: string @pattern("^[[:alpha:]]+[[:digit:]]*$") = "abc12"
return pcall(function() local bad: string @pattern("^[[:alpha:]]+$") = "ab1" end)
""") is False


def _lua_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _regex_table(pattern: str) -> str:
    from moontide.lua import _regex
    return _regex.compile_lua(pattern)


# -- reflection ------------------------------------------------------------------------------------------

def test_reflection_methods_and_comparisons() -> None:
    out = lua(TYPES + """
return function(value)
  local r = {}
  r.kinds = {Number:kind(), Point:kind(), Point:name(), Status:kind(), Person:kind(), Node:kind()}
  r.fields = {}
  for name, typ in User:fields() do r.fields[#r.fields + 1] = name .. ":" .. typ:kind() end
  r.person = {}
  for name in Person:fields() do r.person[#r.person + 1] = name end
  r.field = {User.name:kind(), User.email:kind(), User.email:inner():kind(), User:name()}
  local arr: {number} = {1, 2, 3}
  local map: {[string]: number} = {}
  local opt: number? = nil
  local fn: (number, string) -> boolean
  r.collections = {typeof(arr):kind(), typeof(arr):elem():kind(), typeof(map):key():kind(),
                   typeof(map):val():kind(), typeof(opt):kind(), typeof(opt):inner():kind()}
  r.variants = {}
  for variant in Status:variants() do r.variants[#r.variants + 1] = tostring(variant) end
  r.params = {}
  for param in typeof(fn):params() do r.params[#r.params + 1] = param:kind() end
  r.ret = typeof(fn):ret():kind()
  type Pt = {x: number, y: number}
  type Pt3 = {x: number, y: number, z: number}
  r.compare = {Number == Number, Integer <= Number, Integer < Number, Number <= Integer, Number < Number,
               Pt == Point, Pt3 <= Point, Point <= Pt3, Pt3 < Point, Never <= String, String <= Any,
               Status <= String, String <= Status}
  local handlers = {}
  handlers[Number] = "number handler"
  handlers[String] = "string handler"
  r.handler = handlers[typeof(value)] .. ", " .. handlers[typeof("s")]
  r.generic = {Result:kind(), tostring(Result), Result:is({ok = false, error = 1}) ~= nil}
  r.show = {tostring(Point), tostring(typeof(fn)), tostring(User.tags), tostring(typeof(opt))}
  return r
end
""", 3.5, chunk=True)
    assert out == {
        "kinds": ["number", "record", "Point", "union", "intersection", "record"],
        "fields": ["name:string", "age:number", "email:optional", "tags:optional"],
        "person": ["name", "age"],
        "field": ["string", "optional", "string", "User"],
        "collections": ["array", "number", "string", "number", "optional", "number"],
        "variants": ['"pending"', '"active"', '"done"'],
        "params": ["number", "string"],
        "ret": "boolean",
        "compare": [True, True, True, False, False, True, True, False, True, True, True, True, False],
        "handler": "number handler, string handler",
        "generic": ["union", "Result", True],
        "show": ["Point", "(number, string) -> boolean", "{string}?", "number?"],
    }


def test_generic_instances_keyof_index_conditional_and_interfaces() -> None:
    out = lua(TYPES + """
type UserResult = Result<User, string>
type Keys = keyof(Point)
type X = Point["x"]
type IsStr<T> = T extends string ? true : false
type S = IsStr<string>
type N = IsStr<number>
interface Greeter
  function greet(name: string): string
end
return function()
  local ok = UserResult:is({ok = true, value = {name = "a", age = 1}}) ~= nil
  local _, err = UserResult:is({ok = true, value = {name = "a"}})
  local greeter = {greet = function(_, n) return "hi " .. n end}
  local _, gerr = Greeter:is({})
  return {ok, err:message(), tostring(UserResult), Keys:kind(), X:kind(), S:is(true) ~= nil, N:is(false) ~= nil,
          Greeter:kind(), Greeter(greeter):greet("x"), gerr:message()}
end
""", chunk=True)
    assert out == [True, "UserResult.value.age: expected number, got nil", "UserResult",
                   "union", "number", True, True, "interface", "hi x",
                   "Greeter.greet: expected a method greet(), got nil"]


def test_recursive_types_hold_over_cyclic_data() -> None:
    assert lua("""
type Node = {value: number, next: Node?}
type A = {b: B?}
type B = {a: A?}
return function()
  local ring = {value = 1}
  ring.next = {value = 2, next = ring}
  local a = {}
  a.b = {a = a}
  return {Node(ring).value, A(a) == a, B:is({a = {b = {}}}) ~= nil}
end
""", chunk=True) == [1, True, True]


def test_typeof_of_runtime_values() -> None:
    assert lua("""
return {tostring(typeof(1)), tostring(typeof(1.5)), tostring(typeof("s")), tostring(typeof(nil)),
        tostring(typeof({})), tostring(typeof(print)), tostring(typeof(Number)), tostring(typeof(errors.new("x")))}
""", modules=["errors"]) == ["number", "number", "string", "nil", "table", "function", "type", "error"]


def test_wippys_module_types_exist_where_code_names_them() -> None:
    assert lua("""
type Message = process.Message
local t = time.now()
return {Message:kind(), tostring(process.Event), process.Event:kind(), time.Time:is(t) ~= nil,
        errors.Error:is(errors.new("x")) ~= nil, Message:is({}) == nil}
""", modules=["process", "time", "errors"]) == ["interface", "process.Event", "record", True, True, True]


# -- lines, libraries, isolation, budgets ----------------------------------------------------------------

def test_errors_on_typed_lines_name_the_file_and_the_original_line() -> None:
    src = """type User = {name: string}

return function(u: User?, data: any)
  local n: number = 1
  if data == 1 then
    local name = (u!).name
  end
  local user = User(data :: any)
  return user
end
"""
    err = failed(run_chunk(src, None, 1, chunkname="users.lua"))
    assert str(err).startswith("users.lua:6: attempt to index a nil value (local 'u')")
    err = failed(run_chunk(src, None, 2, chunkname="users.lua"))
    assert err.message == "User: expected {name: string}, got number"
    assert "users.lua:8:" in err.traceback
    assert "_types" not in err.traceback


def test_a_library_exports_its_types_and_typed_functions() -> None:
    lib = code_of("""
type Money = {amount: integer @min(0), currency: "EUR" | "USD"}
local M = {}
M.Money = Money
function M.add(a: Money, b: Money): Money
  return Money({amount = a.amount + b.amount, currency = a.currency})
end
return M
""", id="app:money", chunkname="money.lua")
    rt = make_runtime()
    host = FunctionHost(rt)
    main = code_of("""
local money = require("money")
type Price = money.Money
return function(x: any)
  local total = money.add(Price(x), {amount = 5, currency = "EUR"})
  return {total.amount, Price:name(), money.Money:kind()}
end
""", imports=(("money", lib),))
    fn = instantiate(rt, main, host=host, seed=1)
    step = rt.start(fn, host, rt.to_lua({"amount": 2, "currency": "EUR"})).step()
    assert rt.from_lua(value(step)) == [7, "Price", "record"]
    step = rt.start(instantiate(rt, main, host=host, seed=1), host, rt.to_lua({"amount": -2, "currency": "EUR"})).step()
    assert failed(step).message == "Price.amount: must be >= 0, got -2"


@pytest.mark.parametrize("attack", [
    "rawset(Number, 'x', 1)",
    "Number.x = 1",
    "setmetatable(Number, {})",
    "rawset(__moontide_types, 'number', String)",
    "__moontide_types.number = String",
    "rawset(__moontide_types.number, 'kind', 1)",
    "string.x = 1",
    "rawset(process.Message, 'x', 1)",
    "type P = {x: number}\nrawset(P, 'x', 1)",
])
def test_types_are_read_only_through_rawset_setmetatable_and_assignment(attack: str) -> None:
    err = error_of(attack, modules=["process"])
    assert "read-only" in str(err) or "protected metatable" in str(err)


def test_nothing_of_a_type_shows_through_pairs_next_or_getmetatable() -> None:
    assert lua("""
type P = {x: number}
local seen = {}
for k in pairs(Number) do seen[#seen + 1] = k end
for k in pairs(P) do seen[#seen + 1] = k end
return {#seen, next(String) == nil, getmetatable(Number), getmetatable(P)}
""") == [0, True, False, False]


def test_executions_sharing_a_runtime_do_not_share_their_types() -> None:
    rt = make_runtime()
    first = run_chunk("type P = {x: number}\nP_global = P\nreturn function() return P:kind() end", rt=rt)
    second = run_chunk("return function() return P_global == nil, Number:kind() end", rt=rt)
    assert value(first) == "record"
    assert list(second.values) == [True, "number"]


def test_validation_runs_under_the_instruction_budget() -> None:
    err = error_of("""
type Many = {number}
local big = {}
for i = 1, 100000 do big[i] = i end
for _ = 1, 100 do Many(big) end
""")
    assert err.kind == "BudgetExceeded"


def test_a_backtracking_pattern_stops_at_the_instruction_budget() -> None:
    step = run_lua("""
local s: string @pattern("^(a+)+$") = string.rep("a", 40) .. "b"
""")
    assert isinstance(step, Failed) and step.error.kind == "BudgetExceeded"
