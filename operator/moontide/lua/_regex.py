"""``@pattern`` validators: a regular expression (Go's RE2 syntax, as Wippy uses) as a Lua table.

The typed-Lua front end (``typed.py``) compiles each ``@pattern("...")`` once,
at translation time, into a Lua table constructor that the type runtime
(``modules/_types.lua``) matches with a small backtracking matcher: so a bad
pattern is reported by ``moontide check`` with its line, and matching runs in
Lua, under the instruction budget.

Supported: literals and escapes (``\\n \\t \\x41 \\x{263a}``, escaped
punctuation), ``.``, classes ``[a-z] [^...]`` with ``[:alpha:]`` names,
``\\d \\w \\s`` and their negations, anchors ``^ $ \\A \\z \\b \\B``, groups
``(...) (?:...) (?P<n>...) (?<n>...)``, alternation ``|``, repetition
``* + ? {n} {n,} {n,m}`` (``?`` after one: lazy), flags ``(?i) (?s) (?m)``.
Not supported (reported as errors): Unicode classes ``\\p``, ``\\Q...\\E``,
``(?U)``. Matching is on code points (the subject is read as UTF-8).
"""

from __future__ import annotations

__all__ = ["RegexError", "compile_lua"]

_POSIX = {
    "alpha": [(65, 90), (97, 122)], "digit": [(48, 57)], "alnum": [(48, 57), (65, 90), (97, 122)],
    "upper": [(65, 90)], "lower": [(97, 122)], "space": [(9, 13), (32, 32)], "xdigit": [(48, 57), (65, 70), (97, 102)],
    "word": [(48, 57), (65, 90), (95, 95), (97, 122)], "punct": [(33, 47), (58, 64), (91, 96), (123, 126)],
    "blank": [(9, 9), (32, 32)], "cntrl": [(0, 31), (127, 127)], "print": [(32, 126)], "graph": [(33, 126)],
    "ascii": [(0, 127)],
}
_PERL = {"d": [(48, 57)], "w": _POSIX["word"], "s": [(9, 10), (12, 13), (32, 32)]}
_SIMPLE_ESCAPES = {"n": 10, "t": 9, "r": 13, "f": 12, "v": 11, "a": 7}
_MAX_REPEAT = 1000


class RegexError(ValueError):
    pass


def compile_lua(pattern: str) -> str:
    """The pattern as a Lua table constructor; raises RegexError for what is malformed or unsupported."""
    return _lua(_Parser(pattern).parse())


def _lua(node: tuple) -> str:
    parts = []
    for x in node:
        if isinstance(x, tuple):
            parts.append(_lua(x))
        elif isinstance(x, bool):
            parts.append("true" if x else "false")
        elif isinstance(x, str):
            parts.append('"' + x + '"')
        else:
            parts.append(str(x))
    return "{" + ",".join(parts) + "}"


