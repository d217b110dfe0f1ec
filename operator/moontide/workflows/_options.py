"""Options from Lua in Wippy's names, as Temporal arguments: activities (``funcs.new():with_options``)
and workflow starts (``process.with_options``).

Names are Wippy's (en/temporal/activities.md, workflows.md): ``activity.start_to_close_timeout``,
``workflow.id``, ...; its legacy ``temporal.activity.*`` / ``temporal.workflow.*`` aliases and
Moontide's earlier bare names (``start_to_close_timeout``, ``workflow_id``) mean the same. A
duration is a string (``"5s"``, ``"1h30m"``) or a number of milliseconds. An option that does
not apply to this kind of start (``workflow.parent_close_policy`` for a top-level workflow,
``workflow.start_delay`` for a child) has no effect, as in Wippy; an unknown name or a bad value
is ``Invalid``, naming the option.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.common import (AutoUpgradeVersioningOverride, PinnedVersioningOverride, Priority, RetryPolicy,
                               VersioningOverride, WorkerDeploymentVersion, WorkflowIDReusePolicy)
from temporalio.workflow import ActivityCancellationType, ChildWorkflowCancellationType, ParentClosePolicy, VersioningIntent

from .. import durations, errors
from ._search import declared, typed

__all__ = ["ActivityDefaults", "SpawnOptions", "activity_options", "retry_policy", "spawn_options"]

#: Wippy's workflow start options (``workflow.<name>``).
WORKFLOW_OPTIONS = (
    "id", "task_queue", "execution_timeout", "run_timeout", "task_timeout", "id_conflict_policy", "id_reuse_policy",
    "execution_error_when_already_started", "retry_policy", "cron_schedule", "memo", "search_attributes",
    "enable_eager_start", "start_delay", "summary", "details", "versioning_override", "priority",
    "parent_close_policy", "wait_for_cancellation", "namespace", "versioning_intent", "name")
#: Wippy's activity options (``activity.<name>``).
ACTIVITY_OPTIONS = (
    "id", "task_queue", "start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout",
    "heartbeat_timeout", "wait_for_cancellation", "disable_eager_execution", "retry_policy", "versioning_intent",
    "summary", "priority", "name")
#: Other spellings of the same option: Wippy's legacy ones, then Moontide's earlier bare names.
_ALIASES = {
    "workflow": {"temporal.workflow.typed_search_attributes": "search_attributes",
                 "temporal.workflow.static_summary": "summary", "temporal.workflow.static_details": "details",
                 "workflow_id": "id", **{n: n for n in ("id_reuse_policy", "id_conflict_policy", "execution_timeout",
                                                       "run_timeout", "task_timeout", "retry_policy", "memo",
                                                       "search_attributes", "parent_close_policy")}},
    "activity": {n: n for n in ("start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout",
                                "heartbeat_timeout", "retry_policy", "task_queue")},
}
_RETRY_FIELDS = ("initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts",
                 "non_retryable_error_types")
_REUSE = {
    "allow_duplicate": WorkflowIDReusePolicy.ALLOW_DUPLICATE,
    "allow_duplicate_failed_only": WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
    "reject_duplicate": WorkflowIDReusePolicy.REJECT_DUPLICATE,
    "terminate_if_running": WorkflowIDReusePolicy.TERMINATE_IF_RUNNING,
}
#: id_conflict_policy values; children have no such Temporal option, spawn emulates it (_spawn).
CONFLICT_POLICIES = ("use_existing", "fail", "terminate_existing")
_CLOSE = {"terminate": ParentClosePolicy.TERMINATE, "request_cancel": ParentClosePolicy.REQUEST_CANCEL,
          "abandon": ParentClosePolicy.ABANDON}
_INTENT = {"compatible": VersioningIntent.COMPATIBLE, "inherit_build_id": VersioningIntent.COMPATIBLE,
           "inherit": VersioningIntent.COMPATIBLE, "unspecified": VersioningIntent.COMPATIBLE,
           "default": VersioningIntent.DEFAULT, "use_assignment_rules": VersioningIntent.DEFAULT,
           "assignment_rules": VersioningIntent.DEFAULT}


@dataclass(frozen=True)
class ActivityDefaults:
    """What ``funcs.call`` uses when Lua sets no option."""

    start_to_close_timeout: timedelta = timedelta(seconds=60)
    """Longest one attempt may run (60s). A killed worker's attempt is retried after it."""
    retry_policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30), maximum_attempts=5))
    """Bounded by default (5 attempts), so a failing function returns an error to the workflow."""


