"""The operator end to end, on real pods (see conftest.py for the cluster, the release and the modes).

The tests run in file order and share one release (the operator, the
Temporal dev server) and the pods of two apps: examples/orders and
e2e/apps/signals, applied once, each in one ``kubectl apply``. Nothing here
runs a pod's command as a local process: every worker, service and operator
is a container on the node.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from conftest import (
    Apps,
    by_entry,
    describe,
    executions,
    forbidden_lines,
    phase,
    pods_of,
    ready,
    workflow,
)
from k8s import Release, eventually, pod_ready, temporal_call

# -- the API server refuses what the schemas forbid -----------------------------------------------------


def test_invalid_specs_are_refused_by_the_api_server(release: Release) -> None:
    cluster, ns = release.cluster, release.signals_ns
    bad_module = {"apiVersion": "moontide.io/v1alpha1", "kind": "LuaWorkflow", "metadata": {"name": "bad-module"},
                  "spec": {"entryId": "x:bad", "source": "return function() end", "modules": ["http"]}}
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad_module), check=False)
    assert r.returncode != 0 and 'Unsupported value: "http"' in r.stderr
    bad_policy = workflow("bad-policy", "x:y", "x:w", deletionPolicy="Later")
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad_policy), check=False)
    assert r.returncode != 0 and "deletionPolicy" in r.stderr
    bad_id = {**bad_module, "spec": {"entryId": "no namespace", "source": "return 1"}}
    r = cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(bad_id), check=False)
    assert r.returncode != 0 and "entryId" in r.stderr


# -- the chart: the operator in its pod, under its RBAC --------------------------------------------------------


def test_the_operator_runs_in_its_pod_with_the_charts_rbac_and_nothing_is_forbidden(release: Release,
                                                                                    apps: Apps) -> None:
    cluster = release.cluster
    (pod,) = release.operator_pods()
    name = pod["metadata"]["name"]
    spec = pod["spec"]
    assert spec["serviceAccountName"] == release.fullname
    (container,) = spec["containers"]
    assert container["image"] == release.image and container["imagePullPolicy"] == release.values["image.pullPolicy"]
    assert release.leader() == name
    assert cluster.pod_get(release.namespace, name, "/readyz").strip() == "leading"
    # The service account may do what the chart grants, and not more.
    sa = f"system:serviceaccount:{release.namespace}:{release.fullname}"
    can = lambda *a: cluster.kubectl("auth", "can-i", *a, "--as", sa, check=False).stdout.strip()  # noqa: E731
    for ns in release.app_namespaces:
        assert can("patch", "workflows.moontide.io/status", "-n", ns) == "yes"
        assert can("create", "deployments.apps", "-n", ns) == "yes"
        assert can("delete", "secrets", "-n", ns) == "no"
        assert can("create", "pods", "-n", ns) == "no"
    # What Kopf itself reads: CRDs, and with given namespaces which of them exist (cluster-wide, it needs no list).
    assert can("watch", "customresourcedefinitions.apiextensions.k8s.io") == "yes"
    if release.mode == "namespaced":
        assert can("watch", "namespaces") == "yes"
    logs = release.operator_logs(name)
    assert "moontide operator watching" in logs
    assert not forbidden_lines(logs), "\n".join(forbidden_lines(logs)[:5])


# -- entries -> worker pods ----------------------------------------------------------------------------------------


def test_manifests_become_ready_worker_pods(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.orders_ns
    tw = by_entry(cluster, ns, "temporalworkers", "app:temporal_worker")
    name, status = tw["metadata"]["name"], tw["status"]
    assert ready(tw)["status"] == "True" and ready(tw)["observedGeneration"] == tw["metadata"]["generation"]
    dep = cluster.get("deployments", name, ns)
    cm = cluster.get("configmaps", f"{name}-bundle", ns)
    assert dep is not None and cm is not None
    assert dep["status"]["availableReplicas"] == 1
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["worker", "--bundle", "/etc/moontide/bundle", "--worker", "app:temporal_worker"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    dev_server = f"{release.fullname}-temporal.{release.namespace}.svc:7233"
    assert env["MOONTIDE_TEMPORAL_ADDRESS"] == dev_server and status["temporalAddress"] == dev_server
    assert container["image"] == release.image
    digest = dep["metadata"]["annotations"]["moontide.io/bundle-hash"]
    assert digest == status["bundleHash"] == cm["metadata"]["annotations"]["moontide.io/bundle-hash"]
    assert "moontide.io/config-hash" in dep["spec"]["template"]["metadata"]["annotations"]
    for obj in (dep, cm):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("TemporalWorker", tw["metadata"]["uid"], True)
    bundle = json.loads(cm["data"]["bundle.json"])
    live = {(c["kind"], c["metadata"]["name"]): c["spec"] for c in cluster.list("moontide", ns)}
    assert {(r["kind"], r["name"]): r["spec"] for r in bundle["resources"]} == live
    assert status["taskQueue"] == "orders"
    # The pod: running the image, serving this bundle (its /readyz, through the API server's proxy).
    (pod,) = pods_of(cluster, ns, name)
    assert pod_ready(pod) and pod["spec"]["containers"][0]["image"] == release.image
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert cluster.pod_get(ns, pod["metadata"]["name"], "/readyz").startswith(f"serving bundle {digest}")
    assert cluster.get("serviceaccounts", pod["spec"]["serviceAccountName"], ns) is not None


def test_one_apply_rolls_each_worker_once(release: Release, apps: Apps) -> None:
    """examples/orders in one ``kubectl apply`` (11 entries): one bundle, one ReplicaSet, not one per batch."""
    assert apps.revisions == {key: "1" for key in apps.revisions}
    for (ns, name) in apps.revisions:
        sets = [rs for rs in release.cluster.list("replicasets", ns, f"app.kubernetes.io/instance={name}")]
        assert len(sets) == 1, f"{ns}/{name}: {[rs['metadata']['name'] for rs in sets]}"


def test_worker_and_service_pods_run_in_every_app_namespace(release: Release, apps: Apps) -> None:
    """Where the workers run, their ServiceAccount exists: no FailedCreate, the pods run (both chart modes)."""
    cluster = release.cluster
    for ns, name in ((release.orders_ns, apps.orders_worker), (release.signals_ns, apps.signals_worker),
                     (release.signals_ns, apps.service)):
        def running(ns: str = ns, name: str = name) -> list[dict[str, Any]] | None:
            failed = [e["message"] for e in cluster.events(ns, "reason=FailedCreate")]
            assert not failed, f"{ns}: {failed[:3]}"
            pods = pods_of(cluster, ns, name, "service" if name == apps.service else "worker")
            return pods if pods and all(p["status"].get("phase") == "Running" for p in pods) else None

        (pod,) = eventually(running, timeout=240, what=f"the pod of {ns}/{name} to run")
        account = pod["spec"].get("serviceAccountName") or "default"
        assert account != "default" and cluster.get("serviceaccounts", account, ns) is not None


def test_a_process_service_runs_in_one_supervised_pod(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.signals_ns
    name = workers.service

    def running() -> dict[str, Any] | None:
        svc = cluster.get("processservices", name, ns) or {}
        status = svc.get("status") or {}
        return svc if status.get("state") == "Running" and ready(svc).get("status") == "True" else None

    svc = eventually(running, what="the ProcessService to be Running")
    assert svc["status"]["readyReplicas"] == 1
    dep = cluster.get("deployments", name, ns)
    assert dep is not None
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["service", "--bundle", "/etc/moontide/bundle", "--service", "e2e:ticking"]
    (pod,) = pods_of(cluster, ns, name, "service")
    first = pod["metadata"]["name"]
    assert cluster.pod_get(ns, first, "/readyz").strip() == "Running"
    eventually(lambda: cluster.logs(ns, first).count("tick") >= 2, timeout=30, what="ticks in the pod's log")
    # Supervised by Kubernetes: the pod goes, a new one ticks (Recreate: never two at once).
    cluster.kubectl("delete", "pod", first, "-n", ns, "--wait=false")

    def replaced() -> str | None:
        pods = [p for p in pods_of(cluster, ns, name, "service") if p["metadata"]["name"] != first]
        return pods[0]["metadata"]["name"] if pods and pod_ready(pods[0]) else None

    second = eventually(replaced, timeout=180, what="a new service pod")
    eventually(lambda: "tick" in cluster.logs(ns, second), timeout=30, what="ticks in the new pod")
    eventually(running, what="the ProcessService to be Running again")


# -- Workflow CRs --------------------------------------------------------------------------------------------------


def test_a_workflow_cr_runs_to_success_with_its_result(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.orders_ns
    cluster.apply(ns, [workflow("order-1", "app.workflows:order_processor", "app:temporal_worker",
                                {"payment": {"amount": 10, "status": "failed"}, "wait": "100ms"})])
    cr = phase(cluster, ns, "order-1", "Succeeded")
    status = cr["status"]
    assert status["result"]["status"] == "failed"
    assert status["result"]["refunded"] == status["result"]["charged"]
    assert status["pid"] == f"{{app:temporal_client@app:temporal_worker|{status['workflowId']}}}"
    assert status["runId"] and status["startTime"] and status["finishTime"]
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "True"
    row = cluster.kubectl("get", "workflows.moontide.io", "order-1", "-n", ns).stdout.splitlines()
    assert row[0].split()[:4] == ["NAME", "PHASE", "WORKFLOW", "AGE"] and "Succeeded" in row[1]
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=order-1").stdout
    assert "started {app:temporal_client@app:temporal_worker|" in events
    # It ran on the worker pod: Temporal's history names the pod's worker identity.
    run = describe(release.temporal, status["workflowId"])
    assert run.status.name == "COMPLETED" and run.task_queue == "orders"


def test_a_failed_workflow_reports_its_error(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.orders_ns
    cluster.apply(ns, [workflow("saga-1", "app.workflows:order_saga", "app:temporal_worker",
                                {"sku": "book", "payment": {"amount": 10}, "fail": {"ship": True}})])
    status = phase(cluster, ns, "saga-1", "Failed")["status"]
    assert "ship failed: carrier refused rsv_book" in status["message"]
    assert status["errorKind"] == "Unavailable"
    assert next(c for c in status["conditions"] if c["type"] == "Succeeded")["status"] == "False"


def test_signals_are_delivered_once_each(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.signals_ns
    cluster.apply(ns, [workflow("collect-1", "e2e:collect", "e2e:worker", 2,
                                signals=[{"name": "first", "topic": "approve", "payload": {"n": 1}}])])

    def delivered() -> list[Any] | None:
        cr = cluster.get("workflows.moontide.io", "collect-1", ns) or {}
        return (cr.get("status") or {}).get("signals")

    eventually(delivered, what="the first signal")
    cluster.kubectl("patch", "workflows.moontide.io", "collect-1", "-n", ns, "--type", "json", "-p",
                    json.dumps([{"op": "add", "path": "/spec/signals/-",
                                 "value": {"name": "second", "topic": "approve", "payload": 2}}]))
    status = phase(cluster, ns, "collect-1", "Succeeded")["status"]
    assert status["result"] == [{"n": 1}, 2]  # and no third: each signal once
    assert [s["name"] for s in status["signals"]] == ["first", "second"]


@pytest.mark.parametrize(("policy", "expected"), [("Cancel", "CANCELED"), ("Terminate", "TERMINATED"),
                                                  ("Abandon", "RUNNING")])
def test_deleting_a_running_workflow_applies_its_policy(release: Release, workers: Apps, policy: str,
                                                        expected: str) -> None:
    cluster, ns = release.cluster, release.signals_ns
    name = f"sleeper-{policy.lower()}"
    cluster.apply(ns, [workflow(name, "e2e:wait_cancel", "e2e:worker", deletionPolicy=policy)])
    wid = phase(cluster, ns, name, "Running")["status"]["workflowId"]
    # The worker pod has taken the first task (the execution sleeps on its timer)
    eventually(lambda: describe(release.temporal, wid).history_length >= 4,
               what="the worker pod to complete the first workflow task")
    cluster.kubectl("delete", "workflows.moontide.io", name, "-n", ns, "--timeout", "60s", timeout=90)
    assert cluster.get("workflows.moontide.io", name, ns) is None
    eventually(lambda: describe(release.temporal, wid).status.name == expected, what=f"execution {expected}")
    if expected == "RUNNING":
        temporal_call(release.temporal, lambda c: c.get_workflow_handle(wid).terminate(reason="e2e cleanup"))


def test_bad_lua_is_ready_false_with_its_line_and_nothing_rolls(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.orders_ns
    tw = by_entry(cluster, ns, "temporalworkers", "app:temporal_worker")
    before = tw["status"]["bundleHash"]
    dep_before = cluster.get("deployments", workers.orders_worker, ns)
    assert dep_before is not None
    bad = {"apiVersion": "moontide.io/v1alpha1", "kind": "LuaFunction", "metadata": {"name": "broken"},
           "spec": {"entryId": "app.api:broken", "source": "local x = 1\n\nlocal y = = 2\nreturn x\n"}}
    cluster.apply(ns, [bad])

    def marked() -> dict[str, Any] | None:
        cond = ready(cluster.get("luafunctions", "broken", ns) or {})
        return cond if cond.get("status") == "False" else None

    cond = eventually(marked, what="Ready=False on the broken LuaFunction")
    assert cond["reason"] == "Invalid" and "field source, line 3:" in cond["message"]
    events = cluster.kubectl("get", "events", "-n", ns, "--field-selector", "involvedObject.name=broken").stdout
    assert "Warning" in events and "Invalid" in events

    def noted() -> dict[str, Any] | None:
        tw = by_entry(cluster, ns, "temporalworkers", "app:temporal_worker")
        return tw if "left out LuaFunction/broken" in ready(tw).get("message", "") else None

    tw = eventually(noted, what="the worker to note what it left out")
    assert tw["status"]["bundleHash"] == before and ready(tw)["status"] == "True"
    dep = cluster.get("deployments", workers.orders_worker, ns)
    assert dep is not None and dep["metadata"]["generation"] == dep_before["metadata"]["generation"]
    assert dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == \
        dep_before["metadata"]["annotations"]["deployment.kubernetes.io/revision"]
    cluster.kubectl("delete", "luafunctions", "broken", "-n", ns)


def test_a_worker_whose_pods_cannot_start_is_not_ready(release: Release, workers: Apps) -> None:
    """An image that is not on the node (pull policy Never): Ready=False with the pod's reason, and an Event."""
    cluster, ns = release.cluster, release.signals_ns
    broken = {"apiVersion": "moontide.io/v1alpha1", "kind": "TemporalWorker", "metadata": {"name": "no-image"},
              "spec": {"entryId": "e2e:no_image", "client": "client", "task_queue": "e2e-no-image",
                       "deployment": {"image": "moontide.local/not-there:0", "imagePullPolicy": "Never"}}}
    cluster.apply(ns, [broken])
    try:
        def not_ready() -> dict[str, Any] | None:
            tw = cluster.get("temporalworkers", "no-image", ns) or {}
            cond, status = ready(tw), tw.get("status") or {}
            # never Ready while no pod is available
            assert cond.get("status") != "True", f"Ready with {status.get('availableReplicas', 0)} available: {cond}"
            return cond if cond.get("status") == "False" and "ErrImageNeverPull" in cond.get("message", "") else None

        cond = eventually(not_ready, timeout=180, what="Ready=False naming ErrImageNeverPull")
        assert "moontide.local/not-there:0" in cond["message"] or "not present" in cond["message"]
        dep = cluster.get("deployments", "no-image", ns)
        assert dep is not None and not (dep.get("status") or {}).get("availableReplicas")

        def event() -> list[dict[str, Any]]:
            return [e for e in cluster.events(ns, "involvedObject.name=no-image", "type=Warning")
                    if e["involvedObject"]["kind"] == "TemporalWorker" and "ErrImageNeverPull" in e["message"]]

        eventually(event, what="a Warning Event on the TemporalWorker naming ErrImageNeverPull")
    finally:
        cluster.kubectl("delete", "temporalworkers", "no-image", "-n", ns, "--wait=false", check=False)


