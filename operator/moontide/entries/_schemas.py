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
    "OTHER_WIPPY_KINDS",
    "PERMISSIONS",
    "PATTERN_HINTS",
    "REFERENCES",
    "REFUSED",
    "Reference",
    "VERSIONING_BEHAVIORS",
    "SCHEMAS",
    "Schema",
    "apply_defaults",
]

#: How a workflow's executions meet changed Lua (worker_options.default_versioning_behavior).
VERSIONING_BEHAVIORS = ("pinned", "auto_upgrade")

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

#: Modules every runnable Lua kind may ``require`` (Wippy's names; ``process`` and
#: ``channel`` are also globals, listing them is allowed but not needed).
_COMMON_MODULES = ("funcs", "time", "uuid", "json", "base64", "hash", "errors", "logger", "process", "channel",
                   "ctx", "crypto", "payload")
#: Modules for functions and processes only (Wippy's labels): their effects are not in a workflow's history.
_HOST_MODULES = ("http", "http_client", "events", "registry")
#: Lua modules each Lua kind may ``require``; workflows get no I/O (no ``http``, no event bus or registry).
MODULES: dict[str, tuple[str, ...]] = {
    "function.lua": (*_COMMON_MODULES, *_HOST_MODULES),
    "workflow.lua": (*_COMMON_MODULES, "workflow"),
    "process.lua": (*_COMMON_MODULES, *_HOST_MODULES),
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


_META_TEXT = "Free-form metadata (labels, comments, tooling data)"
_META: Schema = {
    "type": "object",
    "description": _META_TEXT + "; Moontide does not read it.",
    "default": {},
    "x-kubernetes-preserve-unknown-fields": True,
}


def _meta(temporal_key: str, temporal: dict[str, Schema], required: list[str], what: str) -> Schema:
    """``meta``: free-form but for ``meta.temporal.<temporal_key>``, which Moontide reads (Wippy's routing)."""
    inner = {"type": "object", "description": what, "properties": temporal, "additionalProperties": False,
             "required": required}
    return {
        **_META,
        "description": _META_TEXT + f", and meta.temporal.{temporal_key}, which Moontide reads.",
        "properties": {
            "temporal": {"type": "object", "description": "How Temporal runs this entry (Wippy's meta.temporal).",
                         "properties": {temporal_key: inner}, "additionalProperties": False},
        },
    }


_WORKFLOW_META = _meta("workflow", {
    "worker": _string("ID of the temporal.worker that runs this workflow; the workflow then runs on that worker "
                      "only (without meta.temporal.workflow, every temporal.worker of the app runs it)."),
    "name": _string("Temporal workflow type; defaults to the entry ID. Spawn it by entry ID as before; Temporal "
                    "clients outside Moontide start it by this name."),
    "versioning_behavior": _string(
        "pinned or auto_upgrade: how this workflow's executions meet changed Lua (default: its worker's "
        "worker_options.default_versioning_behavior).", enum=list(VERSIONING_BEHAVIORS)),
}, ["worker"], "Register this workflow with one temporal.worker (Wippy's meta.temporal.workflow).")

_ACTIVITY_META = _meta("activity", {
    "worker": _string("ID of the temporal.worker that runs this function as an activity: a workflow's "
                      "funcs.call schedules it on that worker's task queue (without meta.temporal.activity, "
                      "on the calling workflow's own worker)."),
    "local": {"type": "boolean",
              "description": "false (the default) or true: run as a Temporal local activity: in the calling workflow's worker, recorded as a "
                             "marker in its history, without a round trip through the task queue. For short "
                             "functions; a local activity has no heartbeat and no task queue of its own."},
}, ["worker"], "Register this function as a Temporal activity of one temporal.worker (Wippy's "
              "meta.temporal.activity).")

_DESCRIPTION = _string("What this entry is for, for people and generated docs.")


def _lua_fields(kind: str, meta: Schema = _META) -> dict[str, Schema]:
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
        "meta": meta,
        "description": _DESCRIPTION,
    }