def _named(opts: Any, kind: str) -> dict[str, tuple[str, Any]]:
    """{option: (the key as written, value)}: Wippy's name first, then its aliases."""
    if not isinstance(opts, dict):
        raise errors.Invalid(f"options: expected a table of named options, like {{[\"{kind}.id\"] = \"x\"}}")
    known = WORKFLOW_OPTIONS if kind == "workflow" else ACTIVITY_OPTIONS
    aliases = _ALIASES[kind]
    out: dict[str, tuple[str, Any]] = {}
    for key in sorted(opts, key=lambda k: (not str(k).startswith(kind + "."), str(k))):  # Wippy's name wins
        k = str(key)
        name = (k[len(kind) + 1:] if k.startswith(kind + ".") else
                k[len(kind) + 10:] if k.startswith(f"temporal.{kind}.") else None)
        if name not in known:
            name = aliases.get(k)
        if name is None:
            raise errors.Invalid(f"unknown {'spawn' if kind == 'workflow' else kind} option {k!r} (Wippy's {kind} options: "
                                 f"{', '.join(f'{kind}.{n}' for n in known)})")
        out.setdefault(name, (k, opts[key]))
    return out


def _duration(value: Any, key: str) -> timedelta:
    """A duration option: a Go-style string, or a number of milliseconds (Wippy's rule)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise errors.Invalid(f"option {key}: a duration cannot be negative, got {value}")
        return timedelta(milliseconds=value)
    try:
        return durations.to_timedelta(value)
    except errors.Invalid as e:
        raise errors.Invalid(f"option {key}: {e.message} (or a number of milliseconds)") from None


def _number(value: Any, key: str, kind: type) -> Any:
    # A wrong type must come back to Lua as Invalid: a ValueError here would
    # fail the workflow task on every retry instead.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise errors.Invalid(f"option {key}: expected {'an integer' if kind is int else 'a number'}, "
                             f"got {json.dumps(value)}")
    return kind(value)


def _string(value: Any, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise errors.Invalid(f"option {key}: expected a non-empty string, got {json.dumps(value)}")
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise errors.Invalid(f"option {key}: expected true or false, got {json.dumps(value)}")
    return value


def _table(value: Any, key: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise errors.Invalid(f"option {key}: expected a table of fields")
    return value


def _fields(spec: dict[str, Any], names: tuple[str, ...], key: str) -> dict[str, Any]:
    """Fields of a table option by name, also camelCase or any case (as Wippy reads them)."""
    squash = {n.replace("_", ""): n for n in names}
    out: dict[str, Any] = {}
    for k, v in spec.items():
        name = squash.get(str(k).replace("_", "").lower())
        if name is None:
            raise errors.Invalid(f"option {key}: unknown field {str(k)!r} (known: {', '.join(names)})")
        out[name] = v
    return out


def _choice(table: dict[str, Any], value: Any, key: str, prefix: str = "") -> Any:
    text = str(value).strip().lower().replace("-", "_")
    text = text[len(prefix):] if prefix and text.startswith(prefix) else text
    if not isinstance(value, str) or text not in table:
        raise errors.Invalid(f"option {key}: {json.dumps(value)} is not one of {', '.join(table)}")
    return table[text]


def retry_policy(spec: Any, base: RetryPolicy, key: str = "retry_policy") -> RetryPolicy:
    """A retry policy table; fields left out keep ``base``'s."""
    fields = _fields(_table(spec, key), _RETRY_FIELDS, key)
    kw: dict[str, Any] = {
        "initial_interval": base.initial_interval, "backoff_coefficient": base.backoff_coefficient,
        "maximum_interval": base.maximum_interval, "maximum_attempts": base.maximum_attempts,
        "non_retryable_error_types": base.non_retryable_error_types,
    }
    for k in ("initial_interval", "maximum_interval"):
        if k in fields:
            kw[k] = _duration(fields[k], f"{key}.{k}")
    if "maximum_interval" not in fields and kw["maximum_interval"] and kw["maximum_interval"] < kw["initial_interval"]:
        kw["maximum_interval"] = kw["initial_interval"]  # the default cap must not refuse a longer interval
    if "backoff_coefficient" in fields:
        kw["backoff_coefficient"] = _number(fields["backoff_coefficient"], f"{key}.backoff_coefficient", float)
    if "maximum_attempts" in fields:
        kw["maximum_attempts"] = _number(fields["maximum_attempts"], f"{key}.maximum_attempts", int)
    if "non_retryable_error_types" in fields:
        types = fields["non_retryable_error_types"]
        types = [types] if isinstance(types, str) else types
        if not isinstance(types, list) or not all(isinstance(x, str) for x in types):
            raise errors.Invalid(f"option {key}.non_retryable_error_types: expected a list of error kinds")
        kw["non_retryable_error_types"] = types
    policy = RetryPolicy(**kw)
    try:  # the SDK validates only when it sends the command, failing the workflow task
        policy.apply_to_proto(RetryPolicyProto())
    except ValueError as e:
        raise errors.Invalid(f"option {key}: {e}") from None
    return policy


