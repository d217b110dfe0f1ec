"""Entries: the kinds, one JSON schema per kind, the YAML loader and entry IDs.

Data flows one way: YAML files or custom resources -> ``load_app``/``build_app``
(validated, every problem reported at once) -> an immutable ``App`` of ``Entry``.
"""

from ._loader import CheckCode, CheckLua, CodeProblem, RawEntry, build_app, load_app, load_documents
from ._model import App, Entry, expand_env, resolve_ref, split_id
from ._schemas import (
    FILE_SCHEMA,
    KINDS,
    LIFECYCLE_KINDS,
    LUA_KINDS,
    MODULES,
    NAME_PATTERN,
    OTHER_WIPPY_KINDS,
    REFERENCES,
    REFUSED,
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
    "NAME_PATTERN",
    "OTHER_WIPPY_KINDS",
    "REFERENCES",
    "REFUSED",
    "SCHEMAS",
    "App",
    "CheckCode",
    "CheckLua",
    "CodeProblem",
    "Entry",
    "RawEntry",
    "Schema",
    "apply_defaults",
    "build_app",
    "expand_env",
    "load_app",
    "load_documents",
    "resolve_ref",
    "split_id",
]
