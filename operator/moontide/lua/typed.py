"""Wippy's typed Lua (the gradual type system of Wippy's ``en/lua/types.md``) as plain Lua 5.4.

Every Lua source goes through ``translate`` before it is compiled (code.py's
``_factory`` and runtime.py's ``check_syntax``). What the page calls zero-cost
is erased: annotations on locals, parameters and returns, generic parameter
lists, ``::`` and ``as`` casts and the ``!`` assertion become spaces, so every
construct keeps its line (and, on its line, its column) and Lua's own errors
and tracebacks name the user's file and line. What the page makes a runtime
value becomes a call into the type runtime (``modules/_types.lua``, reached
through the base environment's ``__moontide_types``), written on the lines of
the construct it replaces:

- ``type Name = T`` (and ``type Name<P> = T``, ``interface Name ... end``)
  declares a local ``Name`` holding the type as a value, built on first use;
- a local or parameter whose annotation carries a validator (``@min(0)``...)
  is checked against its whole annotated type where it is assigned;
- ``typeof(x)`` of an annotated local is the annotation's type.

A source with none of these comes back unchanged, character for character.
The translation depends on the text alone, and is cached by content hash.
"""

from __future__ import annotations

import bisect
import hashlib
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from . import _regex

__all__ = ["RUNTIME_GLOBAL", "TypeSyntaxError", "translate"]

#: the base environment's name for the type runtime (the constructors translated code calls)
RUNTIME_GLOBAL = "__moontide_types"
_T = "__typed"            # the chunk's local holding the runtime
_SITES = "__typed_sites"  # the chunk's (so one execution's) cache of the types of checked locals
_PROLOGUE = f"local {_T}, {_SITES} = {RUNTIME_GLOBAL}, {{}}; "

KEYWORDS = frozenset(
    "and break do else elseif end false for function goto if in local nil not or repeat return then true until "
    "while".split())
_BLOCK_END = frozenset(("end", "else", "elseif", "until", "<eof>", "return"))
_UNARY = frozenset(("not", "-", "#", "~"))
_BINARY = frozenset(("+", "-", "*", "/", "//", "%", "^", "..", "==", "~=", "<", "<=", ">", ">=", "and", "or", "&",
                     "|", "~", "<<", ">>"))
#: names a type annotation may use without declaring them
BUILTIN_TYPES = frozenset(("nil", "boolean", "number", "integer", "string", "any", "unknown", "never", "table",
                           "error", "function", "thread", "userdata", "self"))
#: validators the runtime checks, with the arguments each takes
VALIDATORS = {"min": "number", "max": "number", "min_len": "count", "max_len": "count", "pattern": "string"}

_SCAN = re.compile(r"""
  (?P<skip>[ \t\r\f\v\n]+|--\[(?P<cl>=*)\[.*?\](?P=cl)\]|--[^\n]*)
| (?P<name>[A-Za-z_][A-Za-z0-9_]*)
| (?P<number>0[xX](?:[pP][+-]|[0-9a-zA-Z_.])*|(?:[0-9]|\.[0-9])(?:[eE][+-]|[0-9a-zA-Z_.])*)
| (?P<string>"(?:[^"\\\n]|\\z\s*|\\\r\n|\\\n\r|\\[\s\S])*"|'(?:[^'\\\n]|\\z\s*|\\\r\n|\\\n\r|\\[\s\S])*'
             |\[(?P<sl>=*)\[.*?\](?P=sl)\])
| (?P<sym>\.\.\.|\.\.|::|<<|>>|//|==|~=|<=|>=|->|[-+*/%^\#&~|<>=(){}\[\];:,.?!@])
| (?P<bad>[\s\S])
""", re.X | re.S)
_NOT_NEWLINE = re.compile(r"[^\n]")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "\\": "\\", '"': '"',
            "'": "'", "\n": "\n"}


class TypeSyntaxError(Exception):
    """A source that is not valid typed Lua: ``line`` (1-based) and what was expected, as Lua says it.

    ``typed``: the source used typed syntax by then (else Lua's own message,
    for the same line, says it as well or better).
    """

    def __init__(self, line: int, message: str, typed: bool = True) -> None:
        super().__init__(f"{line}: {message}")
        self.line = line
        self.message = message
        self.typed = typed


# -- the cache ---------------------------------------------------------------------------------------

_CACHE: OrderedDict[str, str | TypeSyntaxError] = OrderedDict()
_CACHE_SIZE = 512
_CACHE_LOCK = threading.Lock()


def translate(text: str) -> str:
    """Plain Lua for a typed-Lua source, line for line; raises TypeSyntaxError.

    Deterministic: the same text gives the same Lua, and the answer is cached
    by a hash of the text.
    """
    key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is None:
        try:
            hit = _Translator(text).run()
        except TypeSyntaxError as e:
            hit = e
        with _CACHE_LOCK:
            _CACHE[key] = hit
            if len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    if isinstance(hit, TypeSyntaxError):
        raise TypeSyntaxError(hit.line, hit.message, hit.typed)
    return hit


# -- the lexer ---------------------------------------------------------------------------------------

