"""``moontide manifests APP_DIR``: an app directory as custom resources, ready for ``kubectl apply``.

Each entry becomes one CR of its kind: ``spec`` is the entry's data with the
same field names (values equal to the schema's defaults left out), plus
``spec.entryId``, the exact ID. CR names are DNS-1123 labels derived from the
ID with a short hash of it, so two IDs that differ only in case or
punctuation never share a name. Lua source is inline; a source larger than
``INLINE_LIMIT`` goes to a ConfigMap the CR references (``sourceFrom``).
``bundle.load`` of the output gives back the same entries (tested).
"""

from __future__ import annotations

import copy
import hashlib
import os
import re
from pathlib import Path
from typing import Any

import yaml

from .. import errors
from ..entries import LUA_KINDS, SCHEMAS, App, Entry, apply_defaults, load_app
from ..k8s.kinds import ANNOTATION_SOURCE_FILE, API_VERSION, BY_ENTRY_KIND, LABEL_MANAGED_BY

__all__ = ["INLINE_LIMIT", "SOURCE_KEY", "cr_name", "dump", "manifests", "manifests_of_dir"]

#: Lua sources up to this size (bytes of UTF-8) are inline in the CR; larger ones go to a ConfigMap.
INLINE_LIMIT = 256 * 1024
#: A ConfigMap holds at most 1 MiB; leave room for its metadata.
_CONFIGMAP_LIMIT = 1000 * 1024
#: The ConfigMap key of a large source.
SOURCE_KEY = "source.lua"
_LABEL_MAX = 63


def cr_name(entry_id: str) -> str:
    """A DNS-1123 label (lowercase, '-', at most 63 characters) for an entry ID, unique per ID."""
    short = hashlib.sha256(entry_id.encode()).hexdigest()[:5]
    base = re.sub(r"[^a-z0-9]+", "-", entry_id.lower()).strip("-") or "entry"
    return f"{base[: _LABEL_MAX - len(short) - 1].rstrip('-')}-{short}"


def _label_value(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:_LABEL_MAX]
    return re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", value)


def _spec(entry: Entry) -> dict[str, Any]:
    """The entry's data as written: defaults (and derived defaults) left out."""
    defaults = apply_defaults(SCHEMAS[entry.kind], {})
    spec: dict[str, Any] = {"entryId": entry.id}
    for key, value in entry.data.items():
        if key in defaults and defaults[key] == value:
            continue
        if entry.kind == "temporal.client" and key == "embedded" and value == ("address" not in entry.data):
            continue
        if entry.kind == "temporal.worker" and key == "task_queue" and value == entry.id:
            continue
        spec[key] = copy.deepcopy(value)
    return spec


def manifests(app: App, *, namespace: str | None = None, part_of: str | None = None,
              inline_limit: int = INLINE_LIMIT) -> list[dict[str, Any]]:
    """The CRs (and ConfigMaps of large sources) of every entry of ``app``, in the app's order."""
    out: list[dict[str, Any]] = []
    for entry in app.entries.values():
        resource = BY_ENTRY_KIND[entry.kind]
        name = cr_name(entry.id)
        metadata: dict[str, Any] = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        labels = {"app.kubernetes.io/part-of": _label_value(part_of)} if part_of and _label_value(part_of) else {}
        if labels:
            metadata["labels"] = labels
        spec = _spec(entry)
        if entry.kind in LUA_KINDS:
            if entry.source_file and not entry.inline_source:
                metadata["annotations"] = {ANNOTATION_SOURCE_FILE: entry.source_file}
            source = spec.pop("source")
            size = len(source.encode())
            if size <= inline_limit:
                spec = {"entryId": spec.pop("entryId"), "source": source, **spec}
            else:
                if size > _CONFIGMAP_LIMIT:
                    raise errors.Invalid(f"{entry.id}: Lua source of {size} bytes is larger than a ConfigMap "
                                         f"can hold ({_CONFIGMAP_LIMIT} bytes): split it into libraries")
                cm_name = f"{name}-lua"
                cm_meta: dict[str, Any] = {"name": cm_name, "labels": {**labels, LABEL_MANAGED_BY: "moontide"}}
                if namespace:
                    cm_meta["namespace"] = namespace
                out.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": cm_meta,
                            "data": {SOURCE_KEY: source}})
                spec = {"entryId": spec.pop("entryId"),
                        "sourceFrom": {"configMapKeyRef": {"name": cm_name, "key": SOURCE_KEY}}, **spec}
        if entry.kind == "temporal.client" and (spec.get("auth") or {}).get("type") == "api_key":
            # In a cluster the key comes from a Secret, never from the spec.
            spec["auth"] = {k: v for k, v in spec["auth"].items() if k != "api_key"}
            spec["apiKeySecretRef"] = {"name": f"{name}-api-key", "key": "api-key"}
        out.append({"apiVersion": API_VERSION, "kind": resource.kind, "metadata": metadata, "spec": spec})
    return out


def manifests_of_dir(app_dir: str | os.PathLike[str], *, namespace: str | None = None,
                     inline_limit: int = INLINE_LIMIT) -> list[dict[str, Any]]:
    """Load and validate an app directory (Lua compiled), then ``manifests``."""
    from ..lua import check_syntax  # lupa: only here, never at import time

    root = Path(app_dir).resolve()
    app = load_app(root, check_lua=check_syntax)
    return manifests(app, namespace=namespace, part_of=root.name, inline_limit=inline_limit)


class _Dumper(yaml.SafeDumper):
    pass


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    # Lua reads best as a block scalar; YAML cannot keep trailing spaces in one, so those stay quoted.
    if "\n" in value and not re.search(r"[ \t]\n|[ \t]$", value) and "\r" not in value:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _str)


def dump(documents: list[dict[str, Any]]) -> str:
    """Multi-document YAML for ``kubectl apply -f -``."""
    return yaml.dump_all(documents, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120,
                         explicit_start=True)
