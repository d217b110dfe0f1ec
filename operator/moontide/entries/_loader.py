"""Load an app's entries from YAML files (or already-parsed documents) and validate them.

Every problem in every file is collected and raised together as one
``errors.EntryErrors``: a mistake in one entry never hides another. YAML is
composed to nodes before it is constructed, so each problem can point at the
line of its field. YAML files, parsed documents and Kubernetes custom resources
all become ``RawEntry`` values and share one validation (``build_app``).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, TypeGuard

import yaml
from jsonschema import Draft202012Validator, ValidationError

from .. import durations, errors
from ..errors import EntryProblem
from ._model import App, Entry, resolve_ref
from ._schemas import (
    FILE_SCHEMA,
    KINDS,
    LUA_KINDS,
    MODULES,
    NAME_PATTERN,
    OTHER_WIPPY_KINDS,
    PATTERN_HINTS,
    REFERENCES,
    REFUSED,
    SCHEMAS,
    apply_defaults,
)

__all__ = ["CheckCode", "CheckLua", "CodeProblem", "RawEntry", "build_app", "load_app", "load_documents"]

#: ``check_lua(source_text, chunkname)`` -> None, or ``(line, message)`` when the Lua does not compile.
CheckLua = Callable[[str, str], "tuple[int, str] | None"]
FieldPath = tuple[Any, ...]


@dataclass(frozen=True)
class CodeProblem:
    """A problem found in an entry's Lua code (by a ``CheckCode``)."""

    entry: str
    message: str
    #: the entry's field it concerns
    field: FieldPath = ("source",)
    #: where in the code, when known: (file relative to the app root, line); else the field's line in the YAML
    at: tuple[str, int] | None = None


#: ``check_code(app, kinds)`` -> problems in the Lua code of ``app``'s entries (loading each, reading its
#: source). ``app`` holds the entries that are sound so far; ``kinds`` maps every entry ID written in the
#: app (sound or not) to its kind (None: unknown kind).
CheckCode = Callable[[App, Mapping[str, "str | None"]], Iterable[CodeProblem]]

_VALIDATORS = {kind: Draft202012Validator(schema) for kind, schema in SCHEMAS.items()}
_FILE_VALIDATOR = Draft202012Validator(FILE_SCHEMA)
_NAME = re.compile(NAME_PATTERN)
_NOUNS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class RawEntry:
    """An entry as written, before validation: from a YAML file, a document or a custom resource."""

    #: Where it was written, relative to the app root (or a label, such as a custom resource's name).
    file: str
    namespace: str
    #: ``name``, ``kind`` and the kind's fields.
    body: Mapping[str, Any]
    #: 1-based line of the entry in ``file``; 0 when unknown.
    line: int = 0
    #: The entry's YAML node, to point problems at the line of a field.
    node: yaml.Node | None = field(default=None, compare=False, repr=False)
    #: Directory ``file://`` sources are relative to; None refuses them (inline source only).
    base_dir: Path | None = None


def load_app(root: str | os.PathLike[str], *, check_lua: CheckLua | None = None,
             check_code: CheckCode | None = None) -> App:
    """Load and validate every ``*.yaml``/``*.yml`` entry file under ``root`` (hidden directories skipped)."""
    root_path = Path(os.path.abspath(root))
    if not root_path.is_dir():
        raise errors.NotFound(f"app directory not found: {root}")
    problems: list[EntryProblem] = []
    raws: list[RawEntry] = []
    files = _entry_files(root_path, problems)
    if not files and not problems:
        problems.append(EntryProblem(".", "no entry files (*.yaml, *.yml) in the app directory"))
    for path in files:
        rel = path.relative_to(root_path).as_posix()
        for node, data, duplicates in _read_yaml(path, rel, problems):
            raws += _document(rel, data, path.parent, problems, node=node, duplicates=duplicates)
    return _Builder(root_path, check_lua, problems, check_code).build(raws)


