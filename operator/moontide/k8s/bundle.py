"""Custom resources -> entries: the one path from CRs to a validated ``App``.

A CR of an entry kind becomes a ``RawEntry`` (namespace and name from
``spec.entryId``, the entry fields from ``spec``, Lua inline or from a
ConfigMap key) and goes through ``entries.build_app`` like a YAML file would.
Its problems come back naming ``<Kind>/<name>`` as the file, so each one can be
shown on the CR it belongs to.

A *bundle* is the set of entry CRs a worker pod runs, written by the operator
into a ConfigMap (``bundle.json``, plus the ConfigMaps of large sources
mounted under ``sources/<name>/<key>``) and read back by ``moontide worker``
with ``load_dir``. Its ``digest`` is the pod template annotation that rolls the
workers when any entry changes. Who calls it: the reconciler (operator), the
manifests round trip, and the worker/service commands.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import errors
from ..entries import LUA_KINDS, App, CheckLua, RawEntry, build_app, split_id
from ..errors import EntryProblem
from .kinds import API_VERSION, BY_KIND, ENTRY_RESOURCES, K8S_ONLY_FIELDS

__all__ = [
    "BUNDLE_KEY",
    "Built",
    "SOURCES_DIR",
    "SourceReader",
    "build",
    "bundle_document",
    "cr_file",
    "digest",
    "dumps",
    "load",
    "load_dir",
    "read_dir",
    "source_refs",
]

#: The ConfigMap key (and file in the mounted directory) holding the bundle's CRs.
BUNDLE_KEY = "bundle.json"
#: Directory of the bundle holding large Lua sources: ``sources/<configmap>/<key>``.
SOURCES_DIR = "sources"
#: ``reader(configmap_name, key)`` -> the text, or None when there is no such key.
SourceReader = Callable[[str, str], "str | None"]

_ENTRY_KINDS = {r.kind for r in ENTRY_RESOURCES}


def cr_file(kind: str, name: str) -> str:
    """How problems name a custom resource (in place of a file): ``<Kind>/<name>``."""
    return f"{kind}/{name}"


def _name(cr: Mapping[str, Any]) -> str:
    return str((cr.get("metadata") or {}).get("name") or cr.get("name") or "")


def _spec(cr: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = cr.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def source_refs(crs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """``(configmap, key)`` of every ``sourceFrom`` in ``crs``, sorted, without repeats."""
    refs = set()
    for cr in crs:
        ref = (_spec(cr).get("sourceFrom") or {}).get("configMapKeyRef") or {}
        if isinstance(ref.get("name"), str) and isinstance(ref.get("key"), str):
            refs.add((ref["name"], ref["key"]))
    return sorted(refs)


@dataclass
class Built:
    """The outcome of ``build``: the app (None when any CR has a problem) and every problem, by CR."""

    app: App | None
    problems: list[EntryProblem] = field(default_factory=list)

    def of(self, kind: str, name: str) -> list[EntryProblem]:
        """The problems that belong to one CR."""
        where = cr_file(kind, name)
        return [p for p in self.problems if p.file == where]

    @property
    def files(self) -> set[str]:
        return {p.file for p in self.problems}


def _raw(cr: Mapping[str, Any], sources: SourceReader | None, problems: list[EntryProblem]) -> RawEntry | None:
    kind, name = str(cr.get("kind")), _name(cr)
    file = cr_file(kind, name)
    spec = _spec(cr)
    entry_id = spec.get("entryId")
    try:
        namespace, entry_name = split_id(entry_id) if isinstance(entry_id, str) else split_id("")
    except errors.Invalid:
        problems.append(EntryProblem(file, f"spec.entryId must be 'namespace:name', got {entry_id!r}",
                                     field="entryId"))
        return None
    entry_kind = BY_KIND[kind].entry_kind
    body: dict[str, Any] = {"name": entry_name, "kind": entry_kind}
    body |= {k: v for k, v in spec.items() if k not in K8S_ONLY_FIELDS}
    if entry_kind in LUA_KINDS:
        ref = (spec.get("sourceFrom") or {}).get("configMapKeyRef")
        if ref and "source" in spec:
            problems.append(EntryProblem(file, "give either source or sourceFrom, not both", entry=entry_id,
                                         field="sourceFrom"))
        elif ref:
            text = sources(ref["name"], ref["key"]) if sources is not None else None
            if text is None:
                problems.append(EntryProblem(file, f"ConfigMap {ref['name']!r} has no key {ref['key']!r}",
                                             entry=entry_id, field="sourceFrom.configMapKeyRef"))
            else:
                body["source"] = text
        elif "source" not in spec:
            problems.append(EntryProblem(file, "missing the Lua code: give source (inline) or sourceFrom",
                                         entry=entry_id, field="source"))
    if entry_kind == "temporal.client":
        api_key = ((spec.get("auth") or {}).get("api_key"))
        if isinstance(api_key, str) and api_key and not api_key.startswith("${env:"):
            problems.append(EntryProblem(file, "an API key must not be inline in a custom resource: "
                                         "use apiKeySecretRef", entry=entry_id, field="auth.api_key"))
    return RawEntry(file=file, namespace=namespace, body=body)


def build(crs: Iterable[Mapping[str, Any]], *, sources: SourceReader | None = None,
          check_lua: CheckLua | None = None, root: str | os.PathLike[str] = "/") -> Built:
    """Validate entry CRs as one app; never raises for bad entries (see ``Built.problems``)."""
    problems: list[EntryProblem] = []
    raws = []
    for cr in crs:
        if cr.get("kind") not in _ENTRY_KINDS:
            continue
        raw = _raw(cr, sources, problems)
        if raw is not None:
            raws.append(raw)
    mine = {p.file for p in problems}
    try:
        app = build_app(root, raws, check_lua=check_lua)
    except errors.EntryErrors as e:
        # "missing required field 'source'" repeats what _raw said more precisely
        problems += [p for p in e.problems
                     if not (p.file in mine and p.field == "source" and p.message.startswith("missing required"))]
        app = None
    if problems:
        return Built(None, sorted(problems, key=lambda p: (p.file, p.line or 0)))
    return Built(app)


def load(crs: Iterable[Mapping[str, Any]], *, sources: SourceReader | None = None,
         check_lua: CheckLua | None = None) -> App:
    """Validate entry CRs into an App, or raise ``errors.EntryErrors`` with every problem."""
    built = build(crs, sources=sources, check_lua=check_lua)
    if built.app is None:
        raise errors.EntryErrors(built.problems)
    return built.app


def bundle_document(crs: Iterable[Mapping[str, Any]], *, namespace: str = "") -> dict[str, Any]:
    """The bundle of ``crs`` (only what the worker reads: kind, name, spec), in a stable order."""
    resources = [{"kind": cr["kind"], "name": _name(cr), "spec": dict(_spec(cr))}
                 for cr in crs if cr.get("kind") in _ENTRY_KINDS]
    resources.sort(key=lambda r: (r["kind"], r["name"]))
    return {"apiVersion": API_VERSION, "kind": "Bundle", "namespace": namespace, "resources": resources}


def dumps(document: Mapping[str, Any]) -> str:
    """The bundle as JSON text, byte-stable for equal content."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def digest(bundle_text: str, sources: Mapping[tuple[str, str], str] | None = None) -> str:
    """Short content hash of a bundle and the large sources it references."""
    h = hashlib.sha256(bundle_text.encode())
    for (name, key), text in sorted((sources or {}).items()):
        h.update(f"\0{name}\0{key}\0".encode())
        h.update(text.encode())
    return h.hexdigest()[:16]