def _priority(spec: Any, key: str) -> Priority:
    fields = _fields(_table(spec, key), ("priority_key", "fairness_key", "fairness_weight"), key)
    return Priority(
        priority_key=_number(fields["priority_key"], f"{key}.priority_key", int) if "priority_key" in fields else None,
        fairness_key=_string(fields["fairness_key"], f"{key}.fairness_key") if "fairness_key" in fields else None,
        fairness_weight=(_number(fields["fairness_weight"], f"{key}.fairness_weight", float)
                         if "fairness_weight" in fields else None))


def _versioning_override(spec: Any, key: str) -> VersioningOverride:
    if isinstance(spec, str) and spec.strip().lower().replace("-", "_") == "auto_upgrade":
        return AutoUpgradeVersioningOverride()
    table = _table(spec, key)
    mode = str(table.get("mode", "")).strip().lower().replace("-", "_")
    if mode == "auto_upgrade":
        return AutoUpgradeVersioningOverride()
    if mode != "pinned":
        raise errors.Invalid(f"option {key}: \"auto_upgrade\", or a table with mode = \"pinned\" and version = "
                             "{deployment_name =, build_id =}")
    version = _table(table.get("version", table), f"{key}.version")
    return PinnedVersioningOverride(WorkerDeploymentVersion(
        deployment_name=_string(version.get("deployment_name"), f"{key}.version.deployment_name"),
        build_id=_string(version.get("build_id"), f"{key}.version.build_id")))


def activity_options(opts_json: str | None, defaults: ActivityDefaults, *, local: str | None = None,
                     ) -> tuple[str | None, dict[str, Any]]:
    """(activity type override or None, keyword arguments for ``workflow.execute_activity`` or, for
    ``local`` (the function ID of a local activity), ``execute_local_activity``); raises errors.Invalid."""
    kw: dict[str, Any] = {"start_to_close_timeout": defaults.start_to_close_timeout,
                          "retry_policy": defaults.retry_policy}
    if not opts_json:
        return None, kw
    named = _named(json.loads(opts_json), "activity")
    if local:
        for name in ("task_queue", "heartbeat_timeout"):
            if name in named:
                raise errors.Invalid(f"option {named[name][0]}: {local} is a local activity (meta.temporal.activity."
                                     "local), run in the workflow's own worker, which has no such option")
    for name, (key, value) in named.items():
        if name.endswith("_timeout"):
            kw[name] = _duration(value, key)
            if not kw[name]:
                raise errors.Invalid(f"option {key}: must be longer than 0")
        elif name == "retry_policy":
            kw[name] = retry_policy(value, defaults.retry_policy, key)
        elif name == "task_queue":
            kw[name] = _string(value, key)
        elif name == "id":
            kw["activity_id"] = _string(value, key)
        elif name == "summary":
            kw["summary"] = _string(value, key)
        elif name == "wait_for_cancellation":
            if _bool(value, key):
                kw["cancellation_type"] = ActivityCancellationType.WAIT_CANCELLATION_COMPLETED
        elif local:
            continue  # priority, versioning, eager execution: a local activity has none (as in Wippy: no effect)
        elif name == "priority":
            kw["priority"] = _priority(value, key)
        elif name == "versioning_intent":
            kw["versioning_intent"] = _choice(_INTENT, value, key)
        elif name == "disable_eager_execution":
            _bool(value, key)  # the Python SDK never executes activities eagerly: nothing to disable
    if "schedule_to_close_timeout" in named and "start_to_close_timeout" not in named:
        del kw["start_to_close_timeout"]
    override = named.get("name")
    return (_string(override[1], override[0]) if override else None), kw


