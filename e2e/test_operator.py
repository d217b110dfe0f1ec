"""The operator end to end (see conftest.py for what runs where).

The tests run in file order and share one namespace, one operator (restarted
by some tests) and the workers of two apps: examples/orders and
e2e/apps/signals.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import podrun
from conftest import REPO, Cluster, Operators, eventually, readyz, temporal_call

ORDERS = REPO / "examples" / "orders"
SIGNALS = REPO / "e2e" / "apps" / "signals"
TERMINAL = {"Succeeded", "Failed", "Canceled", "Terminated", "TimedOut"}
MOONTIDE = str(Path(sys.executable).with_name("moontide"))


def apply(cluster: Cluster, namespace: str, docs: list[dict[str, Any]] | str) -> None:
    # JSON, not YAML: kubectl's YAML 1.1 would read a key like `n` as false
    text = docs if isinstance(docs, str) else json.dumps({"apiVersion": "v1", "kind": "List", "items": docs})
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=text)


def workflow(name: str, entry: str, worker: str, *inputs: Any, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "moontide.io/v1alpha1", "kind": "Workflow", "metadata": {"name": name},
            "spec": {"workflow": entry, "worker": worker, "input": list(inputs), **spec}}


def by_entry(cluster: Cluster, namespace: str, kind: str, entry_id: str) -> dict[str, Any]:
    return next(c for c in cluster.list(kind, namespace) if c["spec"]["entryId"] == entry_id)


def ready(cr: dict[str, Any]) -> dict[str, Any]:
    return next((c for c in (cr.get("status") or {}).get("conditions") or () if c["type"] == "Ready"), {})


def phase(cluster: Cluster, namespace: str, name: str, *wanted: str, timeout: float = 60) -> dict[str, Any]:
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


@pytest.fixture(scope="module")
def operator(operators: Operators) -> podrun.PodProcess:
    return operators.running[0] if operators.running else operators.start()


@pytest.fixture(scope="module")
def app(cluster: Cluster, namespace: str, operator: podrun.PodProcess) -> None:
    for app_dir in (ORDERS, SIGNALS):
        text = subprocess.run([MOONTIDE, "manifests", str(app_dir)], capture_output=True, text=True, check=True).stdout
        apply(cluster, namespace, text)

    def all_ready() -> bool:
        crs = cluster.list("moontide", namespace)
        return len(crs) == 18 and all(ready(c).get("status") == "True" for c in crs)

    eventually(all_ready, timeout=60, what="every entry CR to be Ready")


@pytest.fixture(scope="module")
def workers(cluster: Cluster, namespace: str, app: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, podrun.PodProcess]]:
    """The worker Deployments' containers, running locally."""
    logs = tmp_path_factory.mktemp("worker-logs")
    running: dict[str, podrun.PodProcess] = {}
    try:
        for entry_id in ("app:temporal_worker", "e2e:worker"):
            tw = by_entry(cluster, namespace, "temporalworkers", entry_id)
            dep = cluster.get("deployments", tw["metadata"]["name"], namespace)
            assert dep is not None
            proc = podrun.pod_process(dep, cluster.getter(namespace), pod_name=tw["metadata"]["name"], log_dir=logs)
            running[entry_id] = proc
        for entry_id, proc in running.items():
            eventually(lambda proc=proc: (readyz(proc) or "").startswith("serving bundle"), timeout=60,
                       what=f"worker {entry_id} to serve ({proc.log})")
        yield running
    finally:
        for proc in running.values():
            proc.stop()


# -- the API server refuses what the schemas forbid --------------------------------------------------


