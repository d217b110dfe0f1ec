"""Kubernetes-style status conditions and Events (as the API objects, no I/O)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import EntryProblem

__all__ = ["condition", "describe_problems", "event", "now", "set_condition"]


def now() -> str:
    """UTC now as Kubernetes writes times (RFC 3339, seconds)."""
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def condition(type_: str, status: bool | None, reason: str, message: str, generation: int | None,
              previous: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """A condition; keeps the previous lastTransitionTime when the status did not change."""
    text = "Unknown" if status is None else "True" if status else "False"
    cond: dict[str, Any] = {"type": type_, "status": text, "reason": reason, "message": message[:4000]}
    if generation is not None:
        cond["observedGeneration"] = generation
    old = next((c for c in previous or () if c.get("type") == type_), None)
    cond["lastTransitionTime"] = old["lastTransitionTime"] if old and old.get("status") == text and \
        old.get("lastTransitionTime") else now()
    return cond


def set_condition(conditions: Sequence[Mapping[str, Any]] | None, new: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``conditions`` with ``new`` replacing the one of its type (order kept, new types appended)."""
    out = [dict(c) for c in conditions or () if c.get("type") != new["type"]]
    out.append(dict(new))
    return sorted(out, key=lambda c: c["type"])


def describe_problems(problems: Sequence[EntryProblem], limit: int = 5) -> str:
    """Problems of one CR, as one line each without the CR's own name: 'field source, line 3: ...'."""
    lines = []
    for p in problems[:limit]:
        where = []
        if p.field:
            where.append(f"field {p.field}")
        if p.line:
            where.append(f"line {p.line}")
        lines.append(f"{', '.join(where)}: {p.message}" if where else p.message)
    if len(problems) > limit:
        lines.append(f"... and {len(problems) - limit} more")
    return "; ".join(lines)


def event(obj: Mapping[str, Any], *, reason: str, message: str, warning: bool = False,
          component: str = "moontide-operator") -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (a full object with apiVersion, kind, metadata)."""
    meta = obj["metadata"]
    stamp = now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": obj.get("apiVersion"), "kind": obj.get("kind"), "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "reason": reason,
        "message": message[:1000],
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