@dataclass
class SpawnOptions:
    """A workflow start, read from Lua's options (``spawn_options``)."""

    workflow_id: str | None
    """The explicit workflow ID (``workflow.id``, else the spawner's ``with_name``), None: generated."""
    conflict: str
    """What a start of a running ID does: ``use_existing`` (the default for an explicit ID: the
    running one's pid), ``fail`` (AlreadyExists; the default for a generated ID) or ``terminate_existing``."""
    kw: dict[str, Any]
    """Keyword arguments for ``Client.start_workflow`` or ``workflow.start_child_workflow``."""
    task_queue: str | None = None
    workflow_type: str | None = None
    namespace: str | None = None
    eager: bool | None = None


def spawn_options(opts: dict[str, Any], *, child: bool, app: Any, client_id: str,
                  name: str | None = None) -> SpawnOptions:
    """Read ``process.with_options{...}`` (and ``:with_name``) for a start of a workflow.

    ``client_id``: the temporal.client of the worker that will run the workflow; its
    ``search_attributes`` field types the search attributes.
    """
    named = _named(opts, "workflow")
    kw: dict[str, Any] = {}
    out = SpawnOptions(workflow_id=None, conflict="fail", kw=kw)
    for option, (key, value) in named.items():
        if option in ("execution_timeout", "run_timeout", "task_timeout"):
            kw[option] = _duration(value, key)
        elif option == "id":
            out.workflow_id = _string(value, key)
        elif option == "task_queue":
            out.task_queue = _string(value, key)
        elif option == "id_reuse_policy":
            kw["id_reuse_policy"] = _choice(_REUSE, value, key, "workflow_id_reuse_policy_")
        elif option == "id_conflict_policy":
            out.conflict = _choice({p: p for p in CONFLICT_POLICIES}, value, key, "workflow_id_conflict_policy_")
        elif option == "execution_error_when_already_started":
            _bool(value, key)
        elif option == "retry_policy":
            kw["retry_policy"] = retry_policy(value, ActivityDefaults().retry_policy, key)
        elif option == "cron_schedule":
            kw["cron_schedule"] = _string(value, key)
        elif option == "memo":
            kw["memo"] = dict(_table(value, key))
        elif option == "search_attributes":
            kw["search_attributes"] = typed(value, declared(app, client_id), where=f"option {key}",
                                            client_id=client_id)
        elif option == "summary":
            kw["static_summary"] = _string(value, key)
        elif option == "details":
            kw["static_details"] = _string(value, key)
        elif option == "priority":
            kw["priority"] = _priority(value, key)
        elif option == "versioning_override":
            kw["versioning_override"] = _versioning_override(value, key)
        elif option == "namespace":
            out.namespace = _string(value, key)
        elif option == "name":
            out.workflow_type = _string(value, key)
        elif option == "enable_eager_start":
            out.eager = _bool(value, key) if not child else None
        elif option == "start_delay":
            delay = _duration(value, key)
            if not child:  # a child starts when its parent says so: no effect there
                kw["start_delay"] = delay
        elif option == "parent_close_policy":
            policy = _choice(_CLOSE, value, key, "parent_close_policy_")
            if child:  # a top-level workflow has no parent: no effect there
                kw["parent_close_policy"] = policy
        elif option == "wait_for_cancellation":
            if _bool(value, key) and child:
                kw["cancellation_type"] = ChildWorkflowCancellationType.WAIT_CANCELLATION_COMPLETED
        elif option == "versioning_intent":
            intent = _choice(_INTENT, value, key)
            if child:
                kw["versioning_intent"] = intent
    out.workflow_id = out.workflow_id or name
    if "id_conflict_policy" not in named:
        # Wippy's defaults: a named or explicit ID is a singleton (a second spawn answers the
        # running one's pid), a generated one a fresh run; execution_error_when_already_started
        # = true asks for the error instead
        error = named.get("execution_error_when_already_started", (None, out.workflow_id is None))[1]
        out.conflict = "fail" if error else "use_existing"
    return out
