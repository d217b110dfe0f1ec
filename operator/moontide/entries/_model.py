"""The entry model: ``Entry`` (one validated entry), ``App`` (an app's entries by ID) and IDs."""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors

__all__ = ["App", "Entry", "expand_env", "resolve_ref", "split_id"]

_ENV = re.compile(r"\$\{env:([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(value: Any, where: str = "") -> Any:
    """A string value with each ``${env:NAME}`` replaced by that environment variable (secrets come by
    reference, read when the app starts); other values as they are. ``where`` names the field in errors."""
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(1) not in os.environ:
            raise errors.Invalid(f"{where + ': ' if where else ''}environment variable {m.group(1)} is not set")
        return os.environ[m.group(1)]
    return _ENV.sub(sub, value)


def split_id(entry_id: str) -> tuple[str, str]:
    """Split ``namespace:name`` at the first ``:``."""
    namespace, sep, name = entry_id.partition(":")
    if not sep or not namespace or not name:
        raise errors.Invalid(f"invalid entry ID {entry_id!r}: expected 'namespace:name'")
    return namespace, name


def resolve_ref(ref: str, namespace: str) -> str:
    """Full ID of a reference; a reference without a namespace takes ``namespace``."""
    if ":" in ref:
        split_id(ref)
        return ref
    if not ref:
        raise errors.Invalid("empty entry reference")
    return f"{namespace}:{ref}"


@dataclass(frozen=True)
class Entry:
    """One validated entry. Treat ``data`` as read-only: it is shared by everything that runs the app."""

    id: str
    kind: str
    namespace: str
    name: str
    #: The kind's fields with defaults applied (no name/kind); Lua kinds hold the Lua text in "source".
    data: dict[str, Any]
    #: The YAML file (relative to the app root) and the 1-based line of the entry in it.
    file: str
    line: int
    #: Lua kinds: the Lua file relative to the app root, or "<file>:<name>" for inline source.
    source_file: str | None = None
    #: Line of the YAML file where inline source starts (1 for a Lua file).
    source_line: int = 1

    @property
    def inline_source(self) -> bool:
        return self.source_file == f"{self.file}:{self.name}"

    def location(self, lua_line: int) -> tuple[str, int]:
        """The file (relative to the app root) and line holding line ``lua_line`` of this entry's Lua source."""
        if self.source_file is None:
            raise errors.Invalid(f"entry {self.id} ({self.kind}) has no Lua source")
        if self.inline_source:
            return self.file, self.source_line + lua_line - 1
        return self.source_file, lua_line


@dataclass(frozen=True)
class App:
    """All entries of an app, by ID, ordered by file path then position in the file."""

    root: Path
    entries: dict[str, Entry] = field(default_factory=dict)

    def get(self, entry_id: str) -> Entry:
        try:
            return self.entries[entry_id]
        except KeyError:
            close = difflib.get_close_matches(entry_id, list(self.entries), n=3)
            hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
            raise errors.NotFound(f"no entry {entry_id!r} in the app{hint}") from None

    def of_kind(self, kind: str) -> list[Entry]:
        return [e for e in self.entries.values() if e.kind == kind]

    def resolve(self, ref: str, namespace: str) -> str:
        """Full ID of ``ref`` as written in an entry of ``namespace``."""
        return resolve_ref(ref, namespace)

    # -- Temporal: task queues and Wippy's meta.temporal routing ---------------------
    def task_queue(self, worker: Entry) -> str:
        """The task queue a ``temporal.worker`` polls: its client's ``tq_prefix`` + ``task_queue`` (or its ID)."""
        client = self.entries.get(self.resolve(worker.data["client"], worker.namespace))
        prefix = str((client.data.get("tq_prefix") if client is not None else "") or "")
        return prefix + str(worker.data.get("task_queue") or worker.id)

    def temporal_worker(self, ref: str, namespace: str) -> Entry:
        """The ``temporal.worker`` a spawn host names: its entry ID, or the task queue it polls."""
        entry = self.entries.get(resolve_ref(ref, namespace)) if ref else None
        if entry is None:
            by_queue = [w for w in self.of_kind("temporal.worker") if self.task_queue(w) == ref]
            if len(by_queue) == 1:
                return by_queue[0]
            entry = self.get(resolve_ref(ref, namespace))  # NotFound, with suggestions
        if entry.kind != "temporal.worker":
            raise errors.Invalid(f"{entry.id} is a {entry.kind}, not a temporal.worker")
        return entry

    def _temporal_meta(self, entry: Entry, key: str) -> dict[str, Any] | None:
        temporal = (entry.data.get("meta") or {}).get("temporal") or {}
        found = temporal.get(key) if isinstance(temporal, dict) else None
        return found if isinstance(found, dict) else None

    def routed_worker(self, entry: Entry) -> str | None:
        """The one ``temporal.worker`` a workflow or function is registered with
        (``meta.temporal.workflow.worker`` / ``meta.temporal.activity.worker``); None: every worker."""
        meta = self._temporal_meta(entry, "workflow" if entry.kind == "workflow.lua" else "activity")
        return self.resolve(str(meta["worker"]), entry.namespace) if meta and meta.get("worker") else None

    def runs_on(self, entry: Entry, worker_id: str) -> bool:
        """Whether ``worker_id`` runs this workflow, or this function as a (non-local) activity."""
        routed = self.routed_worker(entry)
        return routed is None or routed == worker_id

    def is_local_activity(self, entry: Entry) -> bool:
        """A function run as a Temporal local activity (``meta.temporal.activity.local``)."""
        meta = self._temporal_meta(entry, "activity") if entry.kind == "function.lua" else None
        return bool(meta and meta.get("local"))

    def versioning_behavior(self, entry: Entry, worker: Entry) -> str:
        """``pinned`` or ``auto_upgrade``: the workflow's own (meta.temporal.workflow.versioning_behavior),
        else its worker's default (worker_options.default_versioning_behavior)."""
        meta = self._temporal_meta(entry, "workflow")
        if meta and meta.get("versioning_behavior"):
            return str(meta["versioning_behavior"])
        return str((worker.data.get("worker_options") or {}).get("default_versioning_behavior") or "pinned")

    def workflow_type(self, entry: Entry) -> str:
        """The Temporal workflow type of a ``workflow.lua``: ``meta.temporal.workflow.name``, or its ID."""
        meta = self._temporal_meta(entry, "workflow")
        return str(meta["name"]) if meta and meta.get("name") else entry.id
