"""One JSON schema per entry kind: the single source of truth for fields, defaults and limits.

The loader validates entries against these schemas; CRDs and docs are generated
from them. Each schema is a draft 2020-12 subset that is also an OpenAPI v3
*structural* schema (Kubernetes): every node has a ``type``, and there is no
``oneOf``/``anyOf``/``$ref``, so shared parts are reused as Python dicts.
A schema describes an entry's data: ``name`` and ``kind`` are checked apart
(in a custom resource they live in ``metadata.name`` and the CRD itself).
"""

from __future__ import annotations

import copy
from typing import Any

from .. import durations

__all__ = [
    "ADDRESS_PATTERN",
    "FILE_SCHEMA",
    "KINDS",
    "LIFECYCLE_KINDS",
    "LUA_KINDS",
    "MODULES",
    "NAME_PATTERN",
    "PATTERN_HINTS",
    "REFERENCES",
    "Reference",
    "SCHEMAS",
    "Schema",
    "apply_defaults",
]

Schema = dict[str, Any]
#: A field that names other entries: (path, allowed target kinds); "*" in a path is any key or index.
Reference = tuple[tuple[str, ...], frozenset[str]]

#: Namespaces and entry names (also valid in Kubernetes object names once lowercased).
NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$"
#: ``host:port`` (IPv6 in brackets), or an ``${env:NAME}`` reference resolved at start.
ADDRESS_PATTERN = r"^(\S+:[0-9]+|\$\{env:[A-Za-z_][A-Za-z0-9_]*\})$"
#: How to say what a pattern wants, for error messages.
PATTERN_HINTS = {
    durations.PATTERN: "a duration like '10s', '1h30m' or '500ms'",
    ADDRESS_PATTERN: "'host:port' or '${env:NAME}'",
    NAME_PATTERN: "a name of letters, digits, '_', '.' and '-'",
}

_COMMON_MODULES = ("funcs", "time", "uuid", "json", "base64", "hash", "errors", "logger")
#: Lua modules each Lua kind may ``require``; workflows get no I/O (no ``http``).
MODULES: dict[str, tuple[str, ...]] = {
    "function.lua": (*_COMMON_MODULES, "http", "process"),
    "workflow.lua": (*_COMMON_MODULES, "process", "channel", "workflow"),
    "process.lua": (*_COMMON_MODULES, "http", "process", "channel"),
}
MODULES["library.lua"] = tuple(dict.fromkeys(m for mods in MODULES.values() for m in mods))

LUA_KINDS = frozenset({"function.lua", "workflow.lua", "process.lua", "library.lua"})
LIFECYCLE_KINDS = frozenset({"process.service", "temporal.client", "temporal.worker"})


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _duration(default: str, description: str) -> Schema:
    return _string(description, pattern=durations.PATTERN, default=default)


def _integer(default: int, description: str, **extra: Any) -> Schema:
    return {"type": "integer", "default": default, "description": description, **extra}


def _object(description: str, properties: dict[str, Schema], **extra: Any) -> Schema:
    # default {} lets Kubernetes fill nested defaults of an absent object too.
    return {
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": False,
        "default": {},
        **extra,
    }


