"""The operator end to end, on a cluster where pods run.

The cluster is the one ``KUBECONFIG`` names (a user's kind or real cluster), or
else the testbed of ``e2e/testbed.py``: a real single-node Kubernetes built from
Debian's packages (kubelet, containerd, RBAC enforced), started here when the
machine was prepared (``python e2e/testbed.py prepare``, which ``scripts/test``
runs first, outside pytest) and stopped at the end. ``scripts/test`` starts one
cluster itself and runs this suite twice on it, once per chart mode.

The chart is installed with ``helm install`` as a user would: the operator in
its pod under the chart's RBAC, from the image built from the ``Dockerfile``
(``image.pullPolicy=Never``: there is no registry), and the chart's in-cluster
Temporal dev server. Entry CRs become worker and service Deployments whose pods
run; Workflow CRs run on them. The tests reach Temporal from the host at the
dev server's ClusterIP (kube-proxy's rules also apply to the node's own
traffic), or, where the host cannot reach Service IPs (kind, a remote cluster),
through ``kubectl port-forward``.

Modes (``MOONTIDE_E2E_MODE`` or ``--mode``):

- ``namespaced`` (the chart's default): the release watches its own namespace,
  where both test apps live;
- ``all-namespaces`` (``watch.allNamespaces=true``): the release in a namespace
  of its own, examples/orders in one app namespace and e2e/apps/signals in
  another.

With ``KUBECONFIG``, the image ``MOONTIDE_E2E_IMAGE`` (default: the one
``testbed.py image`` names) must already be on the nodes (e.g. ``kind load
docker-image``); ``MOONTIDE_E2E_PULL_POLICY`` (default ``Never``) sets how it is
pulled.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

import testbed
from k8s import MODES, REPO, Cluster, Release, eventually, install, temporal_call

ORDERS = REPO / "examples" / "orders"
SIGNALS = REPO / "e2e" / "apps" / "signals"
MOONTIDE = str(Path(sys.executable).with_name("moontide"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--mode", choices=MODES, default=os.environ.get("MOONTIDE_E2E_MODE") or "namespaced",
                     help="the chart's mode: namespaced (default) or all-namespaces (env MOONTIDE_E2E_MODE)")


def pytest_report_header(config: pytest.Config) -> str:
    return f"moontide e2e mode: {config.getoption('--mode')}"


# -- the cluster ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """``KUBECONFIG``'s cluster, or a testbed cluster started here (when prepared) and stopped at the end."""
    if os.environ.get("KUBECONFIG") or testbed.prepared():
        with testbed.connect() as c:
            yield c
    else:
        pytest.exit("no KUBECONFIG and the testbed is not prepared for this code: run `python e2e/testbed.py "
                    "prepare` first (scripts/test does), or set KUBECONFIG", returncode=4)


# -- the release -----------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def release(cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[Release]:
    mode = request.config.getoption("--mode")
    rel = install(cluster, mode=mode, prefix=f"e2e-{uuid.uuid4().hex[:5]}",
                  image=os.environ.get("MOONTIDE_E2E_IMAGE") or testbed.image_ref(),
                  pull_policy=os.environ.get("MOONTIDE_E2E_PULL_POLICY") or "Never",
                  values={"operator.leaderElection.leaseSeconds": 6, "operator.resyncSeconds": 30})
    print(f"\ne2e: release {rel.name} in {rel.namespace} ({mode}), Temporal at {rel.temporal} from the host")
    try:
        yield rel
    finally:
        rel.remove()


# -- Workflows and entries -------------------------------------------------------------------------------


TERMINAL = {"Succeeded", "Failed", "Canceled", "Terminated", "TimedOut"}
FORBIDDEN = ("forbidden", "APIForbiddenError")


def workflow(name: str, entry: str, worker: str, *inputs: Any, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"workflow": entry, "worker": worker, "input": list(inputs), **spec}}


def by_entry(cluster: Cluster, namespace: str, kind: str, entry_id: str) -> dict[str, Any]:
    return next(c for c in cluster.list(kind, namespace) if c["spec"]["entryId"] == entry_id)