def load_documents(
    docs: Iterable[tuple[str, Any]], root: str | os.PathLike[str], *, check_lua: CheckLua | None = None,
    check_code: CheckCode | None = None,
) -> App:
    """Validate parsed entry documents, ``(file, document)`` pairs, as one app.

    ``file`` names the document in problems; ``file://`` sources are read
    relative to its directory under ``root``. No YAML nodes, so no field lines.
    """
    root_path = Path(os.path.abspath(root))
    problems: list[EntryProblem] = []
    raws: list[RawEntry] = []
    for file, data in docs:
        raws += _document(file, data, root_path / PurePosixPath(file).parent, problems)
    return _Builder(root_path, check_lua, problems, check_code).build(raws)


def build_app(
    root: str | os.PathLike[str], raw_entries: Iterable[RawEntry], *, check_lua: CheckLua | None = None,
    check_code: CheckCode | None = None,
) -> App:
    """Validate raw entries (e.g. from custom resources) into an App, or raise EntryErrors with every problem."""
    return _Builder(Path(os.path.abspath(root)), check_lua, [], check_code).build(list(raw_entries))


def _entry_files(root: Path, problems: list[EntryProblem]) -> list[Path]:
    real_root = root.resolve()
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden directories hold tooling and Moontide's own ".moontide" state, never entries.
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if name.endswith((".yaml", ".yml")) and not name.startswith("."):
                path = Path(dirpath, name)
                if path.resolve().is_relative_to(real_root):
                    found.append(path)
                else:
                    rel = path.relative_to(root).as_posix()
                    problems.append(EntryProblem(rel, "symlink to a file outside the app root"))
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _read_yaml(path: Path, rel: str, problems: list[EntryProblem]) -> list[tuple[yaml.Node, Any, list[Any]]]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        problems.append(EntryProblem(rel, f"not valid UTF-8 (byte {exc.start})"))
        return []
    except OSError as exc:
        problems.append(EntryProblem(rel, f"cannot read the file: {exc.strerror or exc}"))
        return []
    docs: list[tuple[yaml.Node, Any, list[Any]]] = []
    loader = yaml.SafeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                break
            # Before construction: merge keys ("<<") are flattened into the node then.
            duplicates = list(_duplicate_keys(node, (), set()))
            docs.append((node, loader.construct_document(node), duplicates))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        detail = f" ({exc.context})" if exc.context and exc.problem else ""
        message = f"invalid YAML: {exc.problem or exc.context}{detail}"
        problems.append(EntryProblem(rel, message, line=mark.line + 1 if mark else None))
        return docs
    except yaml.YAMLError as exc:
        problems.append(EntryProblem(rel, f"invalid YAML: {exc}"))
        return docs
    finally:
        loader.dispose()
    if not docs:
        problems.append(EntryProblem(rel, "empty file: expected a mapping with version, namespace and entries"))
    return docs


