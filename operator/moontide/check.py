"""What ``moontide check`` (and ``moontide run``, before it serves) verifies in an app's Lua code.

The loader checks the entries against their schemas and compiles every source;
``check_code`` (its ``CheckCode`` hook) goes further, for the entries that
passed:

- it loads each Lua entry as a worker or process host would, in a fresh Lua
  runtime under the instruction budget and memory cap of the places that run
  it: a chunk (or an imported library) that raises, runs past the budget or
  the cap, or blocks while loading is reported at its line, and so is a
  ``method`` the source does not define or a source that returns no function;
- it reads each source for literal entry IDs in ``funcs.call("ns:name")``,
  ``funcs.async``, ``process.spawn("ns:name", "ns:host", ...)`` (and its
  ``spawn_monitored``/``spawn_linked``/``exec`` forms, on ``process`` or a
  spawner), executors' ``:call``, and ``workflow.exec``: an ID that names no
  entry, or an entry of the wrong kind, is reported at its line.

A chunk that needs at load time what only a running worker answers (workflow
state, the network) cannot be judged here and is not reported.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from typing import Any

import lupa.lua54 as lupa

from . import entries, errors
from .entries import App, CodeProblem, Entry
from .lua import code as code_mod
from .lua import host as host_mod
from .lua import runtime as rt_mod

__all__ = ["check_code"]

_RUNNABLE = ("function.lua", "workflow.lua", "process.lua")


def check_code(app: App, kinds: Mapping[str, str | None], *, literal_ids: bool = True) -> list[CodeProblem]:
    """Problems in the Lua code of ``app``'s entries (``kinds``: every entry ID written, and its kind).

    ``literal_ids``: also read the sources for IDs that name no entry. ``moontide run`` leaves that
    to ``moontide check``: a call of a missing function fails with NotFound when it runs, which
    Lua code may expect and handle.
    """
    loader = _Loader(app)
    problems: list[CodeProblem] = []
    for entry in app.entries.values():
        if entry.kind == "library.lua":
            problems += loader.library(entry)
        elif entry.kind in _RUNNABLE:
            problems += loader.runnable(entry)
        if literal_ids and entry.kind in entries.LUA_KINDS:
            problems += _literal_ids(app, entry, kinds)
    return problems


# -- loading -------------------------------------------------------------------

class _LoadHost(host_mod.FunctionHost):
    """Answers what a chunk may ask at load time without a worker: the clock, uuids, encodings; logs dropped."""

    def __init__(self, rt: rt_mod.Runtime) -> None:
        super().__init__(rt)
        #: host calls only a running worker or process host answers
        self.unanswered: list[str] = []

    def __call__(self, op: str, *args: Any) -> Any:
        if op.startswith("http") or getattr(self, "op_" + op.replace(".", "_"), None) is None:
            self.unanswered.append(op)
            raise errors.Unavailable(f"{op} is not available while loading", retryable=False)
        return super().__call__(op, *args)

    def op_log(self, level: str, message: str, fields: str | None = None) -> None:
        pass


class _Loader:
    def __init__(self, app: App) -> None:
        self.app = app
        self.runtimes: dict[tuple[int, int], rt_mod.Runtime] = {}
        #: library ID -> whether it loads (each library is judged, and reported, once)
        self.libraries: dict[str, bool] = {}

    def library(self, entry: Entry) -> list[CodeProblem]:
        problems = self._imports(entry)
        if problems is None:
            self.libraries[entry.id] = False
            return []
        if entry.id not in self.libraries:
            lib = code_mod.LuaCode.from_entry(self.app, entry)
            # a one-line importer loads the library the way the entries importing it do
            probe = code_mod.LuaCode(id=entry.id, kind="function.lua", source="return function() end",
                                     chunkname="<moontide check>", imports=(("library", lib),))
            problems = self._load(entry, probe)
            self.libraries[entry.id] = not problems
        return problems

    def runnable(self, entry: Entry) -> list[CodeProblem]:
        if self._imports(entry) is None:
            return []  # a library it imports is reported already
        return self._load(entry, code_mod.LuaCode.from_entry(self.app, entry))

    def _imports(self, entry: Entry) -> list[CodeProblem] | None:
        """[] when every library ``entry`` imports loads, None when one does not."""
        for ref in (entry.data.get("imports") or {}).values():
            lib = self.app.get(self.app.resolve(ref, entry.namespace))
            if lib.id not in self.libraries:
                self.library(lib)
            if not self.libraries[lib.id]:
                return None
        return []

    def _runtime(self, budget: int, memory: int) -> rt_mod.Runtime:
        rt = self.runtimes.get((budget, memory))
        if rt is None:
            rt = self.runtimes[(budget, memory)] = rt_mod.Runtime(memory_limit=memory, instruction_budget=budget)
        return rt

    def _load(self, entry: Entry, code: code_mod.LuaCode) -> list[CodeProblem]:
        budget, memory, where = _limits(self.app, entry)
        rt = self._runtime(budget, memory)
        host = _LoadHost(rt)
        try:
            code_mod.instantiate(rt, code, host=host, seed=0)
            return []
        except lupa.LuaMemoryError:
            error: errors.MoontideError = errors.BudgetExceeded(f"memory limit of {memory >> 20} MiB exceeded")
        except errors.MoontideError as e:
            error = e
        finally:
            rt.collect_garbage()
        if host.unanswered:
            return []  # it needed a worker to load: nothing can be said here
        return [_load_problem(entry, error, budget, memory, where)]


def _limits(app: App, entry: Entry) -> tuple[int, int, str]:
    """(instruction budget, memory cap in bytes, which entries set them) of the places that may run ``entry``."""
    found: list[tuple[int, int, str]] = []
    if entry.kind in ("workflow.lua", "function.lua", "library.lua"):
        for w in app.of_kind("temporal.worker"):
            if entry.kind != "workflow.lua" or app.runs_on(entry, w.id):
                opts = entries.apply_defaults(entries.SCHEMAS["temporal.worker"], w.data)["worker_options"]
                found.append((int(opts["instruction_budget"]), int(opts["memory_limit_mb"]), w.id))
    if entry.kind in ("process.lua", "function.lua", "library.lua"):
        for h in app.of_kind("process.host"):
            data = entries.apply_defaults(entries.SCHEMAS["process.host"], h.data)
            found.append((int(data["instruction_budget"]), int(data["memory_limit_mb"]), h.id))
    if not found:
        opts = entries.apply_defaults(entries.SCHEMAS["temporal.worker"], {})["worker_options"]
        found.append((int(opts["instruction_budget"]), int(opts["memory_limit_mb"]), "the defaults"))
    budget = min(found, key=lambda f: f[0])
    memory = min(found, key=lambda f: f[1])
    return budget[0], memory[1] << 20, budget[2] if budget[2] == memory[2] else f"{budget[2]}, {memory[2]}"


_AT = re.compile(r"([^\s:]+):(\d+):")


def _load_problem(entry: Entry, error: errors.MoontideError, budget: int, memory: int, where: str) -> CodeProblem:
    text = str(error)
    message = error.message
    at = _position(entry, text)
    if at is not None:  # the position goes to the problem's file:line
        message = re.sub(r"^[^\s:]+:\d+: ", "", message)
    first = message.splitlines()[0] if message else error.kind
    if isinstance(error, errors.BudgetExceeded):
        limit = (f"the memory cap of {memory >> 20} MiB" if "memory" in text
                 else "the CPU limit" if "CPU limit" in text
                 else f"the instruction budget of {budget:,} instructions")
        return CodeProblem(entry.id, f"loading it runs past {limit} ({where}): a loop or a large table at the "
                                     "top level?", at=at)
    if "field method" in first:
        return CodeProblem(entry.id, first.split(": ", 2)[-1], field=("method",))
    if "must return a function" in first:
        return CodeProblem(entry.id, first.split(": ", 2)[-1])
    if "while loading" in first:
        return CodeProblem(entry.id, first.split(": ", 2)[-1], at=at)
    return CodeProblem(entry.id, f"loading it raised: {first}", at=at)


def _position(entry: Entry, text: str) -> tuple[str, int] | None:
    """The first ``chunk:line`` in an error's message or traceback that is a file of the app (not "<...>")."""
    for m in _AT.finditer(text):
        chunk, line = m.group(1).strip(), int(m.group(2))
        if not chunk.startswith("<") and chunk != "[C]":
            return chunk, line
    return None


