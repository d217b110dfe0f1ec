"""``moontide operator-cleanup`` (the chart's pre-delete hook): what it removes and what it leaves."""

from __future__ import annotations

from typing import Any

from _crs import small_app
from _fakekube import FakeKube

from moontide.controller import cleanup
from moontide.k8s.kinds import WORKFLOW
from moontide.k8s.kube import custom_resource
from moontide.k8s.config import OperatorConfig
from moontide.controller.operator_cmd import code_of
from moontide.controller.reconciler import Reconciler
from moontide.lua import check_syntax


def _workflow(name: str, ns: str = "ns", finalizers: list[str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": "7", "uid": f"uid-{name}",
                         "finalizers": finalizers if finalizers is not None else [cleanup.FINALIZER]},
            "spec": {"workflow": "app:wf", "worker": "app:worker"}}


async def _installed() -> FakeKube:
    """An app deployed by the operator in ns, its Workflows, the operator and its Lease in ops."""
    fake = FakeKube()
    for c in small_app():
        fake.put(c)
    rec = Reconciler(fake, OperatorConfig(worker_image="img", worker_service_account="moontide-worker",  # type: ignore[arg-type]
                                          create_worker_service_account=True), check_lua=check_syntax, code_of=code_of)
    await rec.reconcile("ns")
    fake.put(_workflow("running"))
    fake.put(_workflow("other-finalizer-too", finalizers=["example.com/keep", cleanup.FINALIZER]))
    fake.put(_workflow("elsewhere", ns="other"))
    fake.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "users-own", "namespace": "ns"}})
    fake.put({"apiVersion": "apps/v1", "kind": "Deployment",
              "metadata": {"name": "moontide", "namespace": "ops"},
              "spec": {"replicas": 1, "selector": {"matchLabels": {"app.kubernetes.io/component": "operator"}}}})
    fake.put({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "moontide",
                                                                                    "namespace": "ops"}})
    return fake


async def test_cleanup_stops_the_operator_deletes_what_runs_and_frees_workflows() -> None:
    fake = await _installed()
    worker = small_app()[1]["metadata"]["name"]
    assert f"/apis/apps/v1/namespaces/ns/deployments/{worker}" in fake.objects
    report = await cleanup.cleanup(fake, namespaces=["ns"], operator_deployment="moontide",  # type: ignore[arg-type]
                                   operator_namespace="ops", lease_name="moontide", timeout=0)
    assert fake.objects["/apis/apps/v1/namespaces/ops/deployments/moontide"]["spec"]["replicas"] == 0
    assert report.operator_stopped and report.lease_deleted
    assert report.deployments == [f"ns/{worker}"]
    assert f"/apis/apps/v1/namespaces/ns/deployments/{worker}" not in fake.objects
    wfs = "/apis/moontide.io/v1alpha1/namespaces/ns/workflows"
    assert "finalizers" not in fake.objects[f"{wfs}/running"]["metadata"]
    assert fake.objects[f"{wfs}/other-finalizer-too"]["metadata"]["finalizers"] == ["example.com/keep"]
    assert sorted(report.finalizers_removed) == ["ns/other-finalizer-too", "ns/running"]
    # another namespace is not this operator's: untouched
    other = "/apis/moontide.io/v1alpha1/namespaces/other/workflows/elsewhere"
    assert fake.objects[other]["metadata"]["finalizers"] == [cleanup.FINALIZER]
    # left: every CR, the ConfigMaps and the service account owned by the CRs that stay, the user's own
    for c in small_app():
        assert any(p.endswith(f"/{c['metadata']['name']}") and "moontide.io" in p for p in fake.objects)
    assert f"/api/v1/namespaces/ns/configmaps/{worker}-bundle" in fake.objects
    assert f"/api/v1/namespaces/ns/configmaps/{worker}-code" in fake.objects
    assert "/api/v1/namespaces/ns/serviceaccounts/moontide-worker" in fake.objects
    assert "/api/v1/namespaces/ns/configmaps/users-own" in fake.objects
    # twice is fine
    again = await cleanup.cleanup(fake, namespaces=["ns"], operator_deployment="moontide",  # type: ignore[arg-type]
                                  operator_namespace="ops", lease_name="moontide", timeout=0)
    assert again.deployments == [] and again.finalizers_removed == [] and not again.lease_deleted


async def test_all_namespaces_means_every_namespace() -> None:
    fake = await _installed()
    report = await cleanup.cleanup(fake, clusterwide=True)
    assert sorted(report.finalizers_removed) == ["ns/other-finalizer-too", "ns/running", "other/elsewhere"]
    assert [p for p in fake.objects if "/deployments/" in p] == ["/apis/apps/v1/namespaces/ops/deployments/moontide"]
    assert ("GET", "/apis/moontide.io/v1alpha1/workflows") in fake.requests  # one list across namespaces


async def test_a_conflicting_write_is_retried() -> None:
    fake = FakeKube()
    fake.put(_workflow("busy"))
    url = "/apis/moontide.io/v1alpha1/namespaces/ns/workflows/busy"
    workflows = custom_resource(WORKFLOW)
    listed = await fake.list(workflows, "ns")
    fake.put(fake.objects[url])  # Kopf wrote meanwhile: a new resourceVersion

    async def stale_list(res: Any, namespace: str | None, **_: Any) -> list[dict[str, Any]]:
        return listed if res is workflows else []

    fake.list = stale_list  # type: ignore[method-assign]
    assert await cleanup.remove_finalizers(fake, ["ns"]) == ["ns/busy"]  # type: ignore[arg-type]
    assert "finalizers" not in fake.objects[url]["metadata"]


def test_the_command_parses_what_the_chart_gives_it() -> None:
    import argparse

    from moontide import kubernetes_commands

    p = argparse.ArgumentParser()
    kubernetes_commands.register(p.add_subparsers(dest="command"))
    args = p.parse_args(["operator-cleanup", "-n", "a", "-n", "b", "--operator-deployment", "moontide",
                         "--operator-namespace", "ops", "--lease-name", "moontide"])
    assert args.namespace == ["a", "b"] and callable(args.handler)