def ready(cr: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (cr.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), {})


def phase(cluster: Cluster, namespace: str, name: str, *wanted: str, timeout: float = 120) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        cr = cluster.get("workflows.moontide.io", name, namespace)
        status = (cr or {}).get("status") or {}
        if status.get("phase") in TERMINAL and status["phase"] not in wanted:
            raise AssertionError(f"Workflow {name} is {status['phase']}: {status.get('message')}")
        return cr if cr and status.get("phase") in wanted else None

    return eventually(check, timeout=timeout, what=f"Workflow {name} to be {'/'.join(wanted)}")


def executions(address: str, workflow_id: str) -> list[Any]:
    async def go(client: Any) -> list[Any]:
        return [w async for w in client.list_workflows(f'WorkflowId = "{workflow_id}"')]

    return list(temporal_call(address, go))


def describe(address: str, workflow_id: str) -> Any:
    async def go(client: Any) -> Any:
        return await client.get_workflow_handle(workflow_id).describe()

    return temporal_call(address, go)


def pods_of(cluster: Cluster, namespace: str, deployment: str, component: str = "worker") -> list[dict[str, Any]]:
    pods = cluster.list("pods", namespace, f"app.kubernetes.io/instance={deployment}",
                        f"app.kubernetes.io/component={component}")
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def rolled_out(cluster: Cluster, namespace: str, deployment: str, timeout: int = 240) -> None:
    cluster.kubectl("rollout", "status", "deployment", deployment, "-n", namespace, f"--timeout={timeout}s",
                    timeout=timeout + 20)


def forbidden_lines(logs: str) -> list[str]:
    return [line for line in logs.splitlines() if any(f.lower() in line.lower() for f in FORBIDDEN)]


# -- the apps ------------------------------------------------------------------------------------------------


@dataclass
class Apps:
    """The deployed test apps: worker and service Deployment names, and their revisions once settled."""

    orders_worker: str
    signals_worker: str
    service: str
    #: (namespace, Deployment) -> deployment.kubernetes.io/revision once every entry was Ready
    revisions: dict[tuple[str, str], str]


