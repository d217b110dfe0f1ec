"""The registry module's view of an app's entries (Wippy's ``registry``, read-only).

An entry reads as Wippy's ``{id=, kind=, meta=, data=}``: ``meta`` is the entry's
``meta``, ``data`` its other fields with the schema's defaults. What the view
leaves out or changes, so that Lua code learns no more than the entry file says:

- a Lua entry's ``source`` is what the file wrote: the inline text, or
  ``file://<path>`` relative to the YAML file (never the Lua text read from disk
  or a path on the host);
- secrets written literally in a ``temporal.client``'s ``auth`` (``api_key``,
  ``key_pem``) read as ``[redacted]``; ``${env:NAME}`` references stay as written.

Moontide's entries come from YAML files or custom resources: the view has one
version, and changes are refused (``PermissionDenied``).
"""

from __future__ import annotations

import copy
import json
import posixpath
from typing import Any

from .. import errors

__all__ = ["REDACTED", "entry_view", "find", "parse_id"]

REDACTED = "[redacted]"
#: temporal.client auth fields that hold a secret when written literally
_SECRETS = ("api_key", "key_pem")
_LUA_KINDS = ("function.lua", "workflow.lua", "process.lua", "library.lua")


def parse_id(text: Any) -> tuple[str, str]:
    """``ns:name`` -> (ns, name); Invalid otherwise."""
    if not isinstance(text, str) or text.count(":") != 1:
        raise errors.Invalid(f"registry: invalid entry ID {text!r} (expected 'namespace:name')")
    ns, name = text.split(":")
    if not ns or not name:
        raise errors.Invalid(f"registry: invalid entry ID {text!r} (expected 'namespace:name')")
    return ns, name


def entry_view(entry: Any) -> dict[str, Any]:
    """The entry as Lua sees it: a fresh copy, nothing shared with the app."""
    data = copy.deepcopy(entry.data)
    meta = data.pop("meta", None) or {}
    if entry.kind in _LUA_KINDS and "source" in data:
        if entry.inline_source or entry.source_file is None:
            pass  # the text the file wrote
        else:
            rel = posixpath.relpath(entry.source_file, posixpath.dirname(entry.file) or ".")
            data["source"] = "file://" + rel
    if entry.kind == "temporal.client" and isinstance(data.get("auth"), dict):
        auth = data["auth"]
        for key in _SECRETS:
            value = auth.get(key)
            if isinstance(value, str) and value and not value.startswith("${env:"):
                auth[key] = REDACTED
    return {"id": entry.id, "kind": entry.kind, "meta": meta, "data": data}


def _field(entry: Any, meta: dict[str, Any], key: str) -> tuple[bool, Any]:
    """What filter key ``key`` reads of an entry: (present, value)."""
    if key in (".kind", "kind"):
        return True, entry.kind
    if key in (".ns", "namespace", ".namespace"):
        return True, entry.namespace
    if key == ".name":
        return True, entry.name
    if key == ".id":
        return True, entry.id
    if key.startswith("meta."):
        key = key[5:]
    if key in meta:
        return True, meta[key]
    return False, None


def find(app: Any, filter_json: str | None) -> list[dict[str, Any]]:
    """Entries matching every field of the filter (``{}``: all), in the app's order."""
    flt = json.loads(filter_json) if filter_json else {}
    if not isinstance(flt, dict):
        raise errors.Invalid("registry.find: filter must be a table of field = value")
    out = []
    for entry in app.entries.values():
        meta = entry.data.get("meta") or {}
        for key, want in flt.items():
            present, value = _field(entry, meta, key)
            if not present or value != want:
                break
        else:
            out.append(entry_view(entry))
    return out