def _negate(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out, lo = [], 0
    for a, b in sorted(ranges):
        if a > lo:
            out.append((lo, a - 1))
        lo = max(lo, b + 1)
    if lo <= 0x10FFFF:
        out.append((lo, 0x10FFFF))
    return out


def _fold(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Add the other ASCII case of every letter in the ranges (flag i)."""
    extra = []
    for a, b in ranges:
        for lo, hi, delta in ((65, 90, 32), (97, 122, -32)):
            x, y = max(a, lo), min(b, hi)
            if x <= y:
                extra.append((x + delta, y + delta))
    return ranges + extra


def _set(ranges: list[tuple[int, int]], negated: bool = False) -> tuple:
    flat: list[int] = []
    for a, b in sorted(ranges):
        flat += [a, b]
    return ("set", negated, tuple(flat))


class _Parser:
    def __init__(self, pattern: str) -> None:
        self.p = pattern
        self.i = 0
        self.icase = self.dotnl = self.multiline = False

    def fail(self, message: str) -> RegexError:
        return RegexError(f"bad @pattern {self.p!r}: {message} at offset {self.i}")

    def peek(self) -> str:
        return self.p[self.i] if self.i < len(self.p) else ""

    def parse(self) -> tuple:
        node = self.alternation()
        if self.i < len(self.p):
            raise self.fail("unmatched ')'")
        return node

    def alternation(self) -> tuple:
        branches = [self.sequence()]
        while self.peek() == "|":
            self.i += 1
            branches.append(self.sequence())
        return branches[0] if len(branches) == 1 else ("alt", *branches)

    def sequence(self) -> tuple:
        items = []
        while self.peek() not in ("", "|", ")"):
            atom = self.atom()
            if atom is None:
                continue
            items.append(self.repetition(atom))
        return items[0] if len(items) == 1 else ("seq", *items)

    def repetition(self, atom: tuple) -> tuple:
        while True:
            c = self.peek()
            if c in ("*", "+", "?"):
                self.i += 1
                lo, hi = {"*": (0, -1), "+": (1, -1), "?": (0, 1)}[c]
            elif c == "{" and self._counted():
                lo, hi = self._counted_range()
            else:
                return atom
            if atom[0] in ("bol", "eol", "wb", "nwb"):
                raise self.fail("repetition of an anchor")
            greedy = True
            if self.peek() == "?":
                self.i += 1
                greedy = False
            if self.peek() in ("*", "+", "?") or (self.peek() == "{" and self._counted()):
                raise self.fail("repeated repetition")
            atom = ("rep", atom, lo, hi, greedy)

    def _counted(self) -> bool:
        j = self.p.find("}", self.i)
        body = self.p[self.i + 1:j] if j > 0 else ""
        lo, _, hi = body.partition(",")
        return bool(lo.isdigit() and (hi == "" or hi.isdigit()))

    def _counted_range(self) -> tuple[int, int]:
        j = self.p.find("}", self.i)
        body = self.p[self.i + 1:j]
        self.i = j + 1
        lo_s, comma, hi_s = body.partition(",")
        lo = int(lo_s)
        hi = lo if not comma else (-1 if hi_s == "" else int(hi_s))
        if lo > _MAX_REPEAT or hi > _MAX_REPEAT or (hi >= 0 and hi < lo):
            raise self.fail(f"bad repetition {{{body}}}")
        return lo, hi

    def atom(self) -> tuple | None:
        c = self.p[self.i]
        self.i += 1
        if c == "(":
            return self.group()
        if c == "[":
            return self.char_class()
        if c == ".":
            return ("any", self.dotnl)
        if c == "^":
            return ("bol", self.multiline)
        if c == "$":
            return ("eol", self.multiline)
        if c == "\\":
            return self.escape(in_class=False)
        if c in ("*", "+", "?", "{") and not (c == "{" and not self._counted_at(self.i - 1)):
            raise self.fail(f"missing argument to repetition operator {c!r}")
        return self.char(ord(c))

    def _counted_at(self, i: int) -> bool:
        saved, self.i = self.i, i
        try:
            return self._counted()
        finally:
            self.i = saved

    def char(self, cp: int) -> tuple:
        if self.icase and (65 <= cp <= 90 or 97 <= cp <= 122):
            return _set(_fold([(cp, cp)]))
        return ("c", cp)

    def group(self) -> tuple | None:
        if self.p.startswith("?", self.i):
            self.i += 1
            if self.p.startswith("P<", self.i) or self.p.startswith("<", self.i):
                j = self.p.find(">", self.i)
                if j < 0:
                    raise self.fail("unterminated group name")
                self.i = j + 1
            else:
                flags = ""
                while self.peek() not in (":", ")", ""):
                    flags += self.p[self.i]
                    self.i += 1
                on, _, off = flags.partition("-")
                for f in on + off:
                    if f not in "ism":
                        raise self.fail(f"unsupported flag {f!r}")
                saved = (self.icase, self.dotnl, self.multiline)
                for f, value in [(f, True) for f in on] + [(f, False) for f in off]:
                    if f == "i":
                        self.icase = value
                    elif f == "s":
                        self.dotnl = value
                    else:
                        self.multiline = value
                if self.peek() == ")":  # (?i): to the end of the enclosing group
                    self.i += 1
                    return None
                if self.peek() != ":":
                    raise self.fail("missing ')'")
                self.i += 1
                node = self.alternation()
                if self.peek() != ")":
                    raise self.fail("missing ')'")
                self.i += 1
                self.icase, self.dotnl, self.multiline = saved
                return node
        saved = (self.icase, self.dotnl, self.multiline)
        node = self.alternation()
        if self.peek() != ")":
            raise self.fail("missing ')'")
        self.i += 1
        self.icase, self.dotnl, self.multiline = saved
        return node

    def escape(self, in_class: bool) -> tuple:
        if self.i >= len(self.p):
            raise self.fail("trailing backslash")
        c = self.p[self.i]
        self.i += 1
        if c.lower() in _PERL:
            ranges = _PERL[c.lower()]
            return _set(ranges, negated=c.isupper())
        if not in_class:
            if c == "A":
                return ("bol", False)
            if c == "z":
                return ("eol", False)
            if c == "b":
                return ("wb",)
            if c == "B":
                return ("nwb",)
        if c in _SIMPLE_ESCAPES:
            return self.char(_SIMPLE_ESCAPES[c])
        if c == "x":
            if self.peek() == "{":
                j = self.p.find("}", self.i)
                digits = self.p[self.i + 1:j] if j > 0 else ""
                self.i = j + 1
            else:
                digits = self.p[self.i:self.i + 2]
                self.i += 2
            try:
                cp = int(digits, 16)
            except ValueError:
                raise self.fail(f"bad escape \\x{digits}") from None
            if cp > 0x10FFFF:
                raise self.fail(f"bad escape \\x{digits}")
            return self.char(cp)
        if c in "pPQEC" or c.isalnum():
            raise self.fail(f"unsupported escape \\{c}")
        return self.char(ord(c))

    def char_class(self) -> tuple:
        negated = self.peek() == "^"
        if negated:
            self.i += 1
        ranges: list[tuple[int, int]] = []
        first = True
        while True:
            if self.i >= len(self.p):
                raise self.fail("missing ']'")
            c = self.p[self.i]
            if c == "]" and not first:
                self.i += 1
                break
            first = False
            if self.p.startswith("[:", self.i):
                j = self.p.find(":]", self.i)
                name = self.p[self.i + 2:j] if j > 0 else ""
                neg = name.startswith("^")
                cls = _POSIX.get(name.lstrip("^"))
                if cls is None:
                    raise self.fail(f"unknown class [:{name}:]")
                ranges += _negate(cls) if neg else cls
                self.i = j + 2
                continue
            lo = self.class_char()
            if isinstance(lo, list):
                ranges += lo
                continue
            hi = lo
            if self.peek() == "-" and self.p[self.i + 1:self.i + 2] not in ("]", ""):
                self.i += 1
                hi_item = self.class_char()
                if isinstance(hi_item, list):
                    raise self.fail("bad character class range")
                hi = hi_item
                if hi < lo:
                    raise self.fail("bad character class range")
            ranges.append((lo, hi))
        if self.icase:
            ranges = _fold(ranges)
        return _set(ranges, negated)

    def class_char(self) -> int | list[tuple[int, int]]:
        c = self.p[self.i]
        self.i += 1
        if c != "\\":
            return ord(c)
        node = self.escape(in_class=True)
        if node[0] == "c":
            return node[1]
        flat = node[2]
        ranges = [(flat[k], flat[k + 1]) for k in range(0, len(flat), 2)]
        return _negate(ranges) if node[1] else ranges