def _manifests(app_dir: Any) -> list[dict[str, Any]]:
    text = subprocess.run([MOONTIDE, "manifests", str(app_dir)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="session")
def apps(release: Release) -> Apps:
    """examples/orders and e2e/apps/signals applied, each namespace's entries in one ``kubectl apply``."""
    cluster = release.cluster
    by_ns: dict[str, list[dict[str, Any]]] = {}
    by_ns.setdefault(release.orders_ns, []).extend(_manifests(ORDERS))
    by_ns.setdefault(release.signals_ns, []).extend(_manifests(SIGNALS))
    # First the operator shows it handles this namespace (a Workflow for no worker: Pending), so the apps
    # arrive at a working operator, as they would in a user's cluster, not in one batch it finds at its start.
    for ns in by_ns:
        cluster.apply(ns, [workflow("warm-up", "none:none", "none:worker")])
        eventually(lambda ns=ns: ((cluster.get("workflows.moontide.io", "warm-up", ns) or {}).get("status") or {})
                   .get("phase") == "Pending", timeout=240, what=f"the operator to handle a Workflow in {ns}")
        cluster.kubectl("delete", "workflows.moontide.io", "warm-up", "-n", ns, "--timeout=60s", timeout=90)
    for ns, docs in by_ns.items():
        cluster.apply(ns, docs)

    def settled() -> bool:
        """Every entry Ready at its generation; every Deployment made from a bundle of all of them, and seen by
        the Deployment controller (so its revision is final)."""
        for ns, docs in by_ns.items():
            crs = cluster.list("moontide", ns)
            if len(crs) != len(docs):
                return False
            for c in crs:
                if c["kind"] in ("TemporalWorker", "ProcessService"):
                    name = c["metadata"]["name"]
                    cm = cluster.get("configmaps", f"{name}-bundle", ns)
                    dep = cluster.get("deployments", name, ns)
                    if cm is None or dep is None or len(json.loads(cm["data"]["bundle.json"])["resources"]) != len(docs):
                        return False
                    digest = cm["metadata"]["annotations"]["moontide.io/bundle-hash"]
                    # a worker's Deployment names its bundle (its pods reload it); a service's pods carry it
                    made_from = dep["metadata"] if c["kind"] == "TemporalWorker" else dep["spec"]["template"]["metadata"]
                    if made_from["annotations"]["moontide.io/bundle-hash"] != digest \
                            or (dep.get("status") or {}).get("observedGeneration") != dep["metadata"]["generation"]:
                        return False
                    continue
                cond = ready(c)
                if cond.get("status") != "True" or cond.get("observedGeneration") != c["metadata"]["generation"]:
                    return False
        return True

    eventually(settled, timeout=240, what="every entry Ready and every Deployment made from the whole bundle")
    orders = by_entry(cluster, release.orders_ns, "temporalworkers", "app:temporal_worker")["metadata"]["name"]
    signals = by_entry(cluster, release.signals_ns, "temporalworkers", "e2e:worker")["metadata"]["name"]
    service = by_entry(cluster, release.signals_ns, "processservices", "e2e:ticking")["metadata"]["name"]
    revisions = {}
    for ns, name in ((release.orders_ns, orders), (release.signals_ns, signals), (release.signals_ns, service)):
        dep = cluster.get("deployments", name, ns)
        assert dep is not None, f"no Deployment {ns}/{name}"
        revisions[(ns, name)] = dep["metadata"].get("annotations", {}).get("deployment.kubernetes.io/revision", "")
    return Apps(orders, signals, service, revisions)


@pytest.fixture(scope="session")
def _pods_once(release: Release, apps: Apps) -> None:
    for ns, name in ((release.orders_ns, apps.orders_worker), (release.signals_ns, apps.signals_worker),
                     (release.signals_ns, apps.service)):
        rolled_out(release.cluster, ns, name, timeout=300)


@pytest.fixture
def workers(release: Release, apps: Apps, _pods_once: None) -> Apps:
    """The apps, with every worker and service Deployment rolled out (its pods Ready)."""
    for ns, name in ((release.orders_ns, apps.orders_worker), (release.signals_ns, apps.signals_worker),
                     (release.signals_ns, apps.service)):
        rolled_out(release.cluster, ns, name)
    return apps


# -- what a failed test shows ----------------------------------------------------------------------------


#: Guards against a hang (pytest-timeout), above the suite's own waits for pods.
HANG = 900
_diagnosed: list[str] = []


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(pytest.mark.timeout(HANG))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.failed and call.when in ("setup", "call") and len(_diagnosed) < 4:
        _diagnosed.append(item.nodeid)
        rel = getattr(item, "funcargs", {}).get("release")
        if isinstance(rel, Release):
            with contextlib.suppress(Exception):
                report.sections.append(("cluster state", _diagnostics(rel)))
    return report


def _diagnostics(rel: Release) -> str:
    k = rel.cluster.kubectl
    out = [k("get", "pods,deployments", "-A", "-o", "wide", check=False, timeout=30).stdout]
    for ns in sorted({rel.namespace, *rel.app_namespaces}):
        ev = k("get", "events", "-n", ns, "--sort-by=.lastTimestamp", check=False, timeout=30).stdout
        out.append(f"--- events in {ns} (last 25)\n" + "\n".join(ev.splitlines()[-25:]))
    for pod in rel.operator_pods():
        name = pod["metadata"]["name"]
        lines = rel.cluster.logs(rel.namespace, name).splitlines()
        seen: set[str] = set()
        problems = []
        for line in lines:
            kind = re.sub(r"^[0-9:]+ |#\d+/\d+", "", line)[:200]
            if (" ERROR " in line or " WARNING " in line) and kind not in seen:
                seen.add(kind)
                problems.append(line[:300])
        out.append(f"--- operator {name}: its ERROR/WARNING lines, the first of each kind\n" + "\n".join(problems))
        out.append(f"--- operator {name}: the last 25 lines\n" + "\n".join(ln[:300] for ln in lines[-25:]))
    return "\n".join(out)
