"""``moontide operator-cleanup``: what ``helm uninstall`` runs first (the chart's pre-delete hook Job).

In this order:

1. Stop the operator (its Deployment scaled to 0, then wait until its pods are gone), so nothing
   recreates what follows.
2. Delete the worker and service Deployments the operator made (label
   ``app.kubernetes.io/managed-by=moontide-operator``) in the namespaces it watched: no Moontide pod runs
   after an uninstall.
3. Remove the operator's finalizer (``moontide.io/finalizer``) from every Workflow there, so that deleting
   a Workflow or its namespace never waits for an operator that is gone. Their executions are left as they
   are (the deletion policy is the operator's to apply: delete Workflows before uninstalling for it).
4. Delete the leader-election Lease.

It leaves the custom resources and their CRDs (your data; Helm never deletes CRDs), the Temporal
executions, and the bundle and code ConfigMaps and the worker ServiceAccount: those are owned by the
TemporalWorker and ProcessService CRs that stay, so the garbage collector deletes them with the CRs, and
the code history lets executions started before the uninstall replay on the workers of a new install.
Every step is idempotent: running it twice, or on a half-removed install, is safe.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightkube.resources.apps_v1 import Deployment
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Pod

from ..k8s.kinds import GROUP, LABEL_MANAGED_BY, MANAGED_BY, WORKFLOW
from ..k8s.kube import Conflict, Kube, NotFound, custom_resource

__all__ = ["FINALIZER", "Report", "cleanup"]

log = logging.getLogger("moontide.cleanup")

#: Kopf's finalizer on Workflow CRs (handlers.settings sets it).
FINALIZER = f"{GROUP}/finalizer"
_MANAGED = {LABEL_MANAGED_BY: MANAGED_BY}


@dataclass
class Report:
    """What one cleanup did."""

    operator_stopped: bool = False
    deployments: list[str] = field(default_factory=list)
    finalizers_removed: list[str] = field(default_factory=list)
    lease_deleted: bool = False

    def lines(self) -> list[str]:
        return [
            "operator stopped" if self.operator_stopped else "no operator to stop",
            f"deleted {len(self.deployments)} worker/service Deployments: {', '.join(self.deployments) or '-'}",
            f"removed the finalizer of {len(self.finalizers_removed)} Workflows: "
            f"{', '.join(self.finalizers_removed) or '-'}",
            "deleted the leader-election Lease" if self.lease_deleted else "no Lease to delete",
        ]


def _scopes(namespaces: Sequence[str], clusterwide: bool) -> list[str | None]:
    return [None] if clusterwide else list(dict.fromkeys(namespaces))


def _ref(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace')}/{meta['name']}"


async def stop_operator(kube: Kube, namespace: str, name: str, *, timeout: float, poll: float = 1.0) -> bool:
    """Scale the operator's Deployment to 0 and wait until its pods are gone; False when there is none."""
    try:
        deployment = await kube.merge_patch(Deployment, name, {"spec": {"replicas": 0}}, namespace=namespace)
    except NotFound:
        return False
    labels = ((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return True
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        pods = await kube.list(Pod, namespace, labels=labels)
        if not pods:
            return True
        if loop.time() >= deadline:
            log.warning("the operator's pods are still there after %.0fs (%s): going on", timeout,
                        ", ".join(p["metadata"]["name"] for p in pods))
            return True
        await asyncio.sleep(poll)


async def delete_deployments(kube: Kube, scopes: Sequence[str | None]) -> list[str]:
    """Delete the worker and service Deployments the operator made (their ReplicaSets and pods follow)."""
    gone = []
    for ns in scopes:
        for dep in await kube.list(Deployment, ns, labels=_MANAGED):
            meta = dep["metadata"]
            await kube.delete(Deployment, meta["name"], namespace=meta["namespace"])
            gone.append(_ref(dep))
    return gone


async def remove_finalizers(kube: Kube, scopes: Sequence[str | None]) -> list[str]:
    """Take ``moontide.io/finalizer`` off every Workflow (resourceVersion-checked; retried on a conflict)."""
    done = []
    workflow = custom_resource(WORKFLOW)
    for ns in scopes:
        for wf in await kube.list(workflow, ns):
            meta = wf["metadata"]
            name, namespace = meta["name"], meta["namespace"]
            for _ in range(5):
                finalizers = list(meta.get("finalizers") or [])
                if FINALIZER not in finalizers:
                    break
                patch = {"metadata": {"finalizers": [f for f in finalizers if f != FINALIZER] or None,
                                      "resourceVersion": meta.get("resourceVersion")}}
                try:
                    await kube.merge_patch(workflow, name, patch, namespace=namespace)
                    done.append(_ref(wf))
                    break
                except NotFound:
                    break
                except Conflict:
                    fresh = await kube.get_or_none(workflow, name, namespace=namespace)
                    if fresh is None:
                        break
                    meta = fresh["metadata"]
    return done


async def cleanup(kube: Kube, *, namespaces: Sequence[str] = (), clusterwide: bool = False,
                  operator_deployment: str = "", operator_namespace: str = "", lease_name: str = "",
                  timeout: float = 120.0) -> Report:
    """Stop the operator, delete what runs, free the Workflows (see the module's docstring)."""
    report = Report()
    if operator_deployment:
        report.operator_stopped = await stop_operator(kube, operator_namespace, operator_deployment,
                                                      timeout=timeout)
    scopes = _scopes(namespaces, clusterwide)
    report.deployments = await delete_deployments(kube, scopes)
    report.finalizers_removed = await remove_finalizers(kube, scopes)
    if lease_name:
        report.lease_deleted = await kube.delete(Lease, lease_name, namespace=operator_namespace)
    return report