def _duplicate_keys(node: yaml.Node, path: FieldPath, seen_nodes: set[int]) -> Iterator[tuple[FieldPath, int, int]]:
    if id(node) in seen_nodes:  # an alias (even a recursive one) is checked once
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first: dict[str, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                line = key.start_mark.line + 1
                if key.value in first:
                    yield (*path, key.value), line, first[key.value]
                first.setdefault(key.value, line)
                yield from _duplicate_keys(value, (*path, key.value), seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            yield from _duplicate_keys(item, (*path, i), seen_nodes)


def _document(
    file: str,
    data: Any,
    base_dir: Path | None,
    problems: list[EntryProblem],
    *,
    node: yaml.Node | None = None,
    duplicates: Iterable[tuple[FieldPath, int, int]] = (),
) -> list[RawEntry]:
    if not isinstance(data, dict):
        message = f"expected a mapping with version, namespace and entries, got {_show(data)}"
        problems.append(EntryProblem(file, message, line=_locate(node, ())[1]))
        return []
    for path, message in _check(_FILE_VALIDATOR, data):
        problems.append(EntryProblem(file, message, field=_dotted(path), line=_locate(node, path)[1]))
    namespace, entries = data.get("namespace"), data.get("entries")
    for path, line, first in duplicates:
        entry, rest = None, path
        if path[0] == "entries" and len(path) > 2 and isinstance(entries, list) and isinstance(entries[path[1]], dict):
            entry, rest = _label(namespace, entries[path[1]].get("name")), path[2:]
        message = f"duplicate key {path[-1]!r} (first at line {first})"
        problems.append(EntryProblem(file, message, entry=entry, field=_dotted(rest), line=line))
    if not isinstance(entries, list) or not _valid_name(namespace):
        return []  # without a namespace the entries have no IDs; the problem above says why
    raws = []
    for i, body in enumerate(entries):
        if isinstance(body, dict):
            entry_node, entry_line = _locate(node, ("entries", i))
            raws.append(RawEntry(file, namespace, body, line=entry_line or 0, node=entry_node, base_dir=base_dir))
    return raws


class _Builder:
    """Validates raw entries into an App, collecting every problem on the way."""

    def __init__(self, root: Path, check_lua: CheckLua | None, problems: list[EntryProblem],
                 check_code: CheckCode | None = None) -> None:
        self.root = root
        self.real_root = root.resolve()
        self.check_lua = check_lua
        self.check_code = check_code
        self.problems = problems
        # Every ID written, even of a broken entry, so one mistake does not cascade into "unknown entry".
        self.index: dict[str, tuple[str | None, RawEntry]] = {}
        self.sources: list[tuple[RawEntry, str, str, str, int, bool]] = []  # (raw, id, text, file, line, inline)

    def build(self, raws: list[RawEntry]) -> App:
        heads = [head for raw in sorted(raws, key=lambda r: r.file) if (head := self._head(raw))]
        entries = [entry for raw, eid, kind in heads if (entry := self._entry(raw, eid, kind))]
        for raw, eid, kind in heads:
            self._references(raw, eid, kind)
        self._cycles(heads)
        self._workflow_types(heads)
        if self.check_lua is not None:
            for source in self.sources:
                self._check_lua(self.check_lua, *source)
        if self.check_code is not None:
            raws_by_id = {eid: raw for raw, eid, _ in heads}
            for problem in self.check_code(self._sound(entries), {i: k for i, (k, _) in self.index.items()}):
                if problem.at is None:
                    self.report(raws_by_id[problem.entry], problem.entry, problem.field, problem.message)
                else:
                    self.problems.append(EntryProblem(problem.at[0], problem.message, entry=problem.entry,
                                                      field=_dotted(problem.field), line=problem.at[1] or None))
        if self.problems:
            raise errors.EntryErrors(sorted(self.problems, key=lambda p: (p.file, p.line or 0)))
        return App(self.root, {entry.id: entry for entry in entries})

    def _sound(self, entries: list[Entry]) -> App:
        """The entries with no problem so far whose imports (all the way down) have none either."""
        bad = {p.entry for p in self.problems}
        ok = {e.id: e for e in entries if e.id not in bad}
        app = App(self.root, ok)
        changed = True
        while changed:  # drop importers of dropped libraries until nothing changes
            changed = False
            for e in list(ok.values()):
                refs = [resolve_ref(r, e.namespace) for r in (e.data.get("imports") or {}).values()]
                if any(r not in ok for r in refs):
                    del ok[e.id]
                    changed = True
        return app

    def report(self, raw: RawEntry, entry_id: str | None, path: FieldPath, message: str) -> None:
        line = _locate(raw.node, path)[1] if raw.node is not None else raw.line
        self.problems.append(EntryProblem(raw.file, message, entry=entry_id, field=_dotted(path), line=line or None))

    def _head(self, raw: RawEntry) -> tuple[RawEntry, str, str] | None:
        name, kind = raw.body.get("name"), raw.body.get("kind")
        entry_id = _label(raw.namespace, name)
        if "name" not in raw.body:
            self.report(raw, None, ("name",), "missing required field 'name'")
        elif entry_id is None:
            self.report(raw, None, ("name",), f"expected {PATTERN_HINTS[NAME_PATTERN]}, got {_show(name)}")
        if "kind" not in raw.body:
            self.report(raw, entry_id, ("kind",), "missing required field 'kind'")
        elif isinstance(kind, str) and kind in OTHER_WIPPY_KINDS:
            self.report(raw, entry_id, ("kind",), f"Wippy's kind {kind!r} is not supported by Moontide "
                                                  f"(Moontide runs: {', '.join(KINDS)})")
        elif not (isinstance(kind, str) and kind in SCHEMAS):
            hint = _suggest(kind, KINDS)
            self.report(raw, entry_id, ("kind",), f"unknown kind {_show(kind)} ({hint}known: {', '.join(KINDS)})")
        if entry_id is None:
            return None
        if entry_id in self.index:
            first = self.index[entry_id][1]
            where = f"{first.file}:{first.line}" if first.line else first.file
            self.report(raw, entry_id, (), f"duplicate entry ID {entry_id!r} (first defined at {where})")
            return None
        known_kind = kind if isinstance(kind, str) and kind in SCHEMAS else None
        self.index[entry_id] = (known_kind, raw)
        return (raw, entry_id, known_kind) if known_kind else None

    def _entry(self, raw: RawEntry, entry_id: str, kind: str) -> Entry | None:
        body = {k: v for k, v in raw.body.items() if k not in ("name", "kind")}
        issues = _check(_VALIDATORS[kind], body, kind)
        for path, message in issues:
            self.report(raw, entry_id, path, message)
        source = None
        if kind in LUA_KINDS and isinstance(body.get("source"), str):
            source = self._source(raw, entry_id, body["source"])
        if issues or (kind in LUA_KINDS and source is None):
            return None
        data = apply_defaults(SCHEMAS[kind], body)
        if kind == "temporal.client":
            data.setdefault("embedded", "address" not in data)
        elif kind == "temporal.worker":
            data.setdefault("task_queue", entry_id)
        broken = False
        for path, message in _semantics(kind, data):
            self.report(raw, entry_id, path, message)
            broken = True
        if broken:
            return None
        namespace, name = raw.namespace, str(raw.body["name"])
        if source is None:
            return Entry(entry_id, kind, namespace, name, data, raw.file, raw.line)
        data["source"], source_file, source_line = source
        return Entry(entry_id, kind, namespace, name, data, raw.file, raw.line, source_file, source_line)

    def _source(self, raw: RawEntry, entry_id: str, source: str) -> tuple[str, str, int] | None:
        """Load the Lua text: (text, source_file, source_line), or None after reporting why not."""
        path = ("source",)
        if not source.startswith("file://"):
            stripped = source.strip()
            if not stripped:
                self.report(raw, entry_id, path, "empty Lua source")
                return None
            if "\n" not in stripped and stripped.endswith(".lua"):
                self.report(raw, entry_id, path, f"{stripped!r} looks like a file: write 'file://{stripped}'")
                return None
            node = _locate(raw.node, path)[0]
            start = 1
            if isinstance(node, yaml.ScalarNode):
                # A block scalar's text starts on the line after its "|" or ">".
                start = node.start_mark.line + (2 if node.style in ("|", ">") else 1)
            text_name = f"{raw.file}:{raw.body['name']}"
            self.sources.append((raw, entry_id, source, text_name, start, True))
            return source, text_name, start
        loaded = self._read_lua_file(raw.base_dir, source[len("file://") :])
        if isinstance(loaded, str):
            self.report(raw, entry_id, path, loaded)
            return None
        text, source_file = loaded
        self.sources.append((raw, entry_id, text, source_file, 1, False))
        return text, source_file, 1

    def _read_lua_file(self, base_dir: Path | None, rel: str) -> tuple[str, str] | str:
        """The text of a file:// source and its path relative to the root, or what is wrong with it."""
        if not rel:
            return "no path after 'file://'"
        if PurePosixPath(rel).is_absolute() or Path(rel).is_absolute():
            return f"absolute path {rel!r}: give a path relative to the YAML file"
        if base_dir is None:
            return "file:// sources cannot be read here: give the Lua source inline"
        target = Path(os.path.abspath(base_dir / rel))
        real = target.resolve()
        if not target.is_relative_to(self.root):
            return f"{rel!r} is outside the app root"
        if not real.is_relative_to(self.real_root):
            return f"{rel!r} leads outside the app root through a symlink"
        if not real.is_file():
            return f"{rel!r} is not a file" if real.exists() else f"Lua file not found: {rel!r}"
        try:
            text = real.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            return f"{rel!r} is not valid UTF-8 (byte {exc.start})"
        except OSError as exc:
            return f"cannot read {rel!r}: {exc.strerror or exc}"
        return text, target.relative_to(self.root).as_posix()

    def _references(self, raw: RawEntry, entry_id: str, kind: str) -> None:
        for pattern, targets in REFERENCES[kind]:
            for path, ref in _find(raw.body, pattern, ()):
                if not isinstance(ref, str):
                    continue  # the schema check reported it
                try:
                    target = resolve_ref(ref, raw.namespace)
                except errors.Invalid as exc:
                    self.report(raw, entry_id, path, exc.message)
                    continue
                wanted = " or ".join(sorted(targets))
                if target == entry_id:
                    self.report(raw, entry_id, path, "an entry cannot refer to itself")
                elif target not in self.index:
                    candidates = [i for i, (k, _) in self.index.items() if k in targets]
                    hint = _suggest(target, candidates)
                    self.report(raw, entry_id, path, f"unknown entry {target!r} ({hint}expected a {wanted})")
                elif (found := self.index[target][0]) is not None and found not in targets:
                    self.report(raw, entry_id, path, f"{target!r} is a {found}, expected a {wanted}")

    def _cycles(self, heads: list[tuple[RawEntry, str, str]]) -> None:
        self._cycles_of(heads, ("lifecycle", "depends_on", "*"), "dependency cycle")
        self._cycles_of(heads, ("imports", "*"), "import cycle")

    def _cycles_of(self, heads: list[tuple[RawEntry, str, str]], pattern: tuple[str, ...], what: str) -> None:
        graph: dict[str, list[tuple[FieldPath, str]]] = {}
        raws = {eid: raw for raw, eid, _ in heads}
        for raw, eid, _ in heads:
            graph[eid] = []
            for path, ref in _find(raw.body, pattern, ()):
                try:
                    target = resolve_ref(ref, raw.namespace) if isinstance(ref, str) else None
                except errors.Invalid:
                    target = None
                if target is not None and target != eid:
                    graph[eid].append((path, target))
        state: dict[str, bool] = {}  # False while on the current path, True when done
        stack: list[str] = []

        def visit(eid: str) -> None:
            state[eid] = False
            stack.append(eid)
            for path, dep in graph.get(eid, ()):
                if state.get(dep) is False:
                    cycle = " -> ".join([*stack[stack.index(dep) :], dep])
                    self.report(raws[eid], eid, path, f"{what}: {cycle}")
                elif dep not in state and dep in graph:
                    visit(dep)
            stack.pop()
            state[eid] = True

        for eid in graph:
            if eid not in state:
                visit(eid)

    def _workflow_types(self, heads: list[tuple[RawEntry, str, str]]) -> None:
        """Each workflow's Temporal type (meta.temporal.workflow.name, or its ID) names one workflow only."""
        seen: dict[str, str] = {eid: eid for _, eid, kind in heads if kind == "workflow.lua"}
        for raw, eid, kind in heads:
            path = ("meta", "temporal", "workflow", "name")
            name = next((v for _, v in _find(raw.body, path, ())), None)
            if kind != "workflow.lua" or not isinstance(name, str) or not name or name == eid:
                continue
            if name in seen:
                self.report(raw, eid, path, f"workflow type {name!r} is already {'the ID of' if seen[name] == name else 'the name of'} "
                                            f"workflow {seen[name]}")
            else:
                seen[name] = eid

    def _check_lua(
        self, check: CheckLua, raw: RawEntry, entry_id: str, text: str, source_file: str, source_line: int, inline: bool
    ) -> None:
        result = check(text, source_file)
        if result is None:
            return
        line, message = result
        file, at = (raw.file, source_line + line - 1) if inline else (source_file, line)
        self.problems.append(EntryProblem(file, message, entry=entry_id, field="source", line=at if line > 0 else None))


def _semantics(kind: str, data: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    """Rules a structural schema cannot say (it has no if/then)."""
    if kind == "temporal.client":
        yield from _client_rules(data)
    elif kind == "temporal.worker":
        yield from _worker_rules(data["worker_options"])
    elif kind == "process.host" and not data["lifecycle"]["auto_start"]:
        yield ("lifecycle", "auto_start"), _described("process.host", ("lifecycle", "auto_start"))
    elif kind in ("process.lua", "library.lua") and isinstance(data.get("meta"), dict) and "temporal" in data["meta"]:
        yield ("meta", "temporal"), (
            "Moontide runs a process.lua on a process.host, not as a Temporal activity (Wippy's process "
            "activities): register a function.lua with meta.temporal.activity instead" if kind == "process.lua"
            else "a library.lua is not run by Temporal: give meta.temporal to the entries that import it")


#: auth fields and the auth type they belong to
_AUTH_FIELDS = {"api_key": "api_key", "api_key_file": "api_key", "cert_file": "mtls", "cert_pem": "mtls",
                "key_file": "mtls", "key_pem": "mtls"}


def _client_rules(data: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    auth, tls = data["auth"], data["tls"]
    given = {name for name in _AUTH_FIELDS if auth.get(name)}
    pairs = {"api_key": [("api_key", "api_key_file")], "mtls": [("cert_file", "cert_pem"), ("key_file", "key_pem")]}
    for a, b in pairs.get(auth["type"], []):
        if a not in given and b not in given:
            yield ("auth", a), f"auth type {auth['type']!r} needs auth.{a} or auth.{b}"
        elif a in given and b in given:
            yield ("auth", b), f"give auth.{a} or auth.{b}, not both"
    for name in sorted(given):
        if _AUTH_FIELDS[name] != auth["type"]:
            yield ("auth", name), (f"auth.{name} is for auth type {_AUTH_FIELDS[name]!r}, but auth.type is "
                                   f"{auth['type']!r}")
    if tls["insecure_skip_verify"]:
        yield ("tls", "insecure_skip_verify"), _described("temporal.client", ("tls", "insecure_skip_verify"))


def _worker_rules(opts: dict[str, Any]) -> Iterator[tuple[FieldPath, str]]:
    for name in ("max_concurrent_eager_activity_execution_size", "worker_local_activities_per_second",
                 "enable_session_worker", "use_versioning"):
        if opts[name]:
            yield ("worker_options", name), _described("temporal.worker", ("worker_options", name))
    if durations.parse(opts["deadlock_detection_timeout"]):
        yield (("worker_options", "deadlock_detection_timeout"),
               _described("temporal.worker", ("worker_options", "deadlock_detection_timeout")))
    if opts["disable_workflow_worker"] and opts["local_activity_worker_only"]:
        yield (("worker_options", "local_activity_worker_only"),
               "disable_workflow_worker and local_activity_worker_only together leave the worker nothing to run")


def _described(kind: str, path: FieldPath) -> str:
    """A field's description from the schema: for the fields whose description says what they must be."""
    node = SCHEMAS[kind]
    for part in path:
        node = node["properties"][part]
    return str(node["description"])


def _check(validator: Draft202012Validator, instance: Any, kind: str | None = None) -> list[tuple[FieldPath, str]]:
    found: dict[tuple[FieldPath, str], None] = {}
    found_errors = list(validator.iter_errors(instance))
    # A value of the wrong type also fails its enum or pattern: say only the first.
    mistyped = {tuple(e.absolute_path) for e in found_errors if e.validator == "type"}
    for error in found_errors:
        base = tuple(error.absolute_path)
        if base in mistyped and error.validator != "type":
            continue
        for sub, message in _explain(error, kind, base):
            found[((*base, *sub), message)] = None
    return list(found)


def _explain(error: ValidationError, kind: str | None = None, base: FieldPath = ()) -> Iterator[tuple[FieldPath, str]]:
    keyword = error.validator
    value: Any = error.instance
    want: Any = error.validator_value
    if keyword == "additionalProperties":
        known = list(error.schema.get("properties", {})) if isinstance(error.schema, dict) else []
        for key in value:
            if key not in known:
                refused = REFUSED.get((kind or "", _dotted((*base, key)) or ""))
                close = difflib.get_close_matches(str(key), known, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
                yield (key,), refused or f"unknown field {key!r} ({hint})"
    elif keyword == "required":
        for key in want:
            if key not in value:
                yield (key,), f"missing required field {key!r}"
    elif keyword == "type":
        types = [want] if isinstance(want, str) else list(want)
        message = f"expected {' or '.join(_NOUNS.get(t, t) for t in types)}, got {_show(value)}"
        if "string" in types and isinstance(value, (int, float)):
            message += f' (quote it: "{_show(value)}")'
        yield (), message
    elif keyword == "enum" and kind in MODULES and len(base) == 2 and base[0] == "modules":
        yield (), _module_refusal(kind, value)
    elif keyword == "enum":
        hint = _suggest(value, [str(w) for w in want])
        yield (), f"{_show(value)} is not allowed ({hint}allowed: {', '.join(str(w) for w in want)})"
    elif keyword == "pattern":
        yield (), f"expected {PATTERN_HINTS.get(want, f'text matching {want}')}, got {_show(value)}"
    elif keyword in ("minimum", "maximum"):
        yield (), f"must be {'at least' if keyword == 'minimum' else 'at most'} {want}, got {_show(value)}"
    else:
        yield (), error.message


def _module_refusal(kind: str, name: Any) -> str:
    allowed = ", ".join(MODULES[kind])
    if kind == "workflow.lua" and name in MODULES["function.lua"]:
        return (f"module {name!r} is not allowed in a workflow.lua: what it does would not be recorded in the "
                f"workflow's history; call a function.lua for it (workflow.lua allows: {allowed})")
    if name in MODULES["library.lua"]:
        return f"module {name!r} is not allowed in a {kind} ({kind} allows: {allowed})"
    hint = _suggest(name, MODULES[kind])
    return f"Moontide has no Lua module {_show(name)} ({hint}{kind} allows: {allowed})"


def _locate(node: yaml.Node | None, path: FieldPath) -> tuple[yaml.Node | None, int | None]:
    """The node at ``path`` (or None) and the line of the deepest key or item found on the way."""
    if node is None:
        return None, None
    line = node.start_mark.line + 1
    current: yaml.Node = node
    for part in path:
        child = None
        if isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    child, line = value, key.start_mark.line + 1  # no break: the last duplicate wins, as in the data
        elif isinstance(current, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(current.value):
            child = current.value[part]
            line = child.start_mark.line + 1
        if child is None:
            return None, line
        current = child
    return current, line


def _find(data: Any, pattern: tuple[str, ...], path: FieldPath) -> Iterator[tuple[FieldPath, Any]]:
    """Values at ``pattern`` in ``data``, where "*" is any key of a mapping or index of a list."""
    if not pattern:
        yield path, data
        return
    head, rest = pattern[0], pattern[1:]
    items: Iterable[tuple[Any, Any]] = ()
    if head == "*":
        items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    elif isinstance(data, Mapping) and head in data:
        items = [(head, data[head])]
    for key, value in items:
        yield from _find(value, rest, (*path, key))


def _dotted(path: FieldPath) -> str | None:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def _valid_name(value: Any) -> TypeGuard[str]:
    return isinstance(value, str) and _NAME.match(value) is not None


def _label(namespace: Any, name: Any) -> str | None:
    return f"{namespace}:{name}" if _valid_name(namespace) and _valid_name(name) else None


def _suggest(word: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1) if isinstance(word, str) else []
    return f"did you mean {close[0]!r}? " if close else ""


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)