def _entry(description: str, properties: dict[str, Schema], required: list[str]) -> Schema:
    schema = {"type": "object", "description": description, "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


_META: Schema = {
    "type": "object",
    "description": "Free-form metadata (labels, comments, tooling data); Moontide does not read it.",
    "default": {},
    "x-kubernetes-preserve-unknown-fields": True,
}

_DESCRIPTION = _string("What this entry is for, for people and generated docs.")


def _lua_fields(kind: str) -> dict[str, Schema]:
    return {
        "source": _string(
            "The Lua code: 'file://path.lua' (relative to the YAML file, inside the app root) or inline Lua text."
        ),
        "modules": {
            "type": "array",
            "description": f"Lua modules the code may require ({kind} allows: {', '.join(MODULES[kind])}).",
            "default": [],
            "items": _string("A module name.", enum=list(MODULES[kind])),
        },
        "imports": {
            "type": "object",
            "description": "Shared Lua code: alias (the name given to require) -> ID of a library.lua entry.",
            "default": {},
            "additionalProperties": _string("ID of a library.lua entry; without a namespace, this entry's namespace."),
        },
        "meta": _META,
        "description": _DESCRIPTION,
    }


_METHOD = _string(
    "Name of the function to run when the source returns a table of functions; "
    "empty when the source returns a single function.",
    default="",
)

_LIFECYCLE = _object(
    "How Moontide starts, stops and restarts this entry.",
    {
        "auto_start": {"type": "boolean", "default": False, "description": "Start with the app."},
        "start_timeout": _duration("10s", "How long starting may take before it counts as failed."),
        "stop_timeout": _duration("10s", "How long stopping may take before the entry is killed."),
        "stable_threshold": _duration("5s", "A run that lasts this long resets the restart attempt count."),
        "depends_on": {
            "type": "array",
            "description": "Entries that must be running before this one starts (IDs of services, clients, workers).",
            "default": [],
            "items": _string("ID of a process.service, temporal.client or temporal.worker entry."),
        },
        "restart": _object(
            "Restart after failure, with exponential backoff capped at max_delay.",
            {
                "initial_delay": _duration("1s", "Delay before the first restart."),
                "max_delay": _duration("90s", "Longest delay between restarts."),
                "backoff_factor": {
                    "type": "number",
                    "default": 2.0,
                    "minimum": 1,
                    "description": "Each delay is the previous one times this factor.",
                },
                "jitter": {
                    "type": "number",
                    "default": 0.1,
                    "minimum": 0,
                    "maximum": 1,
                    "description": "Random spread of each delay, as a fraction of it.",
                },
                "max_attempts": _integer(0, "Restarts before giving up (Failed); 0 = unlimited.", minimum=0),
            },
        ),
    },
)

_TEMPORAL_CLIENT = _entry(
    "A connection to a Temporal service (or an embedded dev server started by Moontide).",
    {
        "address": _string(
            "Temporal frontend 'host:port'; when absent, Moontide runs an embedded dev server.",
            pattern=ADDRESS_PATTERN,
        ),
        "embedded": {
            "type": "boolean",
            "description": "Run a Temporal dev server inside Moontide; defaults to true when no address is given.",
        },
        "namespace": _string("Temporal namespace.", default="default"),
        "search_attributes": {
            "type": "object",
            "description": "Custom search attributes workflows may carry (name: type), set with the spawn option "
            "search_attributes and workflow.upsert_search_attributes. The embedded dev server registers them "
            "at start (so do `moontide devserver --search-attribute` and the chart's "
            "temporal.devServer.searchAttributes); on other servers: `temporal operator search-attribute create`.",
            "default": {},
            "additionalProperties": _string(
                "The attribute's type.", enum=["keyword", "text", "int", "double", "bool", "datetime", "keyword_list"]
            ),
        },
        "tls": _object(
            "TLS to the Temporal frontend.",
            {
                "enabled": {"type": "boolean", "default": False, "description": "Connect with TLS."},
                "ca_file": _string("PEM file of the CA that signed the server certificate."),
                "cert_file": _string("PEM client certificate (mTLS)."),
                "key_file": _string("PEM key of the client certificate (mTLS)."),
                "server_name": _string("Server name to verify, when it differs from the address host."),
            },
        ),
        "auth": _object(
            "How the client authenticates.",
            {
                "type": _string(
                    "none, api_key (Temporal Cloud API key) or mtls (client certificate from tls).",
                    enum=["none", "api_key", "mtls"],
                    default="none",
                ),
                "api_key": _string("The API key, usually '${env:NAME}' so it stays out of the file."),
            },
        ),
        "lifecycle": _LIFECYCLE,
        "meta": _META,
        "description": _DESCRIPTION,
    },
    [],
)

_TEMPORAL_WORKER = _entry(
    "A Temporal worker: polls a task queue and runs the app's workflows and functions.",
    {
        "client": _string("ID of the temporal.client entry to connect through."),
        "task_queue": _string("Task queue to poll; defaults to this worker's entry ID."),
        "lifecycle": _LIFECYCLE,
        "worker_options": _object(
            "Tuning of the Temporal worker.",
            {
                "max_cached_workflows": _integer(1000, "Workflows kept in the sticky cache.", minimum=0),
                "max_concurrent_workflow_tasks": _integer(100, "Workflow tasks run at once.", minimum=1),
                "max_concurrent_activities": _integer(100, "Activities (function calls) run at once.", minimum=1),
                "workflow_pollers": _integer(
                    5, "Concurrent polls for workflow tasks (the SDK's default). With 2, a burst of starts "
                    "backed up on the sticky queue: ~25% more database operations per workflow.", minimum=1),
                "activity_pollers": _integer(2, "Concurrent polls for activity tasks.", minimum=1),
                "sticky_queue_timeout": _duration(
                    "1s",
                    "How long a workflow task waits for the worker that has the workflow cached before "
                    "any worker takes it. Temporal's 10s default made recovery after a SIGKILL take ~12.6s.",
                ),
                "instruction_budget": _integer(
                    20_000_000, "Lua VM instructions allowed per workflow activation.", minimum=1
                ),
                "memory_limit_mb": _integer(64, "Memory cap of each Lua runtime, in MiB.", minimum=1),
                "inline_activations": {
                    "type": "boolean",
                    "default": True,
                    "description": "Run workflow activations on the worker's event loop rather than handing "
                    "each to a thread: ~10% less worker CPU per workflow. The instruction budget bounds every "
                    "activation (a runaway one holds the loop ~0.2-1s before it fails), in place of the SDK's "
                    "2s deadlock detector, which only watches threads. false: a thread per activation.",
                },
            },
        ),
        "meta": _META,
        "description": _DESCRIPTION,
    },
    ["client"],
)

# A host's lifecycle is only how it stops: it is not a process that fails and
# restarts (no restart, auto_start or depends_on); it runs while its app runs
# (moontide run, or the pods of its services), whose process.service entries
# carry the full lifecycles.
_PROCESS_HOST = _entry(
    "Runs Lua processes (actors, not durable), cooperatively on the app's event loop.",
    {
        "workers": _integer(
            0, "Threads that run the function.lua code processes call (funcs.call); 0 = CPUs + 4, at most 32.",
            minimum=0,
        ),
        "queue_size": _integer(
            1024, "Messages a process inbox holds; a sender to a full inbox waits until the process takes one.",
            minimum=1,
        ),
        "instruction_budget": _integer(
            20_000_000,
            "Lua VM instructions a process may run between two waits; past it, it fails with BudgetExceeded.",
            minimum=1,
        ),
        "memory_limit_mb": _integer(
            64, "Memory cap of each Lua runtime, in MiB; up to 256 processes share one runtime.", minimum=1
        ),
        "lifecycle": _object(
            "How the host stops (it starts with the app and does not restart).",
            {
                "stop_timeout": _duration(
                    "5s",
                    "When the app stops: how long processes get to end after a cancel before they are terminated.",
                ),
            },
        ),
        "meta": _META,
        "description": _DESCRIPTION,
    },
    [],
)

_PROCESS_SERVICE = _entry(
    "Keeps one process.lua running on a process.host, restarting it under its lifecycle.",
    {
        "process": _string("ID of the process.lua entry to run."),
        "host": _string("ID of the process.host entry to run it on."),
        "input": {
            "type": "array",
            "description": "Arguments passed to the process function.",
            "default": [],
            # No type: any JSON value. Structural all the same: Kubernetes allows an
            # untyped node when it preserves unknown fields.
            "items": {"description": "An argument (any JSON value).", "x-kubernetes-preserve-unknown-fields": True},
        },
        "lifecycle": _LIFECYCLE,
        "meta": _META,
        "description": _DESCRIPTION,
    },
    ["process", "host"],
)

#: The schema of each entry kind (fields other than name and kind).
SCHEMAS: dict[str, Schema] = {
    "function.lua": _entry(
        "A Lua function, run as a Temporal activity: it may do I/O.",
        {**_lua_fields("function.lua"), "method": _METHOD},
        ["source"],
    ),
    "workflow.lua": _entry(
        "A durable Lua workflow, replayed deterministically by Temporal.",
        {**_lua_fields("workflow.lua"), "method": _METHOD},
        ["source"],
    ),
    "process.lua": _entry(
        "A Lua process (actor) run on a process.host.",
        {**_lua_fields("process.lua"), "method": _METHOD},
        ["source"],
    ),
    "library.lua": _entry(
        "Shared Lua code that other Lua entries import.",
        _lua_fields("library.lua"),
        ["source"],
    ),
    "process.host": _PROCESS_HOST,
    "process.service": _PROCESS_SERVICE,
    "temporal.client": _TEMPORAL_CLIENT,
    "temporal.worker": _TEMPORAL_WORKER,
}
KINDS: tuple[str, ...] = tuple(SCHEMAS)


def _references(kind: str) -> list[Reference]:
    refs: list[Reference] = []
    if kind in LUA_KINDS:
        refs.append((("imports", "*"), frozenset({"library.lua"})))
    if kind in LIFECYCLE_KINDS:
        refs.append((("lifecycle", "depends_on", "*"), LIFECYCLE_KINDS))
    if kind == "temporal.worker":
        refs.append((("client",), frozenset({"temporal.client"})))
    if kind == "process.service":
        refs += [(("process",), frozenset({"process.lua"})), (("host",), frozenset({"process.host"}))]
    return refs


#: The fields of each kind that name other entries.
REFERENCES: dict[str, list[Reference]] = {kind: _references(kind) for kind in KINDS}

#: The schema of an entry file (the YAML document around the entries).
FILE_SCHEMA: Schema = {
    "type": "object",
    "description": "An entry file.",
    "properties": {
        "version": _string("Format version.", enum=["1.0"]),
        "namespace": _string("Namespace of every entry in the file (ID = namespace:name).", pattern=NAME_PATTERN),
        "entries": {"type": "array", "description": "The entries.", "items": {"type": "object"}},
        "meta": _META,
    },
    "required": ["version", "namespace", "entries"],
    "additionalProperties": False,
}


def apply_defaults(schema: Schema, data: Any) -> Any:
    """Return a copy of ``data`` with the schema's defaults filled in, recursively.

    An absent object property is filled when its schema has a default or any of
    its own properties has one.
    """
    out = copy.deepcopy(data)
    _fill(schema, out)
    return out


def _fill(schema: Schema, data: Any) -> None:
    if isinstance(data, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in data:
                _fill(sub, data[key])
            elif "default" in sub:
                data[key] = copy.deepcopy(sub["default"])
                _fill(sub, data[key])
            elif sub.get("type") == "object" and _has_defaults(sub):
                data[key] = {}
                _fill(sub, data[key])
    elif isinstance(data, list) and isinstance(schema.get("items"), dict):
        for item in data:
            _fill(schema["items"], item)


def _has_defaults(schema: Schema) -> bool:
    return any("default" in sub or _has_defaults(sub) for sub in schema.get("properties", {}).values())