class _Tokens:
    """Parallel arrays: kind ("name", "number", "string", "<eof>", or the keyword or symbol itself), start, end."""

    __slots__ = ("kinds", "starts", "ends", "newlines")

    def __init__(self, text: str) -> None:
        self.kinds: list[str] = []
        self.starts: list[int] = []
        self.ends: list[int] = []
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        self._scan(text)

    def line(self, offset: int) -> int:
        return bisect.bisect_right(self.newlines, offset - 1) + 1

    def _add(self, kind: str, start: int, end: int) -> None:
        self.kinds.append(kind)
        self.starts.append(start)
        self.ends.append(end)

    def _scan(self, text: str) -> None:
        kinds, starts, ends = self.kinds, self.starts, self.ends
        for m in _SCAN.finditer(text):
            group = m.lastgroup
            if group == "skip" or group == "cl":
                continue
            if group == "bad":
                self._bad(text, m.start())
            start, end = m.span()
            if group == "name":
                word = m.group()
                kinds.append(word if word in KEYWORDS else "name")
            elif group == "sym":
                kinds.append(m.group())
            else:  # number, string (sl: a long one)
                kinds.append("string" if group == "sl" else str(group))
            starts.append(start)
            ends.append(end)
        n = len(text)
        self._add("<eof>", n, n)

    def _bad(self, text: str, i: int) -> None:
        c = text[i]
        if c in "\"'":
            end = text.find("\n", i)
            shown = text[i:end if end >= 0 else len(text)]
            raise TypeSyntaxError(self.line(i), f"unfinished string near '{shown}'", typed=False)
        if text.startswith("--[", i) or c == "[":
            raise TypeSyntaxError(self.line(len(text)), "unfinished long string or comment near <eof>", typed=False)
        raise TypeSyntaxError(self.line(i), f"unexpected symbol near '{c}'", typed=False)


def _lua_string_value(raw: str) -> str:
    """The value of a Lua string literal (quoted or long), for @pattern."""
    if raw.startswith("["):
        level = raw.index("[", 1) - 1
        body = raw[level + 2:len(raw) - level - 2]
        return body[1:] if body.startswith("\n") else body
    out, i, body = [], 0, raw[1:-1]
    while i < len(body):
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        e = body[i + 1]
        i += 2
        if e in _ESCAPES:
            out.append(_ESCAPES[e])
        elif e == "x":
            out.append(chr(int(body[i:i + 2], 16)))
            i += 2
        elif e == "z":
            while i < len(body) and body[i] in " \t\r\n\f\v":
                i += 1
        elif e == "u":
            j = body.index("}", i)
            out.append(chr(int(body[i + 1:j], 16)))
            i = j + 1
        elif e.isdigit():
            j = i - 1
            while j < len(body) and j < i + 2 and body[j].isdigit():
                j += 1
            out.append(chr(int(body[i - 1:j])))
            i = j
        else:
            out.append(e)
    # bytes as Lua sees them: code points above 255 come from \u{...}
    return "".join(out)


# -- type expressions --------------------------------------------------------------------------------
# A parsed type is a tuple: ("name", [parts], args | None), ("lit", lua_text), ("opt", t), ("union", [ts]),
# ("inter", [ts]), ("array", t), ("map", k, v), ("record", [(name, t, optional)]), ("func", [ts], [ts], vararg),
# ("tuple", [ts]), ("ann", t, [(name, [lua_args])]), ("typeof", start, end, name | None), ("keyof", t),
# ("index", t, k), ("cond", t, u, a, b), ("iface", [(name, t)], [base]), ("any",).
# Resolving (``_Translator.resolve``) turns names into ("builtin", n), ("user", lua_expr, shown, args),
# ("param", lua_name) or the constraint of a generic parameter.

def _has_validators(t: Any) -> bool:
    tag = t[0]
    if tag == "ann":
        return any(name in VALIDATORS for name, _ in t[2]) or _has_validators(t[1])
    if tag in ("opt", "array", "keyof"):
        return _has_validators(t[1])
    if tag in ("union", "inter", "tuple"):
        return any(_has_validators(x) for x in t[1])
    if tag == "map":
        return _has_validators(t[1]) or _has_validators(t[2])
    if tag == "record":
        return any(_has_validators(ft) for _, ft, _ in t[1])
    return False


def _names_in(t: Any, out: set[str]) -> None:
    """First parts of the user names a resolved type refers to (for forward references)."""
    if not isinstance(t, tuple):
        return
    if t[0] == "user":
        out.add(t[2].split(".")[0])
        for a in t[3] or ():
            _names_in(a, out)
        return
    for x in t[1:]:
        if isinstance(x, tuple):
            _names_in(x, out)
        elif isinstance(x, list):
            for y in x:
                _names_in(y, out)


