"""Activity options from Lua (``funcs.new():with_options{...}``) as Temporal arguments."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.common import RetryPolicy

from .. import durations, errors

__all__ = ["ActivityDefaults", "activity_options"]

_TIMEOUTS = ("start_to_close_timeout", "schedule_to_close_timeout", "schedule_to_start_timeout", "heartbeat_timeout")
_RETRY_FIELDS = {"initial_interval", "backoff_coefficient", "maximum_interval", "maximum_attempts", "non_retryable_error_types"}


@dataclass(frozen=True)
class ActivityDefaults:
    """What ``funcs.call`` uses when Lua sets no option."""

    start_to_close_timeout: timedelta = timedelta(seconds=60)
    """Longest one attempt may run (60s). A killed worker's attempt is retried after it."""
    retry_policy: RetryPolicy = field(default_factory=lambda: RetryPolicy(
        initial_interval=timedelta(seconds=1), backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=30), maximum_attempts=5))
    """Bounded by default (5 attempts), so a failing function returns an error to the workflow."""


def _duration(value: Any, name: str) -> timedelta:
    try:
        return durations.to_timedelta(value)
    except errors.Invalid as e:
        raise errors.Invalid(f"option {name}: {e.message}") from None


def _retry(spec: Any, base: RetryPolicy) -> RetryPolicy:
    if not isinstance(spec, dict):
        raise errors.Invalid("option retry_policy: expected a table")
    unknown = set(spec) - _RETRY_FIELDS
    if unknown:
        raise errors.Invalid(f"option retry_policy: unknown field {sorted(unknown)[0]!r} (known: {', '.join(sorted(_RETRY_FIELDS))})")
    kw: dict[str, Any] = {
        "initial_interval": base.initial_interval, "backoff_coefficient": base.backoff_coefficient,
        "maximum_interval": base.maximum_interval, "maximum_attempts": base.maximum_attempts,
        "non_retryable_error_types": base.non_retryable_error_types,
    }
    for k in ("initial_interval", "maximum_interval"):
        if k in spec:
            kw[k] = _duration(spec[k], f"retry_policy.{k}")
    if "maximum_interval" not in spec and kw["maximum_interval"] < kw["initial_interval"]:
        kw["maximum_interval"] = kw["initial_interval"]  # the default cap must not refuse a longer interval
    if "backoff_coefficient" in spec:
        kw["backoff_coefficient"] = _number(spec["backoff_coefficient"], "backoff_coefficient", float)
    if "maximum_attempts" in spec:
        kw["maximum_attempts"] = _number(spec["maximum_attempts"], "maximum_attempts", int)
    if "non_retryable_error_types" in spec:
        types = spec["non_retryable_error_types"]
        if not isinstance(types, list) or not all(isinstance(x, str) for x in types):
            raise errors.Invalid("option retry_policy.non_retryable_error_types: expected a list of error kinds")
        kw["non_retryable_error_types"] = types
    policy = RetryPolicy(**kw)
    try:  # the SDK validates only when it sends the command, failing the workflow task
        policy.apply_to_proto(RetryPolicyProto())
    except ValueError as e:
        raise errors.Invalid(f"option retry_policy: {e}") from None
    return policy


def _number(value: Any, name: str, kind: type) -> Any:
    # A wrong type must come back to Lua as Invalid: a ValueError here would
    # fail the workflow task on every retry instead.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise errors.Invalid(f"option retry_policy.{name}: expected {'an integer' if kind is int else 'a number'}, "
                             f"got {json.dumps(value)}")
    return kind(value)


def activity_options(opts_json: str | None, defaults: ActivityDefaults) -> dict[str, Any]:
    """Keyword arguments for ``workflow.execute_activity``; raises errors.Invalid on a bad option."""
    kw: dict[str, Any] = {"start_to_close_timeout": defaults.start_to_close_timeout, "retry_policy": defaults.retry_policy}
    if not opts_json:
        return kw
    spec = json.loads(opts_json)
    if not isinstance(spec, dict):
        raise errors.Invalid("options: expected a table of named options, like {start_to_close_timeout = \"10s\"}")
    for key, value in spec.items():
        if key in _TIMEOUTS:
            kw[key] = _duration(value, key)
            if not kw[key]:
                raise errors.Invalid(f"option {key}: must be longer than 0")
        elif key == "retry_policy":
            kw[key] = _retry(value, defaults.retry_policy)
        elif key == "task_queue":
            kw[key] = str(value)
        else:
            known = ", ".join((*_TIMEOUTS, "retry_policy", "task_queue"))
            raise errors.Invalid(f"unknown option {key!r} (known: {known})")
    if "schedule_to_close_timeout" in spec and "start_to_close_timeout" not in spec:
        del kw["start_to_close_timeout"]
    return kw
