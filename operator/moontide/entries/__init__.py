"""Entries: the kinds, one JSON schema per kind, the YAML loader and entry IDs.

Data flows one way: YAML files or custom resources -> ``load_app``/``build_app``
(validated, every problem reported at once) -> an immutable ``App`` of ``Entry``.
"""

from ._loader import CheckLua, RawEntry, build_app, load_app, load_documents
from ._model import App, Entry, resolve_ref, split_id
from ._schemas import (
    FILE_SCHEMA,
    KINDS,
    LIFECYCLE_KINDS,
    LUA_KINDS,
    MODULES,
    REFERENCES,
    SCHEMAS,
    Schema,
    apply_defaults,
)

__all__ = [
    "FILE_SCHEMA",
    "KINDS",
    "LIFECYCLE_KINDS",
    "LUA_KINDS",
    "MODULES",
    "REFERENCES",
    "SCHEMAS",
    "App",
    "CheckLua",
    "Entry",
    "RawEntry",
    "Schema",
    "apply_defaults",
    "build_app",
    "load_app",
    "load_documents",
    "resolve_ref",
    "split_id",
]
