"""``helm uninstall`` (after test_operator.py: it ends the session's release).

What the uninstall removes (the chart's pre-delete hook, then Helm): the
operator, stopped first; the worker and service Deployments it made, so their
pods stop; the Workflow finalizers, so nothing waits for an operator that is
gone; and everything of the chart. What it leaves, as the chart's README says:
the CRDs, the custom resources (the apps' entries and Workflows) and the
ConfigMaps they own, which go with their namespace (or with the CRDs:
``kubectl delete crd -l app.kubernetes.io/part-of=moontide``), and the
executions in Temporal.
"""

from __future__ import annotations

from conftest import Apps, phase, workflow
from k8s import Release, eventually

MANAGED = "app.kubernetes.io/managed-by=moontide-operator"
FINALIZER = "moontide.io/finalizer"


def test_helm_uninstall_removes_the_workers_and_the_app_namespaces_then_delete(release: Release,
                                                                               workers: Apps) -> None:
    cluster, ns = release.cluster, release.signals_ns
    # A Workflow still running (it waits for a signal that never comes): its CR holds the finalizer.
    cluster.apply(ns, [workflow("left-running", "e2e:collect", "e2e:worker", 1)])
    cr = phase(cluster, ns, "left-running", "Running")
    assert FINALIZER in cr["metadata"].get("finalizers", [])
    assert cluster.list("deployments", ns, MANAGED)

    release.uninstalled = True
    cluster.helm("uninstall", release.name, "-n", release.namespace, "--wait", "--timeout", "180s")

    assert cluster.get("deployments", release.fullname, release.namespace) is None
    eventually(lambda: not release.operator_pods(), timeout=120, what="the operator pods to be gone")
    for app_ns in release.app_namespaces:
        eventually(lambda app_ns=app_ns: not cluster.list("deployments", app_ns, MANAGED), timeout=120,
                   what=f"the worker and service Deployments in {app_ns} to be gone")
        eventually(lambda app_ns=app_ns: not cluster.list("pods", app_ns, MANAGED), timeout=180,
                   what=f"the worker and service pods in {app_ns} to be gone")
        for wf in cluster.list("workflows.moontide.io", app_ns):
            assert FINALIZER not in (wf["metadata"].get("finalizers") or []), wf["metadata"]["name"]
    # Left, as documented: the CRDs and the apps' custom resources.
    assert cluster.get("crd", "workflows.moontide.io") is not None
    assert cluster.get("workflows.moontide.io", "left-running", ns) is not None
    assert cluster.list("temporalworkers", ns)

    # Deleting the namespaces completes: no finalizer waits for an operator that is gone.
    namespaces = sorted({release.namespace, *release.app_namespaces})
    cluster.kubectl("delete", "namespace", *namespaces, "--timeout=180s", timeout=200)
    for name in namespaces:
        assert cluster.get("namespace", name) is None