def test_invalid_specs_are_refused_by_the_api_server(cluster: Cluster, namespace: str) -> None:
    bad_module = {"apiVersion": "moontide.io/v1alpha1", "kind": "LuaWorkflow", "metadata": {"name": "bad-module"},
                  "spec": {"entryId": "x:bad", "source": "return function() end", "modules": ["http"]}}
    r = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad_module), check=False)
    assert r.returncode != 0 and 'Unsupported value: "http"' in r.stderr
    bad_policy = workflow("bad-policy", "x:y", "x:w", deletionPolicy="Later")
    r = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad_policy), check=False)
    assert r.returncode != 0 and "deletionPolicy" in r.stderr
    bad_id = {**bad_module, "spec": {"entryId": "no namespace", "source": "return 1"}}
    r = cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad_id), check=False)
    assert r.returncode != 0 and "entryId" in r.stderr


# -- entries -> worker Deployment ---------------------------------------------------------------------


def test_manifests_become_a_worker_deployment(cluster: Cluster, namespace: str, app: None, temporal: str) -> None:
    tw = by_entry(cluster, namespace, "temporalworkers", "app:temporal_worker")
    name, status = tw["metadata"]["name"], tw["status"]
    assert ready(tw)["reason"] == "Deployed" and ready(tw)["observedGeneration"] == tw["metadata"]["generation"]
    dep = cluster.get("deployments", name, namespace)
    cm = cluster.get("configmaps", f"{name}-bundle", namespace)
    assert dep is not None and cm is not None
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["moontide"]
    assert container["args"][:5] == ["worker", "--bundle", "/etc/moontide/bundle", "--worker", "app:temporal_worker"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MOONTIDE_TEMPORAL_ADDRESS"] == temporal and env["MOONTIDE_TEMPORAL_NAMESPACE"] == "default"
    assert container["image"] == "ghcr.io/moontide/moontide:e2e"
    digest = pod["metadata"]["annotations"]["moontide.io/bundle-hash"]
    assert digest == status["bundleHash"] == cm["metadata"]["annotations"]["moontide.io/bundle-hash"]
    for obj in (dep, cm):
        (owner,) = obj["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["uid"], owner["controller"]) == ("TemporalWorker", tw["metadata"]["uid"], True)
    bundle = json.loads(cm["data"]["bundle.json"])
    live = {(c["kind"], c["metadata"]["name"]): c["spec"] for c in cluster.list("moontide", namespace)}
    assert {(r["kind"], r["name"]): r["spec"] for r in bundle["resources"]} == live
    assert status["taskQueue"] == "orders" and status["temporalAddress"] == temporal
    columns = cluster.kubectl("get", "temporalworkers", name, "-n", namespace).stdout
    assert "Deployed" in columns and digest in columns


def test_a_process_service_runs_in_one_supervised_pod(cluster: Cluster, namespace: str, app: None,
                                                       tmp_path: Path) -> None:
    svc = by_entry(cluster, namespace, "processservices", "e2e:ticking")
    name = svc["metadata"]["name"]
    assert ready(svc)["reason"] == "Deployed" and svc["status"]["state"] == "Starting"  # no kubelet: no pod yet
    dep = cluster.get("deployments", name, namespace)
    assert dep is not None
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:5] == ["service", "--bundle", "/etc/moontide/bundle", "--service", "e2e:ticking"]
    assert dep["metadata"]["ownerReferences"][0]["uid"] == svc["metadata"]["uid"]
    proc = podrun.pod_process(dep, cluster.getter(namespace), pod_name=name, log_dir=tmp_path)
    try:
        eventually(lambda: readyz(proc) == "Running", timeout=30, what=f"the service to run ({proc.log})")
        eventually(lambda: proc.output().count("tick") >= 2, timeout=10, what="ticks")
    finally:
        assert proc.stop() == 0


# -- Workflow CRs ------------------------------------------------------------------------------------------


def test_a_workflow_cr_runs_to_success_with_its_result(cluster: Cluster, namespace: str,
                                                        workers: dict[str, podrun.PodProcess]) -> None:
    apply(cluster, namespace, [workflow("order-1", "app.workflows:order_processor", "app:temporal_worker",
                                        {"payment": {"amount": 10, "status": "failed"}, "wait": "100ms"})])
    cr = phase(cluster, namespace, "order-1", "Succeeded")
    status = cr["status"]
    assert status["result"]["status"] == "failed"
    assert status["result"]["refunded"] == status["result"]["charged"]
    assert status["pid"] == f"{{app:temporal_client@app:temporal_worker|{status['workflowId']}}}"
    assert status["runId"] and status["startTime"] and status["finishTime"]
    succeeded = next(c for c in status["conditions"] if c["type"] == "Succeeded")
    assert succeeded["status"] == "True"
    row = cluster.kubectl("get", "workflows.moontide.io", "order-1", "-n", namespace).stdout.splitlines()
    assert row[0].split()[:4] == ["NAME", "PHASE", "WORKFLOW", "AGE"] and "Succeeded" in row[1]
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector",
                             "involvedObject.name=order-1").stdout
    assert "started {app:temporal_client@app:temporal_worker|" in events