#: Wippy's permissions an entry may be granted (Moontide has no security policies: an entry lists them).
PERMISSIONS = ("http_client.private_ip",)
_PERMISSIONS: Schema = {
    "type": "array",
    "description": "Wippy permissions granted to this entry's code (Moontide has no security policies). "
                   "http_client.private_ip: http_client may reach private, loopback, link-local and cloud "
                   "metadata addresses (refused by default, as in Wippy).",
    "default": [],
    "items": _string("A permission name.", enum=list(PERMISSIONS)),
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
        "tq_prefix": _string("Prefix of the task queue of every temporal.worker of this client (Wippy's "
                             "tq_prefix): worker 'w' with task_queue 'orders' polls '<tq_prefix>orders', and "
                             "spawns and activities go there.", default=""),
        "connection_timeout": _duration("10s", "How long connecting to Temporal may take before the client "
                                               "(and so its workers) fails to start."),
        "keep_alive_time": _duration("30s", "Interval of the HTTP/2 keep-alive pings to the frontend."),
        "keep_alive_timeout": _duration("10s", "How long a keep-alive ping may go unanswered before the "
                                               "connection counts as broken (and is re-established)."),
        "health_check": _object(
            "Periodic health check of the frontend while the app runs; a failed check is logged as a warning.",
            {
                "enabled": {"type": "boolean", "default": False, "description": "Run the health check."},
                "interval": _duration("30s", "Time between two checks."),
            },
        ),
        "tls": _object(
            "TLS to the Temporal frontend (mTLS client certificates are under auth).",
            {
                "enabled": {"type": "boolean", "default": False,
                            "description": "Connect with TLS (implied by auth.type mtls)."},
                "ca_file": _string("PEM file of the CA that signed the server certificate; without it, the "
                                   "system's trusted CAs."),
                "server_name": _string("Server name to verify, when it differs from the address host."),
                "insecure_skip_verify": {"type": "boolean", "default": False,
                                         "description": "Must be false: the Temporal SDK always verifies the "
                                                        "server certificate (give ca_file and server_name)."},
            },
        ),
        "auth": _object(
            "How the client authenticates. Values may be '${env:NAME}', read when the app starts.",
            {
                "type": _string(
                    "none, api_key (e.g. a Temporal Cloud API key) or mtls (a client certificate).",
                    enum=["none", "api_key", "mtls"],
                    default="none",
                ),
                "api_key": _string("api_key: the key, usually '${env:NAME}' so it stays out of the file."),
                "api_key_file": _string("api_key: a file holding the key (instead of api_key)."),
                "cert_file": _string("mtls: PEM file of the client certificate."),
                "cert_pem": _string("mtls: the client certificate as PEM text (instead of cert_file)."),
                "key_file": _string("mtls: PEM file of the client certificate's key."),
                "key_pem": _string("mtls: the key as PEM text (instead of key_file), usually '${env:NAME}'."),
            },
        ),
        "lifecycle": _LIFECYCLE,
        "meta": _META,
        "description": _DESCRIPTION,
    },
    [],
)

def _rate(description: str) -> Schema:
    return {"type": "number", "default": 0, "minimum": 0, "description": description}


def _off(description: str) -> Schema:
    """A Wippy switch Moontide honours only off."""
    return {"type": "boolean", "default": False, "description": description}


