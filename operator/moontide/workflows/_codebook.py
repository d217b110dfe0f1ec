"""Which Lua code a worker runs: the app's entries now, and every version it has seen.

A workflow started through Moontide carries its code digest in the memo
(``moontide.code``). On every activation the worker loads the code by that
digest, so a redeploy with changed Lua never breaks executions in flight:
they keep running the code they started with, as long as some version of the
worker has it (the book persists every version to ``store_dir``).

``moontide upgrade`` moves a pinned run to other code after checking that its
history replays on it: the book records that as ``upgrade.<run_id>.json`` next
to the code versions (``{"run_id", "workflow_id", "workflow_type", "from",
"to", "at"}``), and a worker choosing a run's code reads it before the memo.
Flat names that are valid ConfigMap keys, so a Kubernetes worker's code
history (the ``<worker>-code`` ConfigMap) can carry them too.
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

    # -- per-run upgrades (``moontide upgrade``) ---------------------------------
    def _upgrade_path(self, run_id: str) -> Path | None:
        if self.store_dir is None or not run_id or "/" in run_id or run_id.startswith("."):
            return None
        return self.store_dir / f"upgrade.{run_id}.json"

    def upgrade_of(self, run_id: str) -> dict[str, Any] | None:
        """The upgrade recorded for a run (``to``: the digest it runs now), None if it has none."""
        path = self._upgrade_path(run_id)
        if path is None or not path.exists():
            return None
        try:
            record = json.loads(path.read_text())
            if not isinstance(record, dict) or not isinstance(record.get("to"), str):
                raise ValueError("no \"to\" digest")
        except (OSError, ValueError) as e:
            raise RuntimeError(f"{path}: not an upgrade record: {e}") from None
        return record

    def upgraded(self, run_id: str) -> str | None:
        """The digest of the code a run was upgraded to, None if it was not."""
        record = self.upgrade_of(run_id)
        return str(record["to"]) if record is not None else None

    def record_upgrade(self, run_id: str, record: dict[str, Any] | None) -> None:
        """Write a run's upgrade record (``to``: the digest it runs from now on), or remove it (None)."""
        path = self._upgrade_path(run_id)
        if path is None:
            raise errors.Invalid(f"cannot record an upgrade of run {run_id!r}"
                                 + ("" if self.store_dir is not None else ": this code book has no store"))
        if record is None:
            path.unlink(missing_ok=True)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**record, "run_id": run_id}, sort_keys=True))
        os.replace(tmp, path)