def test_a_failed_workflow_reports_its_error(cluster: Cluster, namespace: str,
                                             workers: dict[str, podrun.PodProcess]) -> None:
    apply(cluster, namespace, [workflow("saga-1", "app.workflows:order_saga", "app:temporal_worker",
                                        {"sku": "book", "payment": {"amount": 10}, "fail": {"ship": True}})])
    status = phase(cluster, namespace, "saga-1", "Failed")["status"]
    assert "ship failed: carrier refused rsv_book" in status["message"]
    assert status["errorKind"] == "Unavailable"
    assert next(c for c in status["conditions"] if c["type"] == "Succeeded")["status"] == "False"


def test_signals_are_delivered_once_each(cluster: Cluster, namespace: str,
                                         workers: dict[str, podrun.PodProcess]) -> None:
    apply(cluster, namespace, [workflow("collect-1", "e2e:collect", "e2e:worker", 2,
                                        signals=[{"name": "first", "topic": "approve", "payload": {"n": 1}}])])

    def delivered() -> list[Any] | None:
        cr = cluster.get("workflows.moontide.io", "collect-1", namespace) or {}
        return (cr.get("status") or {}).get("signals")

    eventually(delivered, what="the first signal")
    cluster.kubectl("patch", "workflows.moontide.io", "collect-1", "-n", namespace, "--type", "json", "-p",
                    json.dumps([{"op": "add", "path": "/spec/signals/-",
                                 "value": {"name": "second", "topic": "approve", "payload": 2}}]))
    status = phase(cluster, namespace, "collect-1", "Succeeded")["status"]
    assert status["result"] == [{"n": 1}, 2]  # and no third: each signal once
    assert [s["name"] for s in status["signals"]] == ["first", "second"]


def test_a_start_the_operator_did_not_record_is_not_repeated(cluster: Cluster, namespace: str, temporal: str,
                                                             operators: Operators,
                                                             workers: dict[str, podrun.PodProcess]) -> None:
    """The crash window: the execution started, the operator died before writing the status."""
    operators.stop_all()
    apply(cluster, namespace, [workflow("window-1", "e2e:collect", "e2e:worker", 0)])
    cr = cluster.get("workflows.moontide.io", "window-1", namespace)
    assert cr is not None and not cr.get("status")
    wid = f"k8s-{namespace}-window-1-{cr['metadata']['uid'][:8]}"

    async def start(client: Any) -> str:
        handle = await client.start_workflow("e2e:collect", 0, id=wid, task_queue="e2e-signals")
        return str(handle.first_execution_run_id)

    run_id = temporal_call(temporal, start)
    operators.start()
    status = phase(cluster, namespace, "window-1", "Running", "Succeeded")["status"]
    assert status["workflowId"] == wid and status["runId"] == run_id
    phase(cluster, namespace, "window-1", "Succeeded")
    assert len(executions(temporal, wid)) == 1