# -- the operator restarted, killed, doubled ---------------------------------------------------------------------


def test_a_start_the_operator_did_not_record_is_not_repeated(release: Release, workers: Apps) -> None:
    """The crash window: the execution started, the operator died before writing the status."""
    cluster, ns = release.cluster, release.signals_ns
    release.scale_operator(0)
    try:
        cluster.apply(ns, [workflow("window-1", "e2e:collect", "e2e:worker", 0)])
        cr = cluster.get("workflows.moontide.io", "window-1", ns)
        assert cr is not None and not cr.get("status")
        wid = f"k8s-{ns}-window-1-{cr['metadata']['uid'][:8]}"

        async def start(client: Any) -> str:
            handle = await client.start_workflow("e2e:collect", 0, id=wid, task_queue="e2e-signals")
            return str(handle.first_execution_run_id)

        run_id = temporal_call(release.temporal, start)
    finally:
        release.scale_operator(1)
    status = phase(cluster, ns, "window-1", "Running", "Succeeded")["status"]
    assert status["workflowId"] == wid and status["runId"] == run_id
    phase(cluster, ns, "window-1", "Succeeded")
    assert len(executions(release.temporal, wid)) == 1


def test_killing_the_operator_mid_reconcile_starts_each_workflow_once(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.signals_ns
    names = [f"burst-{i}" for i in range(30)]
    (pod,) = release.operator_pods()
    applying = threading.Thread(target=cluster.apply, args=(ns, [workflow(n, "e2e:collect", "e2e:worker", 0)
                                                                 for n in names]))
    applying.start()

    def first_started() -> bool:
        items = cluster.list("workflows.moontide.io", ns)
        return any(((w.get("status") or {}).get("runId")) for w in items if w["metadata"]["name"] in names)

    eventually(first_started, interval=0.05, what="the operator to start the first of the burst")
    how = cluster.crash(release.namespace, pod["metadata"]["name"])  # while it starts the burst
    applying.join()
    uids = {n: cluster.get("workflows.moontide.io", n, ns)["metadata"]["uid"] for n in names}  # type: ignore[index]
    wids = {n: f"k8s-{ns}-{n}-{uids[n][:8]}" for n in names}
    recorded = [n for n in names if ((cluster.get("workflows.moontide.io", n, ns) or {})
                                     .get("status") or {}).get("runId")]
    started = [n for n in names if executions(release.temporal, wids[n])]
    release.wait_operator()
    for n in names:
        status = phase(cluster, ns, n, "Succeeded")["status"]
        runs = executions(release.temporal, wids[n])
        assert len(runs) == 1, f"{n}: {len(runs)} executions"
        assert runs[0].run_id == status["runId"]
    print(f"operator {how} mid-burst: {len(started)} of {len(names)} started, {len(recorded)} recorded just after")


def test_a_new_operator_pod_handles_workflows_at_once_and_is_never_forbidden(release: Release,
                                                                             workers: Apps) -> None:
    """After a restart the operator works as soon as it leads (Kopf has the RBAC it needs: no fallbacks)."""
    cluster, ns = release.cluster, release.signals_ns
    (old,) = release.operator_pods()
    cluster.kubectl("delete", "pod", old["metadata"]["name"], "-n", release.namespace, "--wait=false")
    eventually(lambda: all(p["metadata"]["name"] != old["metadata"]["name"] for p in release.operator_pods()),
               timeout=120, what="the old operator pod to go")
    (new,) = release.wait_operator()
    t0 = time.monotonic()
    cluster.apply(ns, [workflow("after-restart", "e2e:collect", "e2e:worker", 0)])
    # A bound against the old behaviour (Kopf idle ~54 s after each start without namespace/CRD rights),
    # far above the few seconds it takes.
    phase(cluster, ns, "after-restart", "Running", "Succeeded", timeout=40)
    print(f"new operator pod leading -> Workflow started: {time.monotonic() - t0:.1f} s")
    logs = release.operator_logs(new["metadata"]["name"])
    assert not forbidden_lines(logs), "\n".join(forbidden_lines(logs)[:5])
    phase(cluster, ns, "after-restart", "Succeeded")


def test_two_operator_replicas_one_leads(release: Release, workers: Apps) -> None:
    cluster, ns = release.cluster, release.signals_ns
    release.scale_operator(2)
    try:
        pods = release.operator_pods()
        leader = release.leader()
        (standby,) = [p["metadata"]["name"] for p in pods if p["metadata"]["name"] != leader]
        assert cluster.pod_get(release.namespace, standby, "/readyz").strip() == "standby"
        cluster.apply(ns, [workflow("ha-1", "e2e:collect", "e2e:worker", 0)])
        phase(cluster, ns, "ha-1", "Succeeded")
        assert cluster.pod_get(release.namespace, standby, "/readyz").strip() == "standby"
        assert leader is not None
        cluster.crash(release.namespace, leader)  # no release of the Lease
        cluster.kubectl("delete", "pod", leader, "-n", release.namespace, "--grace-period=0", "--force",
                        "--wait=false", check=False)
        eventually(lambda: release.leader() not in (None, leader), timeout=120, what="another replica to lead")
        cluster.apply(ns, [workflow("ha-2", "e2e:collect", "e2e:worker", 0)])
        assert phase(cluster, ns, "ha-2", "Succeeded")["status"]["result"] == {}  # Lua: an empty table
        for name in ("ha-1", "ha-2"):
            wid = cluster.get("workflows.moontide.io", name, ns)["status"]["workflowId"]  # type: ignore[index]
            assert len(executions(release.temporal, wid)) == 1
    finally:
        release.scale_operator(1)


# -- a Lua change reaches the running pods; what runs keeps its code; a breaking change waits ----------------------


def _restore(release: Release, kind: str, entry_id: str) -> Iterator[dict[str, Any]]:
    cr = by_entry(release.cluster, release.signals_ns, kind, entry_id)
    yield cr
    release.cluster.kubectl("patch", kind, cr["metadata"]["name"], "-n", release.signals_ns, "--type",
                            "merge", "-p", json.dumps({"spec": {"source": cr["spec"]["source"]}}), check=False)


@pytest.fixture
def collect_source(release: Release) -> Iterator[dict[str, Any]]:
    yield from _restore(release, "luaworkflows", "e2e:collect")


@pytest.fixture
def nap_source(release: Release) -> Iterator[dict[str, Any]]:
    yield from _restore(release, "luaworkflows", "e2e:nap")


def _changed(cr: dict[str, Any], source: str) -> dict[str, Any]:
    assert source != cr["spec"]["source"]
    return {**cr, "metadata": {"name": cr["metadata"]["name"]}, "spec": {**cr["spec"], "source": source}}


def _served(cluster: Any, ns: str, name: str, digest: str) -> dict[str, Any] | None:
    """The worker's one pod once it serves bundle ``digest``."""
    (pod,) = pods_of(cluster, ns, name)
    return pod if cluster.pod_get(ns, pod["metadata"]["name"], "/readyz").startswith(f"serving bundle {digest}") \
        else None


def test_a_changed_lua_workflow_reaches_the_running_pod_and_a_waiting_execution_keeps_its_code(
        release: Release, workers: Apps, collect_source: dict[str, Any]) -> None:
    """``kubectl apply`` of a new LuaWorkflow while an execution waits on a worker pod: the same pod (no restart)
    serves the new bundle; the execution finishes with the code it started with; new executions get the new code."""
    cluster, ns, name = release.cluster, release.signals_ns, workers.signals_worker
    tw = by_entry(cluster, ns, "temporalworkers", "e2e:worker")
    before = tw["status"]["bundleHash"]
    (old_pod,) = pods_of(cluster, ns, name)
    template = (cluster.get("deployments", name, ns) or {})["spec"]["template"]
    # In flight across the change: it waits for one signal.
    cluster.apply(ns, [workflow("pinned-1", "e2e:collect", "e2e:worker", 1)])
    status = phase(cluster, ns, "pinned-1", "Running")["status"]
    pinned = status["codeDigest"]
    eventually(lambda: describe(release.temporal, status["workflowId"]).history_length >= 4,
               what="the pod to complete the first workflow task")
    source = collect_source["spec"]["source"].replace("return got\n", "return { got = got, version = 2 }\n")
    cluster.apply(ns, [_changed(collect_source, source)])

    def deployed() -> str | None:
        digest = by_entry(cluster, ns, "temporalworkers", "e2e:worker")["status"]["bundleHash"]
        return digest if digest != before else None

    after = eventually(deployed, what="the TemporalWorker's bundle hash to change")
    code = cluster.get("configmaps", f"{name}-code", ns)
    assert code is not None and f"{pinned}.json" in code["data"]  # the old code stays for what runs on it
    pod = eventually(lambda: _served(cluster, ns, name, after), timeout=30, what="the pod to serve the new bundle")
    assert pod["metadata"]["uid"] == old_pod["metadata"]["uid"]  # the same pod, its container not restarted:
    assert pod["status"]["containerStatuses"][0]["restartCount"] == 0
    assert (cluster.get("deployments", name, ns) or {})["spec"]["template"] == template  # nothing rolls
    assert any(e.get("message") == f"bundle {before} -> {after}: 1 pod reloads it in place" for e in cluster.events(
        ns, f"involvedObject.name={tw['metadata']['name']}", "reason=BundleUpdated"))
    cluster.kubectl("patch", "workflows.moontide.io", "pinned-1", "-n", ns, "--type", "merge", "-p",
                    json.dumps({"spec": {"signals": [{"name": "go", "topic": "approve", "payload": "go"}]}}))
    assert phase(cluster, ns, "pinned-1", "Succeeded")["status"]["result"] == ["go"]  # the old code's result
    cluster.apply(ns, [workflow("fresh-1", "e2e:collect", "e2e:worker", 0)])
    assert phase(cluster, ns, "fresh-1", "Succeeded")["status"]["result"] == {"got": {}, "version": 2}


def test_a_change_running_executions_would_not_replay_on_is_held_back(
        release: Release, workers: Apps, nap_source: dict[str, Any]) -> None:
    """An ``auto_upgrade`` workflow sleeps; a change that calls a function before its timer is held back
    (``ReplayDivergence`` with the Lua line, an Event, the pod keeps the old bundle); a compatible change rolls
    out in place, and the sleeping execution goes on."""
    cluster, ns, name = release.cluster, release.signals_ns, workers.signals_worker
    tw = by_entry(cluster, ns, "temporalworkers", "e2e:worker")
    before = tw["status"]["bundleHash"]
    cluster.apply(ns, [workflow("napping-1", "e2e:nap", "e2e:worker")])
    wid = phase(cluster, ns, "napping-1", "Running")["status"]["workflowId"]
    eventually(lambda: describe(release.temporal, wid).history_length >= 5, what="the execution to start its timer")
    breaking = nap_source["spec"]["source"].replace('time.sleep("1h")', 'funcs.call("e2e:echo", 1)\n  time.sleep("1h")')
    cluster.apply(ns, [_changed(nap_source, breaking)])

    def held() -> dict[str, Any] | None:
        cond = ready(by_entry(cluster, ns, "temporalworkers", "e2e:worker"))
        return cond if cond.get("reason") == "ReplayDivergence" else None

    cond = eventually(held, what="the TemporalWorker to say ReplayDivergence")
    assert cond["status"] == "False" and wid in cond["message"] and "history has timer" in cond["message"]
    assert "moontide.io/accept-bundle=" in cond["message"]
    lw = ready(by_entry(cluster, ns, "luaworkflows", "e2e:nap"))
    assert lw["status"] == "False" and lw["reason"] == "ReplayDivergence" and ":2:" in lw["message"]
    assert cluster.events(ns, f"involvedObject.name={tw['metadata']['name']}", "reason=ReplayDivergence")
    # the workers keep serving the bundle they had
    cm = cluster.get("configmaps", f"{name}-bundle", ns) or {}
    assert cm["metadata"]["annotations"]["moontide.io/bundle-hash"] == before
    assert by_entry(cluster, ns, "temporalworkers", "e2e:worker")["status"]["bundleHash"] == before
    assert _served(cluster, ns, name, before) is not None
    # a compatible change (after the timer) goes out, without a restart
    compatible = nap_source["spec"]["source"].replace('return "v1"', 'return "v2"')
    cluster.apply(ns, [_changed(nap_source, compatible)])

    def deployed() -> str | None:
        tw = by_entry(cluster, ns, "temporalworkers", "e2e:worker")
        digest = tw["status"]["bundleHash"]
        return digest if digest != before and ready(tw).get("status") == "True" else None

    after = eventually(deployed, what="the compatible change to be deployed")
    eventually(lambda: _served(cluster, ns, name, after), timeout=30, what="the pod to serve the compatible change")
    assert ready(by_entry(cluster, ns, "luaworkflows", "e2e:nap"))["status"] == "True"
    assert phase(cluster, ns, "napping-1", "Running")
    cluster.kubectl("delete", "workflows.moontide.io", "napping-1", "-n", ns)
