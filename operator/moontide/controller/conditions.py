"""Kubernetes-style status conditions and Events (as the API objects, no I/O), and a Deployment's availability."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EntryProblem
from ..k8s.kinds import ANNOTATION_BUNDLE_HASH, ANNOTATION_CONFIG_HASH

__all__ = ["TRANSIENT", "Availability", "availability", "condition", "describe_problems", "event", "now",
           "set_condition"]


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


#: Container waiting reasons that only mean "still starting".
_STARTING = frozenset({"ContainerCreating", "PodInitializing"})
#: Ready=False reasons that are a normal step, not a failure (their Events are Normal, not Warning).
TRANSIENT = frozenset({"Starting", "Progressing", "ScaledToZero"})


@dataclass(frozen=True)
class Availability:
    """Whether a worker or service Deployment serves, and if not, the pod-level reason why."""

    available: int
    desired: int
    reason: str
    message: str
    #: ProcessService status: restarts of its container and its last termination message or reason.
    restarts: int = 0
    last_error: str = ""

    @property
    def ok(self) -> bool:
        return self.available >= 1


def _container_problem(pod_name: str, cs: Mapping[str, Any]) -> tuple[str, str] | None:
    """(reason, message) when a container is failing (waiting for a bad reason, or terminated)."""
    state = cs.get("state") or {}
    last = (cs.get("lastState") or {}).get("terminated") or {}
    waiting = state.get("waiting") or {}
    terminated = state.get("terminated") or {}
    where = f"pod {pod_name}, container {cs.get('name')}"
    if waiting.get("reason") and waiting["reason"] not in _STARTING:
        text = f"{where}: {waiting['reason']}"
        if waiting.get("message"):
            text += f": {waiting['message']}"
        if last:
            text += f" (last exit: {_terminated(last)})"
        return str(waiting["reason"]), text
    if terminated:
        return str(terminated.get("reason") or "Terminated"), f"{where}: {_terminated(terminated)}"
    return None


def _terminated(t: Mapping[str, Any]) -> str:
    text = f"{t.get('reason') or 'Terminated'}, exit code {t.get('exitCode')}"
    if t.get("message"):
        text += f": {str(t['message']).strip()[:500]}"
    return text


def availability(deployment: Mapping[str, Any] | None, pods: Sequence[Mapping[str, Any]] = ()) -> Availability:
    """Ready or not, from a Deployment's status and (when none is available) its pods.

    The reason, most telling first: the ReplicaSet cannot create pods (``FailedCreate``: a missing service
    account, a quota), a container failing (``CrashLoopBackOff``, ``ImagePullBackOff``, ``ErrImageNeverPull``,
    ``CreateContainerConfigError``, ``OOMKilled``...), a pod that cannot be scheduled (``Unschedulable``), the
    rollout's deadline passed (``ProgressDeadlineExceeded``), else ``Starting`` (pods exist) or
    ``Progressing`` (none yet). Pods of the Deployment's current template (the hash annotation that rolls
    them: a worker's config hash, a service's bundle hash) are looked at first.
    """
    dep = deployment or {}
    spec, status = dep.get("spec") or {}, dep.get("status") or {}
    desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    available = int(status.get("availableReplicas") or 0)
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    template = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    marks = {k: template[k] for k in (ANNOTATION_CONFIG_HASH, ANNOTATION_BUNDLE_HASH) if k in template}
    current = [p for p in live if marks and all(((p.get("metadata") or {}).get("annotations") or {}).get(k) == v
                                                for k, v in marks.items())]
    look = current or live
    restarts, last_error = 0, ""
    for pod in look:
        for cs in (pod.get("status") or {}).get("containerStatuses") or ():
            restarts += int(cs.get("restartCount") or 0)
            term = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated") or {}
            if term:
                last_error = str(term.get("message") or term.get("reason") or last_error).strip()
    counts = f"{available}/{desired} pods available"
    if available >= 1:
        return Availability(available, desired, "Available", counts, restarts, last_error)
    if desired == 0:
        return Availability(0, 0, "ScaledToZero", "replicas: 0, no pod runs", restarts, last_error)
    conds = {c.get("type"): c for c in status.get("conditions") or ()}
    failure = conds.get("ReplicaFailure") or {}
    if failure.get("status") == "True":
        return Availability(available, desired, str(failure.get("reason") or "ReplicaFailure"),
                            f"{counts}: {failure.get('message') or 'pods cannot be created'}", restarts, last_error)
    unschedulable: tuple[str, str] | None = None
    for pod in look:
        name = (pod.get("metadata") or {}).get("name", "?")
        pstatus = pod.get("status") or {}
        for cs in [*(pstatus.get("initContainerStatuses") or ()), *(pstatus.get("containerStatuses") or ())]:
            problem = _container_problem(name, cs)
            if problem:
                return Availability(available, desired, problem[0], f"{counts}: {problem[1]}", restarts, last_error)
        for pc in pstatus.get("conditions") or ():
            if pc.get("type") == "PodScheduled" and pc.get("status") == "False" and unschedulable is None:
                unschedulable = (str(pc.get("reason") or "Unschedulable"),
                                 f"pod {name}: {pc.get('message') or 'cannot be scheduled'}")
        if pstatus.get("phase") == "Failed":
            return Availability(available, desired, str(pstatus.get("reason") or "PodFailed"),
                                f"{counts}: pod {name}: {pstatus.get('message') or 'failed'}", restarts, last_error)
    if unschedulable:
        return Availability(available, desired, unschedulable[0], f"{counts}: {unschedulable[1]}", restarts,
                            last_error)
    progressing = conds.get("Progressing") or {}
    if progressing.get("status") == "False":
        return Availability(available, desired, str(progressing.get("reason") or "ProgressDeadlineExceeded"),
                            f"{counts}: {progressing.get('message') or 'the rollout is stuck'}", restarts, last_error)
    if look:
        pod = look[0]
        name = (pod.get("metadata") or {}).get("name", "?")
        waiting = [f"{cs.get('name')} {((cs.get('state') or {}).get('waiting') or {}).get('reason') or 'not ready'}"
                   for cs in (pod.get("status") or {}).get("containerStatuses") or ()]
        detail = ", ".join(waiting) or (pod.get("status") or {}).get("phase") or "Pending"
        return Availability(available, desired, "Starting", f"{counts}: pod {name} starting ({detail})", restarts,
                            last_error)
    return Availability(available, desired, "Progressing", f"{counts}: waiting for pods to be created", restarts,
                        last_error)
