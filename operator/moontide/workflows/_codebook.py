"""Which Lua code a worker runs: the app's entries now, and every version it has seen.

A workflow started through Moontide carries its code digest in the memo
(``moontide.code``). On every activation the worker loads the code by that
digest, so a redeploy with changed Lua never breaks executions in flight:
they keep running the code they started with, as long as some version of the
worker has it (the book persists every version to ``store_dir``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .. import errors
from ..lua.code import LuaCode
from ..protocol import MEMO_CODE

__all__ = ["MEMO_CODE", "CodeBook"]



class CodeBook:
    def __init__(self, app: Any, *, store_dir: Path | None = None) -> None:
        self.app = app
        self.store_dir = store_dir
        self.workflows: dict[str, LuaCode] = {}
        self.functions: dict[str, LuaCode] = {}
        #: Temporal workflow type -> entry ID, for types given by meta.temporal.workflow.name
        self.types: dict[str, str] = {}
        self._by_digest: dict[str, LuaCode] = {}
        for entry in app.of_kind("workflow.lua"):
            self.workflows[entry.id] = self._remember(LuaCode.from_entry(app, entry))
            self.types[app.workflow_type(entry)] = entry.id
        for entry in app.of_kind("function.lua"):
            self.functions[entry.id] = LuaCode.from_entry(app, entry)

    def _remember(self, code: LuaCode) -> LuaCode:
        self._by_digest[code.digest] = code
        if self.store_dir is not None:
            path = self.store_dir / f"{code.digest}.json"
            if not path.exists():
                self.store_dir.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(code.to_dict(), sort_keys=True))
                os.replace(tmp, path)
        return code

    def workflow(self, entry_id: str) -> LuaCode:
        """The code of a workflow, by entry ID or by its Temporal type (meta.temporal.workflow.name)."""
        code = self.workflows.get(entry_id) or self.workflows.get(self.types.get(entry_id, ""))
        if code is None:
            raise errors.NotFound(f"no workflow.lua entry {entry_id!r} in this app "
                                  f"(workflows: {', '.join(sorted(self.workflows)) or 'none'})")
        return code

    def by_digest(self, digest: str) -> LuaCode | None:
        code = self._by_digest.get(digest)
        if code is None and self.store_dir is not None:
            path = self.store_dir / f"{digest}.json"
            if path.exists():
                code = self._by_digest[digest] = LuaCode.from_dict(json.loads(path.read_text()))
        return code