def test_killing_the_operator_mid_reconcile_starts_each_workflow_once(
        cluster: Cluster, namespace: str, temporal: str, operators: Operators,
        workers: dict[str, podrun.PodProcess]) -> None:
    names = [f"burst-{i}" for i in range(20)]
    (op,) = operators.running
    apply(cluster, namespace, [workflow(n, "e2e:collect", "e2e:worker", 0) for n in names])
    time.sleep(0.15)
    operators.stop(op, signal.SIGKILL)  # while it starts the burst
    uids = {n: cluster.get("workflows.moontide.io", n, namespace)["metadata"]["uid"] for n in names}  # type: ignore[index]
    wids = {n: f"k8s-{namespace}-{n}-{uids[n][:8]}" for n in names}
    recorded = [n for n in names if ((cluster.get("workflows.moontide.io", n, namespace) or {})
                                     .get("status") or {}).get("runId")]
    started = [n for n in names if executions(temporal, wids[n])]
    operators.start()
    for n in names:
        status = phase(cluster, namespace, n, "Succeeded")["status"]
        runs = executions(temporal, wids[n])
        assert len(runs) == 1, f"{n}: {len(runs)} executions"
        assert runs[0].run_id == status["runId"]
    print(f"when the operator was killed: {len(started)} of {len(names)} started, {len(recorded)} recorded")


def test_changing_a_lua_workflow_rolls_the_workers(cluster: Cluster, namespace: str,
                                                    workers: dict[str, podrun.PodProcess],
                                                    tmp_path: Path) -> None:
    tw = by_entry(cluster, namespace, "temporalworkers", "app:temporal_worker")
    name, before = tw["metadata"]["name"], tw["status"]["bundleHash"]
    # In flight across the change: pinned to the code it started with.
    apply(cluster, namespace, [workflow("pinned-1", "app.workflows:order_processor", "app:temporal_worker",
                                        {"payment": {"amount": 7}, "wait": "8s"})])
    pinned = phase(cluster, namespace, "pinned-1", "Running")["status"]["codeDigest"]
    lw = by_entry(cluster, namespace, "luaworkflows", "app.workflows:order_processor")
    source = lw["spec"]["source"].replace("return { charged = charge.id, status = status }",
                                          'return { charged = charge.id, status = status, version = 2 }')
    assert source != lw["spec"]["source"]
    cluster.kubectl("patch", "luaworkflows", lw["metadata"]["name"], "-n", namespace, "--type", "merge", "-p",
                    json.dumps({"spec": {"source": source}}))

    def rolled() -> str | None:
        dep = cluster.get("deployments", name, namespace) or {}
        digest = dep["spec"]["template"]["metadata"]["annotations"]["moontide.io/bundle-hash"]
        return digest if digest != before else None

    after = eventually(rolled, what="the Deployment's bundle hash to change")
    assert by_entry(cluster, namespace, "temporalworkers", "app:temporal_worker")["status"]["bundleHash"] == after
    code = cluster.get("configmaps", f"{name}-code", namespace)
    workflows = len(cluster.list("luaworkflows", namespace))
    assert code is not None and len(code["data"]) == workflows + 1  # the old order_processor stays too
    assert f"{pinned}.json" in code["data"]

    # The kubelet updates a mounted ConfigMap in place: do the same, and the running worker reloads.
    proc = workers["app:temporal_worker"]
    dep = cluster.get("deployments", name, namespace)
    assert dep is not None
    podrun.materialize(dep["spec"]["template"], cluster.getter(namespace), proc.root)

    def serving() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{proc.http_port}/metrics", timeout=2) as r:
            return f'hash="{after}"' in r.read().decode()

    eventually(serving, timeout=30, what="the worker to reload the new bundle")

    # The rollout: a new pod (fresh /tmp, so no code of its own but the history) replaces the old one,
    # and the execution pinned to the old code finishes on it.
    proc.stop()
    new = podrun.pod_process(dep, cluster.getter(namespace), pod_name=f"{name}-2", log_dir=tmp_path)
    workers["app:temporal_worker"] = new
    eventually(lambda: (readyz(new) or "").startswith(f"serving bundle {after}"), timeout=60,
               what="the new worker pod")
    status = phase(cluster, namespace, "pinned-1", "Succeeded")["status"]
    assert status["result"]["status"] == "settled" and "version" not in status["result"]
    apply(cluster, namespace, [workflow("order-2", "app.workflows:order_processor", "app:temporal_worker",
                                        {"payment": {"amount": 5}, "wait": "10ms"})])
    assert phase(cluster, namespace, "order-2", "Succeeded")["status"]["result"]["version"] == 2