# -- literal entry IDs -----------------------------------------------------------

_LEX = re.compile(r"""
    (?P<space>\s+)
  | (?P<comment>--\[(?P<ceq>=*)\[.*?\](?P=ceq)\]|--[^\n]*)
  | (?P<long>\[(?P<leq>=*)\[.*?\](?P=leq)\])
  | (?P<string>"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<number>0[xX][0-9a-fA-F.]+(?:[pP][+-]?\d+)?|\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
  | (?P<op>\.\.\.|\.\.|::|[=~<>]=|<<|>>|//|.)
""", re.S | re.X)

#: (object, method) -> (what the first argument must name, whether a second argument is a host)
_CALLS: dict[tuple[str, str], tuple[frozenset[str], bool]] = {
    **{("funcs", m): (frozenset({"function.lua"}), False) for m in ("call", "async")},
    **{("process", m): (frozenset({"workflow.lua", "process.lua"}), True)
       for m in ("spawn", "spawn_monitored", "spawn_linked", "spawn_linked_monitored", "exec")},
    ("workflow", "exec"): (frozenset({"workflow.lua"}), False),
}
_HOSTS = frozenset({"temporal.worker", "process.host"})
_NAME = entries.NAME_PATTERN.strip("^$")
#: an entry ID, with or without its namespace
_ID = re.compile(f"^{_NAME}(:{_NAME})?$")