def read_dir(path: str | os.PathLike[str]) -> tuple[str, dict[str, Any], dict[tuple[str, str], str]]:
    """The bundle text, its document and the large sources of a mounted bundle directory."""
    root = Path(path)
    bundle_file = root / BUNDLE_KEY
    if not bundle_file.is_file():
        raise errors.NotFound(f"no {BUNDLE_KEY} in the bundle directory {root}")
    text = bundle_file.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as e:
        raise errors.Invalid(f"{bundle_file}: not JSON: {e}") from None
    sources: dict[tuple[str, str], str] = {}
    src_root = root / SOURCES_DIR
    if src_root.is_dir():
        for cm in sorted(src_root.iterdir()):
            if cm.is_dir() and not cm.name.startswith("."):
                for f in sorted(cm.iterdir()):
                    if f.is_file() and not f.name.startswith("."):
                        sources[(cm.name, f.name)] = f.read_text(encoding="utf-8")
    return text, document, sources


def load_dir(path: str | os.PathLike[str], *, check_lua: CheckLua | None = None) -> tuple[App, str]:
    """The App of a mounted bundle directory and the bundle's digest (as the operator computed it)."""
    text, document, sources = read_dir(path)
    resources = document.get("resources") or []
    app = load(resources, sources=lambda name, key: sources.get((name, key)), check_lua=check_lua)
    refs = set(source_refs(resources))
    return app, digest(text, {k: v for k, v in sources.items() if k in refs})
