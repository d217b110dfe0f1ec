"""The entry model: ``Entry`` (one validated entry), ``App`` (an app's entries by ID) and IDs."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors

__all__ = ["App", "Entry", "resolve_ref", "split_id"]


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