def _q(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class _Scope:
    #: locals declared in this scope: name -> resolved annotation (None: not annotated)
    names: dict[str, Any] = field(default_factory=dict)
    #: generic parameters of the enclosing function: name -> resolved constraint (None: any)
    generics: dict[str, Any] = field(default_factory=dict)
    #: names declared by `type` statements here
    types: set[str] = field(default_factory=set)
    #: the type statements of this block, translated when the block ends
    statements: list[_TypeStmt] = field(default_factory=list)


@dataclass
class _TypeStmt:
    start: int
    end: int
    name: str
    params: list[str]
    constraints: list[Any]
    body: Any   # resolved
    refs: set[str]
    predeclared: bool = False
    hoist: list[str] = field(default_factory=list)


class _Translator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _Tokens(text)
        self.kinds, self.starts, self.ends = self.toks.kinds, self.toks.starts, self.toks.ends
        self.i = 0
        self.last_end = 0
        self.edits: list[tuple[int, int, str]] = []
        self.scopes: list[_Scope] = [_Scope()]
        self.sites = 0
        self.uses_runtime = False
        self.in_type = 0  # > 0 while parsing a type

    # -- tokens ----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.kinds[self.i]

    def peek(self, k: int = 1) -> str:
        j = min(self.i + k, len(self.kinds) - 1)
        return self.kinds[j]

    def word(self, k: int = 0) -> str:
        j = min(self.i + k, len(self.kinds) - 1)
        return self.text[self.starts[j]:self.ends[j]]

    def is_name(self, value: str, k: int = 0) -> bool:
        return self.peek(k) == "name" and self.word(k) == value

    def advance(self) -> None:
        self.last_end = self.ends[self.i]
        if self.i < len(self.kinds) - 1:
            self.i += 1

    def accept(self, kind: str) -> bool:
        if self.kind == kind:
            self.advance()
            return True
        return False

    def near(self) -> str:
        return "<eof>" if self.kind == "<eof>" else f"'{self.word()}'"

    def error(self, message: str) -> TypeSyntaxError:
        typed = self.in_type > 0 or bool(self.edits) or any(s.statements for s in self.scopes)
        return TypeSyntaxError(self.toks.line(self.starts[self.i]), f"{message} near {self.near()}", typed)

    def expect(self, kind: str, message: str | None = None) -> None:
        if not self.accept(kind):
            raise self.error(message or f"'{kind}' expected")

    def name(self, what: str = "<name>") -> str:
        if self.kind != "name":
            raise self.error(f"{what} expected")
        w = self.word()
        self.advance()
        return w

    def split_first(self) -> None:
        """The current token is '>>' or '>=' and a '>' closes a type list: keep the rest as a token."""
        j = self.i
        rest = self.kinds[j][1:]
        self.kinds[j] = rest
        self.starts[j] += 1
        self.last_end = self.starts[j]

    def close(self, kind: str, opener: str, line: int) -> None:
        """Expect the word closing a block, as Lua says it: "'end' expected (to close 'if' at line 3)"."""
        if self.kind == kind:
            self.advance()
            return
        here = self.toks.line(self.starts[self.i])
        raise self.error(f"'{kind}' expected" if here == line else
                         f"'{kind}' expected (to close '{opener}' at line {line})")

    def expect_gt(self, what: str) -> None:
        if self.kind == ">":
            self.advance()
        elif self.kind in (">>", ">="):
            self.split_first()
        else:
            raise self.error(f"'>' expected to close {what}")

    # -- edits -----------------------------------------------------------------------------
    def erase(self, start: int, end: int) -> None:
        if end > start:
            self.edits.append((start, end, _NOT_NEWLINE.sub(" ", self.text[start:end])))

    def replace(self, start: int, end: int, code: str) -> None:
        pad = self.text.count("\n", start, end) - code.count("\n")
        self.edits.append((start, end, code + "\n" * max(pad, 0)))

    def insert(self, at: int, code: str) -> None:
        self.edits.append((at, at, code))

    def render(self, start: int, end: int) -> str:
        inner = [e for e in self.edits if e[0] >= start and e[1] <= end]
        return _apply(self.text, inner, start, end)

    def site(self, t: Any) -> str:
        self.sites += 1
        self.uses_runtime = True
        return f"({_SITES}[{self.sites}] or {_T}.put({_SITES}, {self.sites}, {self.code(t)}))"

    # -- the whole source --------------------------------------------------------------------
    def run(self) -> str:
        if not self.maybe_typed():
            return self.text
        self.block()
        if self.kind != "<eof>":
            raise self.error("'<eof>' expected")
        self.close_scope()
        if not self.edits:
            return self.text
        if self.uses_runtime:
            self.insert(0, _PROLOGUE)
        return _apply(self.text, self.edits, 0, len(self.text))

    def maybe_typed(self) -> bool:
        """Whether a token could be typed syntax: plain Lua, most sources, needs no parse."""
        kinds, starts, ends, text = self.kinds, self.starts, self.ends, self.text
        last = len(kinds) - 1
        for j, k in enumerate(kinds):
            if k in ("?", "!", "@", "->"):
                return True
            if k == ":":  # a method call, or an annotation
                if not (kinds[min(j + 1, last)] == "name" and kinds[min(j + 2, last)] in ("(", "string", "{")):
                    return True
                if text[starts[j + 1]:ends[j + 1]] in ("fun", "readonly", "interface"):  # fun(...): R, readonly {T}
                    return True
            elif k == "::":  # a label, or a cast
                if not (kinds[min(j + 1, last)] == "name" and kinds[min(j + 2, last)] == "::"):
                    return True
            elif k == "name" and ends[j] - starts[j] in (2, 4, 9):
                w = text[starts[j]:ends[j]]
                if w == "as" or (w in ("type", "interface") and kinds[min(j + 1, last)] == "name"):
                    return True
            elif k == "<":  # generic parameters: function f<T>(
                b = j - 1
                while b > 0 and kinds[b] in ("name", ".", ":"):
                    b -= 1
                if kinds[b] == "function":
                    return True
        return False

    # -- scopes ----------------------------------------------------------------------------
    def open_scope(self, names: dict[str, Any] | None = None, generics: dict[str, Any] | None = None) -> None:
        self.scopes.append(_Scope(names=dict(names or {}), generics=dict(generics or {})))

    def close_scope(self) -> None:
        scope = self.scopes.pop() if len(self.scopes) > 1 else self.scopes[0]
        self.emit_type_statements(scope.statements)

    def declare(self, name: str, annotation: Any = None) -> None:
        self.scopes[-1].names[name] = annotation
        self.scopes[-1].types.discard(name)

    def lookup(self, name: str) -> tuple[str, Any]:
        """What a name means here: ("type", None), ("local", annotation), ("generic", constraint) or ("global", None)."""
        for scope in reversed(self.scopes):
            if name in scope.types:
                return "type", None
            if name in scope.names:
                return "local", scope.names[name]
            if name in scope.generics:
                return "generic", scope.generics[name]
        return "global", None

    # -- statements ----------------------------------------------------------------------------
    def block(self) -> None:
        while self.kind not in _BLOCK_END:
            self.statement()
        if self.kind == "return":
            self.advance()
            if self.kind not in _BLOCK_END and self.kind != ";":
                self.exprlist()
            self.accept(";")

    def scoped_block(self, names: dict[str, Any] | None = None) -> None:
        self.open_scope(names)
        self.block()
        self.close_scope()

    def statement(self) -> None:
        k = self.kind
        line = self.toks.line(self.starts[self.i])
        if k == ";":
            self.advance()
        elif k == "if":
            self.advance()
            self.expr()
            self.expect("then")
            self.scoped_block()
            while self.kind == "elseif":
                self.advance()
                self.expr()
                self.expect("then")
                self.scoped_block()
            if self.accept("else"):
                self.scoped_block()
            self.close("end", "if", line)
        elif k == "while":
            self.advance()
            self.expr()
            self.expect("do")
            self.scoped_block()
            self.close("end", "while", line)
        elif k == "do":
            self.advance()
            self.scoped_block()
            self.close("end", "do", line)
        elif k == "for":
            self.advance()
            names = [self.name()]
            if self.accept("="):
                self.expr()
                self.expect(",")
                self.expr()
                if self.accept(","):
                    self.expr()
            else:
                while self.accept(","):
                    names.append(self.name())
                self.expect("in")
                self.exprlist()
            self.expect("do")
            self.scoped_block(dict.fromkeys(names))
            self.close("end", "for", line)
        elif k == "repeat":
            self.advance()
            self.open_scope()
            self.block()
            self.close("until", "repeat", line)
            self.expr()  # sees the block's locals
            self.close_scope()
        elif k == "function":
            self.advance()
            self.name()
            method = False
            while self.kind in (".", ":"):
                method = self.kind == ":"
                self.advance()
                self.name()
                if method:
                    break
            self.funcbody(method)
        elif k == "local":
            self.advance()
            if self.accept("function"):
                self.declare(self.name())
                self.funcbody(False)
            else:
                self.local()
        elif k == "::":
            self.advance()
            self.name()
            self.expect("::")
        elif k == "break":
            self.advance()
        elif k == "goto":
            self.advance()
            self.name()
        elif k == "name" and self.word() == "type" and self.peek(1) == "name" and self.peek(2) in ("=", "<"):
            self.type_statement()
        elif k == "name" and self.word() == "interface" and self.peek(1) == "name":
            self.interface_statement()
        else:
            self.exprstat()

    def exprstat(self) -> None:
        self.suffixedexp()
        if self.kind in ("=", ","):
            while self.accept(","):
                self.suffixedexp()
            self.expect("=")
            self.exprlist()

    def local(self) -> None:
        declared: list[tuple[str, Any]] = []
        while True:
            name = self.name()
            annotation = None
            if self.kind == ":":
                start = self.starts[self.i]
                self.advance()
                annotation = self.resolve(self.type_expr())
                self.erase(start, self.last_end)
            if self.kind == "<" and self.peek(1) == "name" and self.peek(2) in (">", ">="):
                self.advance()
                self.name()
                self.expect_gt("an attribute")
            declared.append((name, annotation))
            if not self.accept(","):
                break
        assigned = self.accept("=")
        if assigned:
            self.exprlist()
        checks = [f"; {_T}.check({self.site(a)}, {n}, {_q(n)})" for n, a in declared
                  if assigned and a is not None and _has_validators(a)]
        if checks:
            self.insert(self.last_end, "".join(checks))
        for n, a in declared:
            self.declare(n, a)

    def funcbody(self, method: bool) -> None:
        line = self.toks.line(self.last_end)
        generics: dict[str, Any] = {}
        if self.kind == "<":
            start = self.starts[self.i]
            generics = self.type_params()
            self.erase(start, self.last_end)
        self.open_scope(generics=generics)  # constraints and annotations may name the parameters
        self.expect("(")
        params: dict[str, Any] = {"self": None} if method else {}
        vararg = None
        if self.kind != ")":
            while True:
                if self.accept("..."):
                    vararg = self.param_annotation()
                    params["..."] = vararg
                    break
                name = self.name()
                params[name] = self.param_annotation()
                if not self.accept(","):
                    break
        self.expect(")")
        if self.kind == ":":
            start = self.starts[self.i]
            self.advance()
            self.return_types()
            self.erase(start, self.last_end)
        checks = []
        for name, a in params.items():
            if a is not None and _has_validators(a):
                if name == "...":
                    checks.append(f"{_T}.check_each({self.site(a)}, \"...\", ...); ")
                else:
                    checks.append(f"{_T}.check({self.site(a)}, {name}, {_q(name)}); ")
        if checks:
            self.insert(self.last_end, " " + "".join(checks))
        params.pop("...", None)
        self.scopes[-1].names.update(params)
        self.block()
        self.close("end", "function", line)
        self.close_scope()

    def param_annotation(self) -> Any:
        if self.kind != ":":
            return None
        start = self.starts[self.i]
        self.advance()
        t = self.resolve(self.type_expr())
        self.erase(start, self.last_end)
        return t

    def return_types(self) -> None:
        self.type_expr()
        while self.accept(","):
            self.type_expr()

    def type_params(self) -> dict[str, Any]:
        """`<T, U: C>` (the current token is '<'): names and resolved constraints."""
        self.advance()
        out: dict[str, Any] = {}
        while True:
            name = self.name("type parameter name")
            constraint = None
            if self.accept(":"):
                constraint = self.type_expr()
            out[name] = constraint
            if not self.accept(","):
                break
        self.expect_gt("the type parameters")
        return {n: self.resolve(c) if c is not None else None for n, c in out.items()}

    def type_statement(self) -> None:
        self.in_type += 1  # an error from here on is about typed syntax
        start = self.starts[self.i]
        self.advance()  # type
        name = self.name()
        params: dict[str, Any] = {}
        if self.kind == "<":
            self.advance()
            raw: dict[str, Any] = {}
            while True:
                p = self.name("type parameter name")
                raw[p] = self.type_expr() if self.accept(":") else None
                if not self.accept(","):
                    break
            self.expect_gt("the type parameters")
            params = raw
        self.expect("=", "'=' expected after the type name")
        body = self.type_expr()
        self.in_type -= 1
        self.finish_type_statement(start, name, params, body)

    def interface_statement(self) -> None:
        self.in_type += 1
        start = self.starts[self.i]
        self.advance()  # interface
        name = self.name()
        bases = []
        if self.accept(":"):
            bases.append(("name", [self.name("interface name")], None))
            while self.accept(","):
                bases.append(("name", [self.name("interface name")], None))
        methods = []
        while self.kind == "function":
            self.advance()
            method = self.name("method name")
            self.expect("(")
            params = []
            if self.kind != ")":
                while True:
                    if self.accept("..."):
                        params.append(self.type_expr() if self.accept(":") else ("any",))
                        break
                    self.name()
                    params.append(self.type_expr() if self.accept(":") else ("any",))
                    if not self.accept(","):
                        break
            self.expect(")")
            rets = []
            if self.accept(":"):
                rets.append(self.type_expr())
                while self.accept(","):
                    rets.append(self.type_expr())
            methods.append((method, ("func", params, rets, None)))
        self.expect("end", "'end' expected to close the interface")
        self.in_type -= 1
        self.finish_type_statement(start, name, {}, ("iface", methods, bases))

    def finish_type_statement(self, start: int, name: str, params: dict[str, Any], body: Any) -> None:
        scope = self.scopes[-1]
        resolved = self.resolve(body, alias_params=set(params))
        constraints = [self.resolve(c) if c is not None else None for c in params.values()]
        refs: set[str] = set()
        _names_in(resolved, refs)
        for c in constraints:
            _names_in(c, refs)
        scope.statements.append(_TypeStmt(start, self.last_end, name, list(params), constraints, resolved, refs))
        scope.names.pop(name, None)
        scope.types.add(name)

    def emit_type_statements(self, stmts: list[_TypeStmt]) -> None:
        where = {s.name: k for k, s in enumerate(stmts)}
        for k, s in enumerate(stmts):
            for ref in sorted(s.refs):
                j = where.get(ref)
                if j is not None and j > k and not stmts[j].predeclared:
                    stmts[j].predeclared = True
                    s.hoist.append(ref)
        for s in stmts:
            self.uses_runtime = True
            code = self.code(s.body)
            declare = "".join(f"local {n}; " for n in s.hoist) + ("" if s.predeclared else f"local {s.name}; ")
            if s.params:
                cons = ", ".join(self.code(c) if c is not None else "nil" for c in s.constraints)
                value = (f"{_T}.generic({_q(s.name)}, {{{', '.join(map(_q, s.params))}}}, "
                         f"function({', '.join(s.params)}) return {code} end, {{{cons}}})")
            else:
                value = f"{_T}.def({_q(s.name)}, function() return {code} end)"
            self.replace(s.start, s.end, f"{declare}{s.name} = {value}")

    # -- expressions ----------------------------------------------------------------------------
    def exprlist(self) -> None:
        self.expr()
        while self.accept(","):
            self.expr()

    def expr(self) -> None:
        while True:
            while self.kind in _UNARY:
                self.advance()
            self.simpleexp()
            self.postfix()
            if self.kind in _BINARY:
                self.advance()
                continue
            return

    def postfix(self) -> None:
        """Erase `!`, `:: T` and `as T` after an operand."""
        while True:
            k = self.kind
            if k == "!":
                self.erase(self.starts[self.i], self.ends[self.i])
                self.advance()
            elif k == "::" and not (self.peek(1) == "name" and self.peek(2) == "::"):
                start = self.starts[self.i]
                self.advance()
                self.type_expr()
                self.erase(start, self.last_end)
            elif (k == "name" and self.word() == "as" and self.starts_type(1)
                  and self.toks.line(self.starts[self.i]) == self.toks.line(self.last_end)):
                start = self.starts[self.i]
                self.advance()
                self.type_expr()
                self.erase(start, self.last_end)
            else:
                return

    def starts_type(self, k: int) -> bool:
        return self.peek(k) in ("name", "nil", "true", "false", "string", "number", "{", "(", "-")

    def simpleexp(self) -> None:
        k = self.kind
        if k in ("number", "string", "nil", "true", "false", "..."):
            self.advance()
        elif k == "{":
            self.table()
        elif k == "function":
            self.advance()
            self.funcbody(False)
        else:
            self.suffixedexp()

    def suffixedexp(self) -> None:
        k = self.kind
        if k == "name":
            if self.word() == "typeof" and self.peek(1) == "(" and self.static_typeof():
                pass
            else:
                self.advance()
        elif k == "(":
            self.advance()
            self.expr()
            self.expect(")")
        else:
            raise self.error("unexpected symbol")
        while True:
            k = self.kind
            if k == ".":
                self.advance()
                self.any_name()
            elif k == "[":
                self.advance()
                self.expr()
                self.expect("]")
            elif k == ":" and self.peek(1) == "name":
                self.advance()
                self.any_name()
                self.args()
            elif k in ("(", "string", "{"):
                self.args()
            elif k == "!":
                self.erase(self.starts[self.i], self.ends[self.i])
                self.advance()
            else:
                return

    def any_name(self) -> None:
        if self.kind != "name":
            raise self.error("<name> expected")
        self.advance()

    def static_typeof(self) -> bool:
        """`typeof(x)` of an annotated local: the annotation's type (the current token is typeof)."""
        if not (self.peek(2) == "name" and self.peek(3) == ")"):
            return False
        meaning, annotation = self.lookup(self.word(2))
        if meaning != "local" or annotation is None or self.lookup("typeof")[0] != "global":
            return False
        start = self.starts[self.i]
        for _ in range(4):
            self.advance()
        self.replace(start, self.last_end, self.site(annotation))
        return True

    def args(self) -> None:
        k = self.kind
        if k == "string":
            self.advance()
        elif k == "{":
            self.table()
        else:
            self.expect("(")
            if self.kind != ")":
                self.exprlist()
            self.expect(")")

    def table(self) -> None:
        self.expect("{")
        while self.kind != "}":
            if self.kind == "[":
                self.advance()
                self.expr()
                self.expect("]")
                self.expect("=")
                self.expr()
            elif self.kind == "name" and self.peek(1) == "=":
                self.advance()
                self.advance()
                self.expr()
            else:
                self.expr()
            if not (self.accept(",") or self.accept(";")):
                break
        self.expect("}", "'}' expected")

    # -- type expressions ----------------------------------------------------------------------------
    def type_expr(self) -> Any:
        self.in_type += 1
        try:
            return self._type_expr()
        finally:
            self.in_type -= 1

    def _type_expr(self) -> Any:
        t = self.simple_type()
        if self.is_name("extends"):
            self.advance()
            u = self.simple_type()
            if u[0] == "opt" and self.kind != "?":
                u = u[1]  # `T extends U ? A : B`: that '?' was the conditional's
            else:
                self.expect("?", "'?' expected in the conditional type")
            a = self.type_expr()
            self.expect(":", "':' expected in the conditional type")
            b = self.type_expr()
            return ("cond", t, u, a, b)
        while self.kind in ("|", "&"):
            tag = "union" if self.kind == "|" else "inter"
            self.advance()
            u = self.simple_type()
            t = (tag, t[1] + [u]) if t[0] == tag else (tag, [t, u])
        return t

    def simple_type(self) -> Any:
        t = self.annotations(self.primary_type())
        while self.kind == "?":
            self.advance()
            t = self.annotations(("opt", t))
        return t

    def annotations(self, t: Any) -> Any:
        found = []
        while self.kind == "@":
            self.advance()
            line = self.toks.line(self.starts[self.i])
            name = self.name("validator name")
            args: list[tuple[str, Any]] = []
            if self.accept("("):
                if self.kind != ")":
                    args.append(self.literal())
                    while self.accept(","):
                        args.append(self.literal())
                self.expect(")")
            found.append((name, self.validator_args(name, args, line)))
        return ("ann", t, found) if found else t

    def literal(self) -> tuple[str, Any]:
        """A literal validator argument: (Lua text, Python value)."""
        neg = self.accept("-")
        k = self.kind
        text = self.word()
        if k == "number":
            self.advance()
            try:
                value: Any = float(int(text, 0)) if text.lower().startswith("0x") else float(text)
            except ValueError:
                value = None
            return ("-" if neg else "") + text, (-value if neg and value is not None else value)
        if neg:
            raise self.error("number expected")
        if k == "string":
            self.advance()
            return text, _lua_string_value(text)
        if k in ("true", "false", "nil"):
            self.advance()
            return text, {"true": True, "false": False, "nil": None}[k]
        raise self.error("literal expected (validator arguments are numbers or strings)")

    def validator_args(self, name: str, args: list[tuple[str, Any]], line: int) -> list[str]:
        want = VALIDATORS.get(name)
        if want is None:
            return [text for text, _ in args]  # another tool's annotation: kept, not checked
        value = args[0][1] if len(args) == 1 else None
        if want == "string":
            if len(args) != 1 or not isinstance(value, str):
                raise TypeSyntaxError(line, f"@{name} takes one string argument")
            try:
                return [args[0][0], _regex.compile_lua(value)]
            except _regex.RegexError as e:
                raise TypeSyntaxError(line, str(e)) from None
        if len(args) != 1 or not isinstance(value, float) or (want == "count" and (value < 0 or value != int(value))):
            kind = "a count (an integer >= 0)" if want == "count" else "a number"
            raise TypeSyntaxError(line, f"@{name} takes one argument, {kind}")
        return [args[0][0]]

    def primary_type(self) -> Any:
        k = self.kind
        if k == "nil":
            self.advance()
            t: Any = ("name", ["nil"], None)
        elif k in ("true", "false", "string", "number"):
            t = ("lit", self.word())
            self.advance()
        elif k == "-" and self.peek(1) == "number":
            self.advance()
            t = ("lit", "-" + self.word())
            self.advance()
        elif k == "{":
            t = self.brace_type()
        elif k == "(":
            t = self.paren_type()
        elif k == "name":
            t = self.named_type()
        else:
            raise self.error("type expected")
        while self.kind == "[":
            self.advance()
            if self.accept("]"):
                t = ("array", t)
            else:
                t = ("index", t, self.type_expr())
                self.expect("]")
        return t

    def named_type(self) -> Any:
        w = self.word()
        nxt = self.peek(1)
        if w == "typeof" and nxt == "(":
            self.advance()
            self.advance()
            start = self.starts[self.i]
            single = self.word() if self.kind == "name" and self.peek(1) == ")" else None
            self.expr()
            end = self.last_end
            self.expect(")")
            return ("typeof", start, end, single)
        if w == "keyof" and nxt == "(":
            self.advance()
            self.advance()
            t = self.type_expr()
            self.expect(")")
            return ("keyof", t)
        if w == "fun" and nxt == "(":
            self.advance()
            params, vararg = self.func_params()
            rets: list[Any] = []
            if self.accept(":"):
                if self.kind == "(":
                    r = self.paren_type()
                    rets = r[1] if r[0] == "tuple" else [r]
                else:
                    rets = [self.type_expr()]
            return ("func", params, rets, vararg)
        if w in ("interface", "readonly") and nxt == "{":
            self.advance()
            return self.brace_type()
        if w == "asserts" and nxt == "name":
            self.advance()
            self.advance()
            if self.is_name("is"):
                self.advance()
                self.type_expr()
            return ("name", ["boolean"], None)
        parts = [w]
        self.advance()
        while self.kind == "." and self.peek(1) == "name":
            self.advance()
            parts.append(self.word())
            self.advance()
        args = None
        if self.kind == "<" and not (self.peek(1) == "name" and self.word(1) in ("const", "close")
                                     and self.peek(2) in (">", ">=")):
            self.advance()
            args = [self.type_expr()]
            while self.accept(","):
                args.append(self.type_expr())
            self.expect_gt("the type arguments")
        return ("name", parts, args)

    def func_params(self) -> tuple[list[Any], Any]:
        """`(a: T, U, ...V)` (the current token is '('): parameter types and the variadic one."""
        self.expect("(")
        params: list[Any] = []
        vararg = None
        if self.kind != ")":
            while True:
                if self.accept("..."):
                    self.accept(":")
                    vararg = self.type_expr()
                    break
                if self.kind == "name" and self.peek(1) == ":":
                    self.advance()
                    self.advance()
                params.append(self.type_expr())
                if not self.accept(","):
                    break
        self.expect(")")
        return params, vararg

    def paren_type(self) -> Any:
        """A function type `(A, B) -> R`, a grouping `(T)` or a tuple `(A, B)` of returns."""
        params, vararg = self.func_params()
        if self.accept("->"):
            if self.kind == "(":
                r = self.paren_type()
                rets = r[1] if r[0] == "tuple" else [r]
            else:
                rets = [self.type_expr()]
            return ("func", params, rets, vararg)
        if len(params) == 1 and vararg is None:
            return params[0]
        return ("tuple", params)

    def brace_type(self) -> Any:
        self.expect("{")
        if self.accept("}"):
            return ("record", [])
        if self.kind == "[":
            self.advance()
            key = self.type_expr()
            self.expect("]")
            self.expect(":", "':' expected after the key type")
            value = self.type_expr()
            self.expect("}", "'}' expected to close the map type")
            return ("map", key, value)
        if self.kind in ("name", "string") and (self.peek(1) == ":" or (self.peek(1) == "?" and self.peek(2) == ":")):
            fields = []
            seen: set[str] = set()
            while self.kind != "}":
                line = self.toks.line(self.starts[self.i])
                if self.kind == "string":
                    fname = _lua_string_value(self.word())
                    self.advance()
                else:
                    fname = self.name("field name")
                optional = self.accept("?")
                self.expect(":", "':' expected after the field name")
                ft = self.type_expr()
                if fname in seen:
                    raise TypeSyntaxError(line, f"field '{fname}' appears twice in the record type")
                seen.add(fname)
                fields.append((fname, ("opt", ft) if optional else ft, optional))
                if not (self.accept(",") or self.accept(";")):
                    break
            self.expect("}", "'}' expected to close the record type")
            return ("record", fields)
        elem = self.type_expr()
        self.expect("}", "'}' expected to close the array type")
        return ("array", elem)

    # -- resolving names -----------------------------------------------------------------------------
    def resolve(self, t: Any, alias_params: set[str] | frozenset[str] = frozenset()) -> Any:
        tag = t[0]
        if tag == "name":
            parts, args = t[1], t[2]
            rargs = [self.resolve(a, alias_params) for a in args] if args else None
            first = parts[0]
            if len(parts) == 1 and first in alias_params:
                return ("param", first)
            if len(parts) == 1:
                meaning, value = self.lookup(first)
                if meaning == "generic":
                    return value if value is not None else ("builtin", "any")
                # a primitive's name means the primitive unless a `type` statement took it
                if meaning != "type" and first in BUILTIN_TYPES:
                    return ("builtin", first)
            shown = ".".join(parts)
            return ("user", shown, shown, rargs)
        if tag == "typeof":
            _, start, end, single = t
            if single is not None:
                meaning, annotation = self.lookup(single)
                if meaning == "local" and annotation is not None:
                    return annotation
            return ("typeof_value", start, end)
        if tag == "iface":
            return ("iface", [(n, self.resolve(m, alias_params)) for n, m in t[1]],
                    [self.resolve(b, alias_params) for b in t[2]])
        if tag == "record":
            return ("record", [(n, self.resolve(ft, alias_params), o) for n, ft, o in t[1]])
        if tag == "ann":
            return ("ann", self.resolve(t[1], alias_params), t[2])
        if tag in ("lit", "any"):
            return t
        out: list[Any] = [tag]
        for x in t[1:]:
            if isinstance(x, tuple):
                out.append(self.resolve(x, alias_params))
            elif isinstance(x, list):
                out.append([self.resolve(y, alias_params) for y in x])
            else:
                out.append(x)
        return tuple(out)

    # -- code for a resolved type --------------------------------------------------------------------
    def code(self, t: Any) -> str:
        tag = t[0]
        c = self.code
        if tag == "builtin":
            name = t[1]
            return f"{_T}." + {"nil": "nil_", "function": "fn", "self": "any", "userdata": "any"}.get(name, name)
        if tag == "any":
            return f"{_T}.any"
        if tag == "user":
            ref = f"{_T}.ref({t[1]}, {_q(t[2])})"
            return f"{_T}.apply({ref}, {{{', '.join(c(a) for a in t[3])}}})" if t[3] else ref
        if tag == "param":
            return t[1]
        if tag == "lit":
            return f"{_T}.lit({t[1]})"
        if tag in ("opt", "array", "keyof"):
            return f"{_T}.{tag}({c(t[1])})"
        if tag in ("union", "inter", "tuple"):
            return f"{_T}.{tag}({{{', '.join(c(x) for x in t[1])}}})"
        if tag in ("map", "index"):
            return f"{_T}.{tag}({c(t[1])}, {c(t[2])})"
        if tag == "cond":
            return f"{_T}.cond({c(t[1])}, {c(t[2])}, {c(t[3])}, {c(t[4])})"
        if tag == "record":
            fields = ", ".join(f"{{{_q(n)}, {c(ft)}{', true' if o else ''}}}" for n, ft, o in t[1])
            return f"{_T}.record({{{fields}}})"
        if tag == "func":
            params = ", ".join(c(p) for p in t[1])
            rets = ", ".join(c(r) for r in t[2])
            vararg = f", {c(t[3])}" if t[3] is not None else ""
            return f"{_T}.func({{{params}}}, {{{rets}}}{vararg})"
        if tag == "ann":
            vals = ", ".join("{" + ", ".join([_q(name), *args]) + "}" for name, args in t[2] if name in VALIDATORS)
            return f"{_T}.ann({c(t[1])}, {{{vals}}})" if vals else c(t[1])
        if tag == "typeof_value":
            return f"{_T}.typeof({self.render(t[1], t[2])})"
        if tag == "iface":
            methods = ", ".join(f"{{{_q(n)}, {c(m)}}}" for n, m in t[1])
            return f"{_T}.iface({{{methods}}}, {{{', '.join(c(b) for b in t[2])}}})"
        raise AssertionError(f"unknown type node {tag}")


def _apply(text: str, edits: list[tuple[int, int, str]], start: int, end: int) -> str:
    """text[start:end] with the edits made; an edit inside an earlier one is part of it, and left out."""
    out, pos, covered = [], start, -1
    # insertions before what starts where they are; an outer edit before the ones inside it
    for s, e, code in sorted(edits, key=lambda x: (x[0], x[1] != x[0], -x[1])):
        if s < covered:
            continue
        out.append(text[pos:s])
        out.append(code)
        pos = max(pos, e)
        covered = max(covered, e)
    out.append(text[pos:end])
    return "".join(out)
