"""Lua code as a value: an entry's source plus the libraries it imports.

``LuaCode`` is what an execution runs. Its ``digest`` (sha256 over the entry
source, method, modules and, recursively, the imported libraries) names that
exact code, so a workflow can be pinned to the code it started with and load
it again by digest on replay (docs/architecture.md). ``load`` turns it into a
callable Lua function inside a runtime
(``instantiate``).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import lupa.lua54 as lupa

from .. import errors
from . import runtime as rt_mod

__all__ = ["LuaCode", "instantiate"]


@dataclass(frozen=True)
class LuaCode:
    id: str
    kind: str
    source: str
    chunkname: str
    method: str = ""
    modules: tuple[str, ...] = ()
    imports: tuple[tuple[str, LuaCode], ...] = ()
    first_line: int = 1

    @classmethod
    def from_entry(cls, app: Any, entry: Any, _seen: tuple[str, ...] = ()) -> LuaCode:
        """Build the code of a Lua entry from an app (``moontide.entries.App``)."""
        if entry.id in _seen:
            raise errors.Invalid(f"{entry.id}: imports form a cycle: {' -> '.join((*_seen, entry.id))}")
        data = entry.data
        inline = entry.source_file == f"{entry.file}:{entry.name}"
        imports = []
        for alias, ref in sorted((data.get("imports") or {}).items()):
            lib = app.get(app.resolve(ref, entry.namespace))
            imports.append((alias, cls.from_entry(app, lib, (*_seen, entry.id))))
        return cls(
            id=entry.id,
            kind=entry.kind,
            source=data["source"],
            # inline source is padded to its YAML lines, so errors name the YAML file
            chunkname=entry.file if inline else entry.source_file,
            method=data.get("method") or "",
            modules=tuple(data.get("modules") or ()),
            imports=tuple(imports),
            first_line=entry.source_line if inline else 1,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "kind": self.kind, "source": self.source, "chunkname": self.chunkname,
            "method": self.method, "modules": list(self.modules), "first_line": self.first_line,
            "imports": [[alias, lib.to_dict()] for alias, lib in self.imports],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LuaCode:
        return cls(
            id=d["id"], kind=d["kind"], source=d["source"], chunkname=d["chunkname"], method=d.get("method", ""),
            modules=tuple(d.get("modules", ())), first_line=d.get("first_line", 1),
            imports=tuple((alias, cls.from_dict(lib)) for alias, lib in d.get("imports", ())),
        )

    @cached_property
    def digest(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def namespace(self) -> str:
        return self.id.partition(":")[0]


def _padded(code: LuaCode) -> str:
    # Inline sources start inside a YAML file: pad so Lua's line numbers are the YAML's.
    return "\n" * (code.first_line - 1) + code.source if code.first_line > 1 else code.source


def _factory(rt: rt_mod.Runtime, code: LuaCode) -> Any:
    factory = rt.factories.get(code.digest)
    if factory is None:
        factory = rt.factories[code.digest] = rt.compile(_padded(code), code.chunkname)
    return factory


def _run_chunk(rt: rt_mod.Runtime, code: LuaCode, env: Any, host: rt_mod.Host | None) -> Any:
    step = rt.start(_factory(rt, code), host, env).step()
    if isinstance(step, rt_mod.Failed):
        raise step.error
    if isinstance(step, rt_mod.Yield):
        raise errors.Invalid(f"{code.chunkname}: {code.id} blocks ({step.op}) while loading; "
                             "call blocking functions from inside the entry's method")
    return step.values[0] if step.values else None


def instantiate(rt: rt_mod.Runtime, code: LuaCode, *, host: rt_mod.Host | None, seed: int) -> Any:
    """Run the entry's chunk (and its libraries') with fresh globals; return the Lua function to call.

    Compiled code is cached in ``rt`` by digest; what this returns belongs to
    one execution: its own globals, closures and ``math.random``.
    """
    loaded: dict[str, Any] = {}

    def library(lib: LuaCode) -> Any:
        if lib.digest not in loaded:
            imports = {alias: library(sub) for alias, sub in lib.imports}
            env = rt.new_env(lib.id, lib.modules, imports, seed=seed)
            loaded[lib.digest] = _run_chunk(rt, lib, env, host)
        return loaded[lib.digest]

    imports = {alias: library(lib) for alias, lib in code.imports}
    ret = _run_chunk(rt, code, rt.new_env(code.id, code.modules, imports, seed=seed), host)
    return _method(rt, code, ret)


def _method(rt: rt_mod.Runtime, code: LuaCode, ret: Any) -> Any:
    kind = lupa.lua_type(ret)
    if kind == "function":
        if code.method and code.method != "main":
            raise errors.Invalid(f"{code.chunkname}: {code.id}: field method is {code.method!r}, "
                                 "but the source returns a single function, not a table of functions")
        return ret
    if kind == "table":
        if not code.method:
            names = sorted(str(k) for k, v in ret.items() if lupa.lua_type(v) == "function")
            raise errors.Invalid(f"{code.chunkname}: {code.id}: field method is missing; "
                                 f"the source returns a table of functions ({', '.join(names)}): name one")
        fn = rt.lua.globals().rawget(ret, code.method)  # raw: no user __index runs unbudgeted
        if lupa.lua_type(fn) != "function":
            names = sorted(str(k) for k, v in ret.items() if lupa.lua_type(v) == "function")
            raise errors.Invalid(f"{code.chunkname}: {code.id}: field method {code.method!r} is not a function "
                                 f"in the table the source returns (functions: {', '.join(names) or 'none'})")
        return fn
    raise errors.Invalid(f"{code.chunkname}: {code.id}: the source must return a function or a table of "
                         f"functions, not {kind or 'nothing'}")