def _tokens(source: str) -> Iterator[tuple[str, str, int]]:
    """(kind, text, line) of each Lua token but spaces and comments; a string's text is its value (None when
    it has escapes: not worth decoding for an entry ID)."""
    line = 1
    for m in _LEX.finditer(source):
        kind = m.lastgroup or "op"
        text = m.group()
        if kind == "string":
            yield kind, (text[1:-1] if "\\" not in text else ""), line
        elif kind not in ("space", "comment"):
            yield ("string" if kind == "long" else kind), ("" if kind == "long" else text), line
        line += text.count("\n")


def _calls(source: str) -> Iterator[tuple[frozenset[str], bool, list[tuple[str, int]]]]:
    """Each call of _CALLS with literal string arguments: (target kinds, has host, [(string, line), ...])."""
    toks = list(_tokens(source))
    for i in range(len(toks) - 2):
        sep, (kind, method, _) = toks[i + 1][1], toks[i + 2]
        if sep not in (".", ":") or kind != "name":
            continue
        if sep == ".":
            spec = _CALLS.get((toks[i][1], method)) if toks[i][0] == "name" else None
        else:  # a spawner or executor (process.with_options{...}:spawn, funcs.new():call): only "ns:name" IDs
            spec = next((v for (obj, m), v in _CALLS.items() if m == method and obj != "workflow"), None)
        j = i + 2
        if spec is None:
            continue
        args = _string_args(toks, j + 1)
        if not args or not _ID.match(args[0][0]) or (sep == ":" and ":" not in args[0][0]):
            continue  # not an entry ID (a method of something else, or a value the call will refuse)
        yield spec[0], spec[1], args


def _string_args(toks: list[tuple[str, str, int]], k: int) -> list[tuple[str, int]]:
    """The leading literal string arguments of the call whose argument list starts at token ``k``."""
    if k < len(toks) and toks[k][0] == "string":  # f"..." call syntax: one argument
        return [(toks[k][1], toks[k][2])] if toks[k][1] else []
    out: list[tuple[str, int]] = []
    if k >= len(toks) or toks[k][1] != "(":
        return out
    k += 1
    while k + 1 < len(toks) and toks[k][0] == "string" and toks[k][1] and toks[k + 1][1] in (",", ")"):
        out.append((toks[k][1], toks[k][2]))
        if toks[k + 1][1] == ")":
            break
        k += 2
    return out


def _literal_ids(app: App, entry: Entry, kinds: Mapping[str, str | None]) -> list[CodeProblem]:
    problems = []
    library = entry.kind == "library.lua"  # its relative IDs resolve against each importer's namespace
    queues = {app.task_queue(w) for w in app.of_kind("temporal.worker")}
    for targets, has_host, args in _calls(str(entry.data["source"])):
        for (ref, line), wanted in zip(args, [targets, _HOSTS if has_host else None]):
            if wanted is None or (library and ":" not in ref) or (wanted is _HOSTS and ref in queues):
                continue
            try:
                target = entries.resolve_ref(ref, entry.namespace)
            except errors.Invalid:
                continue  # not an ID at all: the call fails at run time with its own message
            what = " or ".join(sorted(wanted))
            if target not in kinds:
                close = [i for i, k in kinds.items() if k in wanted]
                hint = _suggest(target, close)
                message = f"{ref!r} names no entry ({hint}expected a {what})"
            elif kinds[target] is not None and kinds[target] not in wanted:
                message = f"{ref!r} is a {kinds[target]}, expected a {what}"
            else:
                continue
            problems.append(CodeProblem(entry.id, message, at=entry.location(line)))
    return problems


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean {close[0]!r}? " if close else ""