@pytest.mark.parametrize(("policy", "expected"), [("Cancel", "CANCELED"), ("Terminate", "TERMINATED"),
                                                  ("Abandon", "RUNNING")])
def test_deleting_a_running_workflow_applies_its_policy(cluster: Cluster, namespace: str, temporal: str,
                                                         workers: dict[str, podrun.PodProcess], policy: str,
                                                         expected: str) -> None:
    name = f"sleeper-{policy.lower()}"
    apply(cluster, namespace, [workflow(name, "e2e:wait_cancel", "e2e:worker", deletionPolicy=policy)])
    wid = phase(cluster, namespace, name, "Running")["status"]["workflowId"]
    time.sleep(0.5)  # let the worker reach the sleep
    cluster.kubectl("delete", "workflows.moontide.io", name, "-n", namespace, "--timeout", "60s")
    assert cluster.get("workflows.moontide.io", name, namespace) is None
    eventually(lambda: describe(temporal, wid).status.name == expected, timeout=30, what=f"execution {expected}")
    if expected == "RUNNING":
        temporal_call(temporal, lambda c: c.get_workflow_handle(wid).terminate(reason="e2e cleanup"))


def test_bad_lua_is_ready_false_with_its_line_and_nothing_rolls(cluster: Cluster, namespace: str,
                                                                app: None) -> None:
    tw = by_entry(cluster, namespace, "temporalworkers", "app:temporal_worker")
    before = tw["status"]["bundleHash"]
    bad = {"apiVersion": "moontide.io/v1alpha1", "kind": "LuaFunction", "metadata": {"name": "broken"},
           "spec": {"entryId": "app.api:broken", "source": "local x = 1\n\nlocal y = = 2\nreturn x\n"}}
    apply(cluster, namespace, [bad])

    def marked() -> dict[str, Any] | None:
        cond = ready(cluster.get("luafunctions", "broken", namespace) or {})
        return cond if cond.get("status") == "False" else None

    cond = marked() or eventually(marked, what="Ready=False on the broken LuaFunction")
    assert cond["reason"] == "Invalid" and "field source, line 3:" in cond["message"]
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", "involvedObject.name=broken").stdout
    assert "Warning" in events and "Invalid" in events
    time.sleep(1)
    tw = by_entry(cluster, namespace, "temporalworkers", "app:temporal_worker")
    assert tw["status"]["bundleHash"] == before and ready(tw)["status"] == "True"
    assert "left out LuaFunction/broken" in ready(tw)["message"]
    cluster.kubectl("delete", "luafunctions", "broken", "-n", namespace)


def test_two_operator_replicas_one_leads(cluster: Cluster, namespace: str, operators: Operators,
                                         workers: dict[str, podrun.PodProcess]) -> None:
    (first,) = operators.running
    second = operators.start(wait_ready=False)
    eventually(lambda: readyz(second) == "standby", timeout=30, what="the second replica to stand by")
    apply(cluster, namespace, [workflow("ha-1", "e2e:collect", "e2e:worker", 0)])
    phase(cluster, namespace, "ha-1", "Succeeded")
    assert readyz(second) == "standby"
    operators.stop(first, signal.SIGKILL)  # no release: the standby waits out the Lease (6s)
    eventually(lambda: readyz(second) == "leading", timeout=30, what="the standby to take over")
    apply(cluster, namespace, [workflow("ha-2", "e2e:collect", "e2e:worker", 0)])
    assert phase(cluster, namespace, "ha-2", "Succeeded")["status"]["result"] == {}  # Lua: an empty table