_WORKER_OPTIONS: dict[str, Schema] = {
    "identity": _string("Worker identity shown in Temporal (its UI, describe, history); empty: the SDK's "
                        "default, '<pid>@<host>'.", default=""),
    "max_concurrent_workflow_task_execution_size": _integer(
        100, "Workflow tasks (activations) run at once.", minimum=1),
    "max_concurrent_activity_execution_size": _integer(
        100, "Activities (function calls) run at once; also the number of threads for functions that block.",
        minimum=1),
    "max_concurrent_local_activity_execution_size": _integer(
        100, "Local activities (meta.temporal.activity.local) run at once.", minimum=1),
    "max_concurrent_session_execution_size": _integer(
        1000, "Temporal sessions run at once. Moontide runs no sessions (enable_session_worker is false), so "
        "nothing is capped.", minimum=0),
    "max_concurrent_eager_activity_execution_size": _integer(
        0, "Must be 0 (no separate cap): eager activities take slots of "
        "max_concurrent_activity_execution_size.", minimum=0),
    "max_concurrent_workflow_task_pollers": _integer(
        5, "Concurrent polls for workflow tasks (the SDK's default; Wippy's is 20). With 2, a burst of starts "
        "backed up on the sticky queue: ~25% more database operations per workflow.", minimum=2),
    "max_concurrent_activity_task_pollers": _integer(2, "Concurrent polls for activity tasks.", minimum=1),
    "worker_activities_per_second": _rate("Activities this worker starts per second at most; 0 = unlimited."),
    "worker_local_activities_per_second": _rate(
        "Must be 0 (unlimited): the Temporal Python SDK has no local activity rate limit."),
    "task_queue_activities_per_second": _rate(
        "Activities the server hands out per second on this task queue, to all its workers; 0 = unlimited."),
    "sticky_schedule_to_start_timeout": _duration(
        "1s", "How long a workflow task waits for the worker that has the workflow cached before any worker "
        "takes it. Temporal's 10s default (Wippy's 5s) made recovery after a SIGKILL take ~12.6s."),
    "worker_stop_timeout": _duration(
        "0s", "When the worker stops: how long running activities get to finish before they are canceled."),
    "deadlock_detection_timeout": _duration(
        "0s", "Must be 0: Moontide bounds each workflow activation by instruction_budget instead."),
    "max_heartbeat_throttle_interval": _duration(
        "0s", "Longest interval between two heartbeats an activity sends to the server; 0: the SDK's 60s."),
    "default_heartbeat_throttle_interval": _duration(
        "0s", "Interval between two heartbeats when the activity has no heartbeat timeout; 0: the SDK's 30s."),
    "enable_logging_in_replay": _off("Log Lua logger lines again when a workflow replays its history (by "
                                     "default a replay is silent)."),
    "enable_session_worker": _off("Must be false: the Temporal Python SDK has no sessions."),
    "disable_workflow_worker": _off("Run no workflows on this worker, only activities (functions)."),
    "local_activity_worker_only": _off("Run workflows and their local activities only: no activity task "
                                       "polling."),
    "disable_eager_activities": _off("Never run an activity eagerly (handed back in the workflow task's "
                                     "answer when this worker polls its queue): always through the queue."),
    "disable_registration_aliasing": _off(
        "Moontide registers every workflow and activity under its entry ID (or meta.temporal.workflow.name), "
        "never under an alias, so either value means the same."),
    "deployment_name": _string("Worker deployment this worker belongs to (with build_id: its deployment "
                               "version, reported to Temporal).", default=""),
    "build_id": _string("Build ID this worker reports to Temporal; '${env:NAME}' reads it when the worker "
                        "starts.", default=""),
    "use_versioning": _off("Must be false for now: Temporal worker versioning is not supported; Moontide pins "
                           "each execution to the Lua code it started with instead."),
    "default_versioning_behavior": _string(
        "How executions of this worker's workflows meet changed Lua: pinned (each keeps the code it started "
        "with) or auto_upgrade (each runs the newest code from its next workflow task on: guard changes with "
        "workflow.version). meta.temporal.workflow.versioning_behavior overrides it per workflow.",
        enum=list(VERSIONING_BEHAVIORS), default="pinned"),
    "max_cached_workflows": _integer(1000, "Workflows kept in the sticky cache (Moontide).", minimum=0),
    "instruction_budget": _integer(
        20_000_000, "Lua VM instructions allowed per workflow activation, and to load a Lua entry (Moontide).",
        minimum=1),
    "memory_limit_mb": _integer(64, "Memory cap of each Lua runtime, in MiB (Moontide).", minimum=1),
    "inline_activations": {
        "type": "boolean",
        "default": True,
        "description": "Run workflow activations on the worker's event loop rather than handing each to a "
        "thread: ~10% less worker CPU per workflow. The instruction budget bounds every activation (a runaway "
        "one holds the loop ~0.2-1s before it fails), in place of the SDK's 2s deadlock detector, which only "
        "watches threads. Needs Python 3.11 (the image's): on later Pythons activations run on threads. "
        "false: a thread per activation (Moontide).",
    },
}

