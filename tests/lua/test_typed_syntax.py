"""Typed Lua, the front end (issue 13): every construct of Wippy's types page parses, and erases line for line.

``typed.translate`` turns a typed-Lua source into plain Lua 5.4 before it is
compiled. What the page calls zero-cost (annotations, ``::``/``as``, ``!``,
generic parameter lists) becomes spaces, so every other character keeps its
line and column; what the page makes a runtime value (``type`` statements,
validated locals, ``typeof`` of an annotated local) becomes calls written on
the lines of the construct. Plain Lua comes back unchanged. Everything here
compiles the translation with the real Lua 5.4 of lupa.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lua_helpers import code_of, make_runtime, run_python
from moontide import errors
from moontide.entries import load_app
from moontide.lua import Failed, LuaCode, check_syntax, instantiate, typed
from moontide.lua.host import FunctionHost
from moontide_testing import moontide

REPO = Path(__file__).resolve().parents[2]

#: Constructs of the page that must cost nothing: they vanish, and nothing else changes.
ZERO_COST = [
    "local n: number = 3.14",
    "local i: integer = 42",
    'local s: string = "hello"',
    "local b: boolean = true",
    'local a: any = "anything"',
    "local u: unknown = something",
    "local y: number? = nil",
    "local val: number | string = get_value()",
    "local function process(x: number?): number\n  if x ~= nil then return x end\n  return 0\nend",
    "local function add(a: number, b: number): number\n    return a + b\nend",
    "local function div_mod(a: number, b: number): (number, number)\n    return a // b, a % b\nend",
    "local function fetch(url: string): (string?, error?)\nend",
    "local double: (number) -> number = function(x: number): number\n    return x * 2\nend",
    "local function sum(...: number): number\n    local total: number = 0\n    return total\nend",
    "local function identity<T>(x: T): T\n    return x\nend",
    "local function greet<T: HasName>(obj: T): string\n    return 'Hello, ' .. obj.name\nend",
    "function fail(msg: string): never\n    error(msg)\nend",
    "local name = (user!).name",
    "local user = data :: User",
    "local user = data as User",
    "local cfg: {host: string, port: number, timeout?: number} = {}",
    "local arr: {number} = {1, 2, 3}",
    "local map: {[string]: number} = {}",
    "local fn: (number, string) -> boolean",
    "local r: Result<User, string> = x",
    "local m: process.Message = msg",
    "local t: string[] = {}",
    "local f: fun(a: number): string = nil",
    "local x: number <const> = 5",
    "function M:method(a: string, ...: any): (boolean, error?) return true end",
    "local cb: ((number) -> string)? = nil",
    "local x = t.a!.b! + (y :: number) * (z as integer)",
    "local g = function<T>(v: T): T return v end",
    "local k: readonly {number} = {}",
    "local function check(x: any): asserts x is string end",
]

#: Constructs the page makes runtime values: (source, what the Lua must contain).
RUNTIME = [
    ("type StringArray = {string}", "__typed.array(__typed.string)"),
    ("type StringMap = {[string]: number}", "__typed.map(__typed.string, __typed.number)"),
    ('type Status = "pending" | "active" | "done"', '__typed.union({__typed.lit("pending")'),
    ("type User = {name: string, age: number}", '{"name", __typed.string}'),
    ("type Config = {\n    host: string,\n    port: number,\n    timeout?: number,\n    debug?: boolean\n}",
     '{"timeout", __typed.opt(__typed.number), true}'),
    ("type Named = {name: string}\ntype Aged = {age: number}\ntype Person = Named & Aged",
     '__typed.inter({__typed.ref(Named, "Named"), __typed.ref(Aged, "Aged")})'),
    ("type Result<T, E> =\n    {ok: true, value: T}\n    | {ok: false, error: E}",
     '__typed.generic("Result", {"T", "E"}, function(T, E)'),
    ("type F = (number, string) -> boolean", "__typed.func({__typed.number, __typed.string}, {__typed.boolean})"),
    ("type M = process.Message", '__typed.ref(process.Message, "process.Message")'),
    ("type N = never", "__typed.never"),
    ("local x: number @min(0) = 1", '__typed.check((__typed_sites[1] or __typed.put(__typed_sites, 1, '
     '__typed.ann(__typed.number, {{"min", 0}}))), x, "x")'),
    ("local x: number @min(0) @max(100) = 50", '{{"min", 0}, {"max", 100}}'),
    ('local email: string @pattern("^.+@.+$") = "test@example.com"', '{"pattern", "^.+@.+$", {"seq",'),
    ("type U = {\n    age: number @min(0) @max(150),\n    name: string @min_len(1) @max_len(100)\n}",
     '{"min_len", 1}, {"max_len", 100}'),
    ("local scores: {number @min(0) @max(100)} = {85, 90}", "__typed.array(__typed.ann(__typed.number"),
    ("local id: number @min(1) | string @min_len(1) = 1", "__typed.union({__typed.ann(__typed.number"),
    ("local arr: {number} = {1}\nlocal t = typeof(arr)", "local t = (__typed_sites[1]"),
    ("type C = typeof(defaults)", "__typed.typeof(defaults)"),
    ("type K = keyof(User)", '__typed.keyof(__typed.ref(User, "User"))'),
    ('type N = User["name"]', '__typed.index(__typed.ref(User, "User"), __typed.lit("name"))'),
    ("type S<T> = T extends string ? true : false", "__typed.cond(T, __typed.string"),
    ("interface Named\n  function name(): string\nend", '__typed.iface({{"name", __typed.func({}, {__typed.string})}}'),
    ("local function f(age: number @min(0)) return age end", '__typed.check((__typed_sites[1]'),
]

#: Plain Lua 5.4 that a typed-Lua parser could get wrong: it must come back as it was.
PLAIN = [
    "local x <const> = 5\nlocal y <close> = nil\nlocal z<const> = 4",
    "for i = 1, 3 do goto continue ::continue:: end",
    "local t = {[1]=2, x=3; 'a', f'x', g{1}}\nlocal s = [==[\nabc]]\n]==] --[[ c ]] x = 1",
    "a = b\n(f or g)()",
    "local type = type\nlocal t = type(x)\ntype = nil\ntype.x = 1",
    "local as = 1\nlocal y = as\nas = 2",
    "local typeof = 1\nlocal interface = typeof",
    "x = 'a\\z\n   b' .. \"c\\\nd\"",
    "x = 0x1p-2 + 1e-3 + .5 + 3. + 0xA.8",
    "x = a // b ~ c >> 2 << 1 & 3 | ~d",
    "local function f(...) return ... end",
    "obj:method{1}:other'x'.field[1]()",
    "x = a<b and c>d",
    "if a then elseif b then else end repeat local r = 1 until r",
    "return",
]


@pytest.mark.parametrize("src", ZERO_COST)
def test_zero_cost_constructs_vanish_and_nothing_else_moves(src: str) -> None:
    out = typed.translate(src)
    assert "__typed" not in out and "__moontide_types" not in out
    assert len(out) == len(src) and out.count("\n") == src.count("\n")
    # every character the translation kept is where it was; what it dropped became spaces
    assert all(o == c or (o == " " and c != "\n") for o, c in zip(out, src))
    make_runtime().compile(out, "t.lua")


@pytest.mark.parametrize(("src", "wanted"), RUNTIME)
def test_runtime_constructs_become_calls_on_their_own_lines(src: str, wanted: str) -> None:
    out = typed.translate(src)
    assert wanted in out
    assert out.count("\n") == src.count("\n")
    make_runtime().compile(out, "t.lua")


@pytest.mark.parametrize("src", PLAIN)
def test_plain_lua_comes_back_unchanged(src: str) -> None:
    assert typed.translate(src) == src
    make_runtime().compile(src, "t.lua")


def test_every_lua_file_of_the_repository_is_plain_lua_and_comes_back_unchanged() -> None:
    files = [p for p in REPO.rglob("*.lua") if ".venv" not in p.parts and "typed" not in p.parts]
    assert len(files) > 10
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert typed.translate(text) == text, path


def test_the_translation_is_deterministic_cached_and_the_digest_is_the_users_source() -> None:
    src = "type P = {x: number}\nreturn function(p: P): number return P(p).x end\n"
    first = typed.translate(src)
    assert typed.translate(src) == first
    assert typed._CACHE[next(k for k, v in typed._CACHE.items() if v == first)] == first
    code = code_of(src)
    assert code.to_dict()["source"] == src  # code pinning names what the user wrote
    assert LuaCode.from_dict(code.to_dict()).digest == code.digest


def test_the_translation_is_the_same_in_every_process() -> None:
    src = "type A = {b: B?, c: C?}\ntype C = {x: number}\ntype B = {a: A?}\nlocal v: number @min(1) = 2\n"
    code = f"from moontide.lua import typed; print(typed.translate({src!r}))"
    outs = {run_python(code, env={"PYTHONHASHSEED": str(seed)}) for seed in (1, 2, 3)}
    assert outs == {typed.translate(src) + "\n"}


def test_a_type_referring_to_a_later_one_and_to_itself_is_declared_before_it() -> None:
    out = typed.translate("type A = {b: B?}\ntype B = {a: A?, self: B?}\n")
    first, second = out.splitlines()
    assert first.startswith("local __typed, __typed_sites = __moontide_types, {}; local B; local A; A = ")
    assert second.startswith("B = __typed.def(")


@pytest.mark.parametrize(("src", "line", "message"), [
    ("local x = 1\nlocal y: = 2\n", 2, "type expected near '='"),
    ("type X = {a: number\nlocal y = 1\n", 2, "'}' expected to close the record type near 'local'"),
    ("local function f(a: number,\n  b: ) end\n", 2, "type expected near ')'"),
    ("local m: Map<string, number = {}\n", 1, "'>' expected to close the type arguments near '='"),
    ("\n\nlocal x: number @min('a') = 1\n", 3, "@min takes one argument, a number"),
    ("local x: string @pattern(\"(a\") = 1\n", 1, "bad @pattern '(a': missing ')' at offset 2"),
    ("type R = {a: number, a: string}\n", 1, "field 'a' appears twice in the record type"),
    ("local ok = x :: \n", 2, "type expected near <eof>"),
])
def test_check_syntax_names_the_line_and_what_was_expected(src: str, line: int, message: str) -> None:
    assert check_syntax(src, "bad.lua") == (line, message)
    with pytest.raises(errors.LuaError) as info:
        make_runtime().compile(src, "bad.lua")
    assert str(info.value) == f"bad.lua:{line}: {message}"


def test_plain_lua_syntax_errors_keep_luas_own_message() -> None:
    assert check_syntax("local x = 1\nlocal y = = 2\n", "bad.lua") == (2, "unexpected symbol near '='")
    assert check_syntax("return function()\n  local x = 1\n", "bad.lua") == \
        (3, "'end' expected (to close 'function' at line 1) near <eof>")


def test_moontide_check_reports_type_syntax_errors_with_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "wf.lua").write_text("type Order = {id: string}\n\nreturn function(o: Order): \n  return o\nend\n")
    (tmp_path / "app.yaml").write_text(
        'version: "1.0"\nnamespace: app\nentries:\n'
        "  - name: wf\n    kind: workflow.lua\n    source: file://wf.lua\n"
        "  - name: inline\n    kind: function.lua\n    source: |\n"
        "      type P = {x: number}\n      return function(p: P): number\n        return p.x @ 1\n      end\n")
    with pytest.raises(errors.EntryErrors) as info:
        load_app(tmp_path, check_lua=check_syntax)
    found = {(Path(p.file).name, p.line, p.message) for p in info.value.problems}
    assert found == {("wf.lua", 4, "type expected near 'return'"),
                     ("app.yaml", 12, "'end' expected (to close 'function' at line 2) near '@'")}
    out = moontide("check", str(tmp_path))
    assert out.returncode != 0
    assert "wf.lua:4" in out.stdout + out.stderr and "type expected near 'return'" in out.stdout + out.stderr


def test_typed_lines_keep_their_numbers_in_inline_sources() -> None:
    code = code_of("type P = {x: number}\nreturn function(p: P?)\n  return (p!).x\nend\n", first_line=7,
                   chunkname="app.yaml")
    rt = make_runtime()
    host = FunctionHost(rt)
    fn = instantiate(rt, code, host=host, seed=1)
    step = rt.start(fn, host, None).step()
    assert isinstance(step, Failed)
    assert str(step.error).startswith("app.yaml:9: attempt to index a nil value (local 'p')")