_TEMPORAL_WORKER = _entry(
    "A Temporal worker: polls a task queue and runs the app's workflows and functions.",
    {
        "client": _string("ID of the temporal.client entry to connect through."),
        "task_queue": _string("Task queue to poll; defaults to this worker's entry ID."),
        "lifecycle": _LIFECYCLE,
        "worker_options": _object(
            "Tuning of the Temporal worker (Wippy's names, and Moontide's own for the Lua runtime). A value "
            "Moontide cannot honour is refused, never ignored.",
            _WORKER_OPTIONS,
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
                "auto_start": {"type": "boolean", "default": True,
                               "description": "Must be true (Wippy's usual setting): a process.host always "
                                              "starts with its app."},
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
        {**_lua_fields("function.lua", _ACTIVITY_META), "method": _METHOD, "permissions": _PERMISSIONS},
        ["source"],
    ),
    "workflow.lua": _entry(
        "A durable Lua workflow, replayed deterministically by Temporal.",
        {**_lua_fields("workflow.lua", _WORKFLOW_META), "method": _METHOD},
        ["source"],
    ),
    "process.lua": _entry(
        "A Lua process (actor) run on a process.host.",
        {**_lua_fields("process.lua"), "method": _METHOD, "permissions": _PERMISSIONS},
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
    if kind == "workflow.lua":
        refs.append((("meta", "temporal", "workflow", "worker"), frozenset({"temporal.worker"})))
    if kind == "function.lua":
        refs.append((("meta", "temporal", "activity", "worker"), frozenset({"temporal.worker"})))
    return refs


#: The fields of each kind that name other entries.
REFERENCES: dict[str, list[Reference]] = {kind: _references(kind) for kind in KINDS}

#: Fields refused with a reason instead of "unknown field": Moontide's old spellings
#: (Wippy's won) and Wippy's fields Moontide cannot honour. (kind, dotted path) -> why.
REFUSED: dict[tuple[str, str], str] = {
    **{("temporal.worker", f"worker_options.{old}"): f"renamed to worker_options.{new} (Wippy's name)"
       for old, new in (("max_concurrent_activities", "max_concurrent_activity_execution_size"),
                        ("max_concurrent_workflow_tasks", "max_concurrent_workflow_task_execution_size"),
                        ("workflow_pollers", "max_concurrent_workflow_task_pollers"),
                        ("activity_pollers", "max_concurrent_activity_task_pollers"),
                        ("sticky_queue_timeout", "sticky_schedule_to_start_timeout"))},
    ("temporal.client", "tls.cert_file"): "moved to auth.cert_file (Wippy's place for the client certificate)",
    ("temporal.client", "tls.key_file"): "moved to auth.key_file (Wippy's place for the client key)",
    ("temporal.client", "auth.api_key_env"): "Wippy's deprecated form: write api_key: '${env:NAME}'",
    ("temporal.client", "auth.key_pem_env"): "Wippy's deprecated form: write key_pem: '${env:NAME}'",
    ("temporal.worker", "worker_options.build_id_env"): "Wippy's deprecated form: write build_id: '${env:NAME}'",
    **{("temporal.client", key): "Wippy's HMAC-signed security context is not supported by Moontide"
       for key in ("security_hmac_key", "security_hmac_previous_keys")},
    ("process.host", "host"): "Wippy's scheduler settings (host.workers, host.queue_size, "
                              "host.local_queue_size) do not apply: Moontide runs a host's processes on one event "
                              "loop; its own fields are workers (threads for the functions processes call) and "
                              "queue_size (inbox capacity)",
    ("function.lua", "pool"): "per-function pools are not supported: Moontide runs a function as a Temporal "
                              "activity on its worker (worker_options.max_concurrent_activity_execution_size) "
                              "or, called from a process, on its process.host's threads (workers)",
}

#: Wippy's entry kinds Moontide does not run (an entry of one is refused, saying so).
OTHER_WIPPY_KINDS = frozenset({
    "module.lua", "function.lua.bc", "library.lua.bc", "process.lua.bc", "workflow.lua.bc", "function.wat",
    "function.wasm", "process.wasm", "http.service", "http.router", "http.endpoint", "http.static",
    "db.sql.sqlite", "db.sql.postgres", "db.sql.mysql", "store.memory", "store.sql", "store.kv.raft",
    "store.kv.crdt", "queue.driver.memory", "queue.driver.amqp", "queue.driver.sqs", "queue.queue",
    "queue.consumer", "terminal.host", "config.aws", "cloudstorage.s3", "fs.directory", "fs.embed",
    "env.storage.memory", "env.storage.file", "env.storage.os", "env.storage.static", "env.storage.router",
    "env.variable", "template.jet", "template.set", "security.policy", "security.policy.expr",
    "security.token_store", "contract.definition", "contract.binding", "exec.native", "exec.docker", "network",
    "network.socks5", "network.i2p", "network.tailscale", "registry.entry", "ns.definition", "ns.requirement",
    "ns.dependency",
})

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
