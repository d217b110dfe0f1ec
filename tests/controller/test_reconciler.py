"""A namespace's entry CRs -> Ready conditions, bundles and Deployments (against an in-memory API)."""

from __future__ import annotations

import json
from typing import Any

from _crs import WORKFLOW_LUA, cr, small_app
from _fakekube import FakeKube, object_path

from moontide.k8s import bundle, objects
from moontide.k8s.config import OperatorConfig
from moontide.k8s.kinds import ANNOTATION_ACCEPT_BUNDLE
from moontide.controller.operator_cmd import code_of
from moontide.controller.reconciler import Reconciler
from moontide.lua import check_syntax


def _setup(crs: list[dict[str, Any]], **cfg: Any) -> tuple[FakeKube, Reconciler]:
    fake = FakeKube()
    for c in crs:
        fake.put(c)
    rec = Reconciler(fake, OperatorConfig(worker_image="img", **cfg), check_lua=check_syntax,  # type: ignore[arg-type]
                     code_of=code_of)
    return fake, rec


def _rolled_out(fake: FakeKube, owner: dict[str, Any], available: int = 1) -> dict[str, Any]:
    """What the Deployment controller writes once the pods are up."""
    dep = _deployment(fake, owner)
    dep["status"] = {"observedGeneration": dep["metadata"]["generation"], "replicas": 1, "updatedReplicas": 1,
                     "readyReplicas": available, "availableReplicas": available}
    return dep


def _status(fake: FakeKube, c: dict[str, Any]) -> dict[str, Any]:
    return fake.objects[_path(c)].get("status") or {}


def _path(c: dict[str, Any]) -> str:
    return object_path(c)


def _ready(fake: FakeKube, c: dict[str, Any]) -> dict[str, Any]:
    return next(x for x in _status(fake, c)["conditions"] if x["type"] == "Ready")


def _deployment(fake: FakeKube, worker: dict[str, Any]) -> dict[str, Any]:
    return fake.objects[f"/apis/apps/v1/namespaces/ns/deployments/{worker['metadata']['name']}"]


def _bundle(fake: FakeKube, worker: dict[str, Any]) -> dict[str, Any]:
    name = objects.bundle_configmap_name(worker["metadata"]["name"])
    return json.loads(fake.objects[f"/api/v1/namespaces/ns/configmaps/{name}"]["data"]["bundle.json"])


async def test_valid_namespace_deploys_the_worker_and_marks_everything_ready() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker = crs[1]
    for c in crs:
        assert _ready(fake, c)["status"] == ("False" if c is worker else "True"), c["kind"]
        assert _status(fake, c)["observedGeneration"] == 1
    # deployed, but no pod is available yet: the worker is not Ready
    assert _ready(fake, worker)["reason"] == "Progressing"
    assert _ready(fake, worker)["message"].startswith("0/1 pods available")
    _rolled_out(fake, worker)
    await rec.reconcile("ns")
    ready = _ready(fake, worker)
    assert ready["status"] == "True" and ready["reason"] == "Deployed"
    assert ready["message"].startswith("1/1 pods available; bundle ") and "4 entries" in ready["message"]
    status = _status(fake, worker)
    assert status["availableReplicas"] == 1
    dep = _deployment(fake, worker)
    assert dep["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] == status["bundleHash"]
    assert status["taskQueue"] == "q" and status["temporalAddress"] == "temporal:7233"
    assert {r["spec"]["entryId"] for r in _bundle(fake, worker)["resources"]} == {"app:client", "app:worker",
                                                                                 "app:wf", "app:fn"}
    code = fake.objects[f"/api/v1/namespaces/ns/configmaps/{objects.code_configmap_name(worker['metadata']['name'])}"]
    assert len(code["data"]) == 1 and next(iter(code["data"])).endswith(".json")


async def test_reconcile_twice_writes_nothing_new() -> None:
    fake, rec = _setup(small_app())
    await rec.reconcile("ns")
    patches, events = len(fake.status_patches), len(fake.events)
    await rec.reconcile("ns")
    assert len(fake.status_patches) == patches and len(fake.events) == events


async def test_a_bad_change_keeps_the_last_good_version_deployed() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker, wf = crs[1], crs[2]
    good_hash = _status(fake, worker)["bundleHash"]
    broken = json.loads(json.dumps(fake.objects[_path(wf)]))
    broken["spec"]["source"] = "local function main(\n  return 1\nend\n"
    broken["metadata"]["generation"] = 2
    fake.put(broken)
    await rec.reconcile("ns")
    ready = _ready(fake, wf)
    assert ready["status"] == "False" and ready["reason"] == "Invalid" and "line" in ready["message"]
    assert ready["observedGeneration"] == 2
    assert _status(fake, worker)["bundleHash"] == good_hash  # nothing rolled
    deployed = {r["spec"]["entryId"]: r["spec"] for r in _bundle(fake, worker)["resources"]}
    assert deployed["app:wf"]["source"] == WORKFLOW_LUA
    assert any(e["reason"] == "Invalid" and e["type"] == "Warning" for e in fake.events)


def _worker_pod(fake: FakeKube, worker: dict[str, Any], name: str) -> str:
    """A pod of the worker's Deployment, as its ReplicaSet would make it."""
    template = _deployment(fake, worker)["spec"]["template"]
    path = f"/api/v1/namespaces/ns/pods/{name}"
    fake.put({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "ns", **template["metadata"]},
              "spec": template["spec"]})
    return path


async def test_a_lua_change_reaches_the_worker_pods_without_a_roll_and_keeps_old_code() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker, wf = crs[1], crs[2]
    first = _status(fake, worker)["bundleHash"]
    template = _deployment(fake, worker)["spec"]["template"]
    pods = [_worker_pod(fake, worker, f"w-{i}") for i in range(2)]
    changed = json.loads(json.dumps(fake.objects[_path(wf)]))
    changed["spec"]["source"] = WORKFLOW_LUA.replace("return x", "return { x = x }")
    fake.put(changed)
    await rec.reconcile("ns")
    second = _status(fake, worker)["bundleHash"]
    assert second != first
    assert _deployment(fake, worker)["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] == second
    assert _deployment(fake, worker)["spec"]["template"] == template  # no roll
    # each pod is told (the kubelet then refreshes its bundle volume), once
    for path in pods:
        assert fake.objects[path]["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] == second
    patches = [p for m, p in fake.requests if m == "PATCH" and "/pods/" in p]
    assert sorted(patches) == sorted(pods)
    await rec.reconcile("ns")
    assert [p for m, p in fake.requests if m == "PATCH" and "/pods/" in p] == patches
    code = fake.objects[f"/api/v1/namespaces/ns/configmaps/{objects.code_configmap_name(worker['metadata']['name'])}"]
    assert len(code["data"]) == 2  # the old version stays for executions pinned to it
    assert [e["message"] for e in fake.events if e["reason"] == "BundleUpdated"] == [
        f"bundle {first} -> {second}: 2 pods reload it in place"]


async def test_a_worker_change_rolls_its_pods() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker = crs[1]
    template = _deployment(fake, worker)["spec"]["template"]
    changed = json.loads(json.dumps(fake.objects[_path(worker)]))
    changed["spec"]["deployment"] = {"replicas": 2}
    fake.put(changed)
    await rec.reconcile("ns")
    after = _deployment(fake, worker)["spec"]["template"]["metadata"]["annotations"]
    assert after[objects.ANNOTATION_CONFIG_HASH] != template["metadata"]["annotations"][objects.ANNOTATION_CONFIG_HASH]


async def test_an_invalid_cr_without_a_good_version_is_left_out() -> None:
    crs = [*small_app(), cr("function.lua", "app:bad", source="return = 1")]
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    assert _ready(fake, crs[-1])["status"] == "False"
    worker = crs[1]
    _rolled_out(fake, worker)
    await rec.reconcile("ns")
    assert _ready(fake, worker)["status"] == "True"
    assert "left out FunctionX" not in _ready(fake, worker)["message"]
    assert "left out LuaFunction/" in _ready(fake, worker)["message"]
    assert "app:bad" not in {r["spec"]["entryId"] for r in _bundle(fake, worker)["resources"]}


async def test_worker_without_a_temporal_address_says_so() -> None:
    crs = small_app()
    del crs[0]["spec"]["address"]
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    ready = _ready(fake, crs[1])
    assert ready["status"] == "False" and ready["reason"] == "NoTemporalAddress"


async def test_large_sources_are_read_from_configmaps_and_hashed() -> None:
    crs = [*small_app(), cr("library.lua", "app:lib", sourceFrom={"configMapKeyRef": {"name": "big", "key": "l.lua"}})]
    fake, rec = _setup(crs)
    fake.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "big", "namespace": "ns"},
              "data": {"l.lua": "return {}"}})
    await rec.reconcile("ns")
    worker = crs[1]
    first = _status(fake, worker)["bundleHash"]
    vol = next(v for v in _deployment(fake, worker)["spec"]["template"]["spec"]["volumes"] if v["name"] == "bundle")
    assert {"configMap": {"name": "big", "items": [{"key": "l.lua", "path": "sources/big/l.lua"}]}} in \
        vol["projected"]["sources"]
    fake.objects["/api/v1/namespaces/ns/configmaps/big"]["data"]["l.lua"] = "return { changed = true }"
    await rec.reconcile("ns")
    assert _status(fake, worker)["bundleHash"] != first


def test_observe_ignores_status_only_changes() -> None:
    fake, rec = _setup([])
    poked: list[str] = []
    rec.poke = poked.append  # type: ignore[method-assign]
    body = {"metadata": {"uid": "u1", "generation": 1, "namespace": "ns"}}
    rec.observe(None, body)
    rec.observe("MODIFIED", body)
    rec.observe("MODIFIED", {"metadata": {**body["metadata"], "generation": 2}})
    # a bundle accepted despite a replay divergence: an annotation, yet a change to act on
    accepted = {"metadata": {**body["metadata"], "generation": 2,
                             "annotations": {ANNOTATION_ACCEPT_BUNDLE: "abc"}}}
    rec.observe("MODIFIED", accepted)
    rec.observe("MODIFIED", accepted)
    rec.observe("DELETED", body)
    assert poked == ["ns", "ns", "ns", "ns"]
    assert bundle.BUNDLE_KEY == "bundle.json"


# -- Ready says whether pods serve (issue 14) -------------------------------------------------------------------

def _pod(fake: FakeKube, owner: dict[str, Any], name: str, *, stale: bool = False,
         **container_status: Any) -> dict[str, Any]:
    """A worker pod of the Deployment's current template (``stale``: of an older one)."""
    annotations = dict(_deployment(fake, owner)["spec"]["template"]["metadata"]["annotations"])
    if stale:
        annotations[objects.ANNOTATION_CONFIG_HASH] = "older"
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ns",
                         "labels": {"app.kubernetes.io/instance": owner["metadata"]["name"],
                                    "app.kubernetes.io/component": "worker"},
                         "annotations": annotations},
            "status": {"phase": "Running", "containerStatuses": [{"name": "worker", "ready": False,
                                                                   **container_status}]}}


async def test_pods_that_cannot_be_created_say_failed_create() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker = crs[1]
    dep = _deployment(fake, worker)
    dep["status"] = {"replicas": 0, "conditions": [
        {"type": "Progressing", "status": "True", "reason": "NewReplicaSetCreated"},
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "w-1" is forbidden: error looking up service account ns/moontide-worker: '
                    'serviceaccount "moontide-worker" not found'}]}
    await rec.reconcile("ns")
    ready = _ready(fake, worker)
    assert ready["status"] == "False" and ready["reason"] == "FailedCreate"
    assert ready["message"].startswith("0/1 pods available: pods \"w-1\" is forbidden") and \
        "serviceaccount" in ready["message"]
    assert _status(fake, worker)["replicas"] == 0
    assert [e["type"] for e in fake.events if e["reason"] == "FailedCreate"] == ["Warning"]


async def test_a_crashing_pod_names_itself_and_why() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker = crs[1]
    fake.put(_pod(fake, worker, "w-abc", restartCount=3,
                  state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting"}},
                  lastState={"terminated": {"reason": "Error", "exitCode": 1, "message": "no Temporal at x:7233"}}))
    await rec.reconcile("ns")
    ready = _ready(fake, worker)
    assert ready["status"] == "False" and ready["reason"] == "CrashLoopBackOff"
    assert "pod w-abc, container worker: CrashLoopBackOff" in ready["message"]
    assert "last exit: Error, exit code 1: no Temporal at x:7233" in ready["message"]
    assert any(e["reason"] == "CrashLoopBackOff" and e["type"] == "Warning" for e in fake.events)


async def test_the_pods_of_the_current_template_are_looked_at_first() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker = crs[1]
    fake.put(_pod(fake, worker, "w-1-old", stale=True, state={"terminated": {"reason": "Error", "exitCode": 1}}))
    fake.put(_pod(fake, worker, "w-2-new", state={"waiting": {"reason": "ImagePullBackOff"}}))
    await rec.reconcile("ns")
    ready = _ready(fake, worker)
    assert ready["reason"] == "ImagePullBackOff" and "pod w-2-new" in ready["message"], ready


async def test_deployment_events_and_rechecks_update_ready_without_rebuilding() -> None:
    crs = small_app()
    fake, rec = _setup(crs, recheck_seconds=0.01, settle_seconds=0.0)
    worker = crs[1]
    try:
        rec.poke("ns")
        await _until(lambda: worker_status(fake, worker).get("reason") == "Progressing")
        applied = len(fake.applied)
        # a pod appears and fails, with no Deployment event: the re-check timer sees it
        fake.put(_pod(fake, worker, "w-1", state={"waiting": {"reason": "ErrImageNeverPull",
                                                                "message": "image img not present"}}))
        await _until(lambda: worker_status(fake, worker).get("reason") == "ErrImageNeverPull")
        # fixed: the Deployment controller reports an available pod
        del fake.objects["/api/v1/namespaces/ns/pods/w-1"]
        rec.deployment_event("MODIFIED", _rolled_out(fake, worker))
        await _until(lambda: worker_status(fake, worker).get("status") == "True")
        assert len(fake.applied) == applied  # no bundle, ConfigMap or Deployment applied again
        assert worker["metadata"]["name"] not in rec._ns["ns"].recheck  # available: no more re-checks
    finally:
        await rec.stop()


def worker_status(fake: FakeKube, worker: dict[str, Any]) -> dict[str, Any]:
    conds = _status(fake, worker).get("conditions") or []
    return next((c for c in conds if c["type"] == "Ready"), {})


async def _until(check: Any, *, rounds: int = 2000) -> None:
    import asyncio

    for _ in range(rounds):
        if check():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("condition never held")


async def test_an_edited_or_deleted_deployment_is_applied_again() -> None:
    crs = small_app()
    fake, rec = _setup(crs, settle_seconds=0.0)
    worker = crs[1]
    try:
        rec.poke("ns")
        await _until(lambda: "ns" in rec.done)
        dep = _deployment(fake, worker)
        applied = len(fake.applied)
        edited = json.loads(json.dumps(dep))
        edited["metadata"]["generation"] += 1  # kubectl edit
        rec.deployment_event("MODIFIED", edited)
        await _until(lambda: len(fake.applied) > applied)
    finally:
        await rec.stop()


# -- the worker service account (issue 14) -----------------------------------------------------------------------

async def test_the_operator_makes_the_worker_service_account_where_pods_use_it() -> None:
    crs = [*small_app(), cr("temporal.worker", "app:own", client="client", task_queue="q2",
                            deployment={"serviceAccountName": "mine"})]
    fake, rec = _setup(crs, worker_service_account="moontide-worker", create_worker_service_account=True)
    await rec.reconcile("ns")
    sa = fake.objects["/api/v1/namespaces/ns/serviceaccounts/moontide-worker"]
    assert sa["automountServiceAccountToken"] is False
    assert sa["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "moontide-operator"
    # owned by the workers that use it (not the one with its own account): deleted with the last of them
    assert [(r["kind"], r["name"], r["controller"]) for r in sa["metadata"]["ownerReferences"]] == \
        [("TemporalWorker", crs[1]["metadata"]["name"], False)]
    assert _deployment(fake, crs[1])["spec"]["template"]["spec"]["serviceAccountName"] == "moontide-worker"
    assert _deployment(fake, crs[-1])["spec"]["template"]["spec"]["serviceAccountName"] == "mine"
    assert "/api/v1/namespaces/ns/serviceaccounts/mine" not in fake.objects


async def test_no_worker_service_account_is_made_unless_asked() -> None:
    fake, rec = _setup(small_app(), worker_service_account="given")
    await rec.reconcile("ns")
    assert not [p for p in fake.objects if "/serviceaccounts/" in p]
    assert _deployment(fake, small_app()[1])["spec"]["template"]["spec"]["serviceAccountName"] == "given"
    fake, rec = _setup(small_app()[2:], worker_service_account="moontide-worker", create_worker_service_account=True)
    await rec.reconcile("ns")  # no worker, no service: nothing uses it
    assert not [p for p in fake.objects if "/serviceaccounts/" in p]


async def test_a_validation_pass_marks_only_the_valid_and_deploys_nothing() -> None:
    """While a burst has not settled: what is valid so far is Ready, nothing is Invalid for now, nothing rolls."""
    crs = [*small_app(), cr("function.lua", "app:bad", source="return = 1")]
    fake, rec = _setup(crs)
    await rec.reconcile("ns", deploy=False)
    assert _ready(fake, crs[2])["status"] == "True" and _ready(fake, crs[3])["status"] == "True"
    assert "conditions" not in _status(fake, crs[-1])  # invalid for now: said after the burst
    assert "conditions" not in _status(fake, crs[1])  # the worker: not deployed yet
    assert not [p for p in fake.objects if "/deployments/" in p or "/configmaps/" in p]
    assert not fake.events


async def test_a_burst_is_one_reconcile_and_one_bundle() -> None:
    crs = small_app()
    fake, rec = _setup([], settle_seconds=0.05, settle_max_seconds=30.0)
    try:
        for c in crs:  # one CR at a time, as kubectl applies them
            fake.put(c)
            rec.observe("ADDED", c)
            await _sleep(0.01)
        await _until(lambda: "ns" in rec.done)
        await _sleep(0.2)
        bundles = [o for o in fake.applied if o["kind"] == "ConfigMap" and o["metadata"]["name"].endswith("-bundle")]
        assert len(bundles) == 1 and len([o for o in fake.applied if o["kind"] == "Deployment"]) == 1
        assert "4 entries" in worker_status(fake, crs[1])["message"]
    finally:
        await rec.stop()


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


async def test_the_reconcile_after_a_validation_pass_reads_again_only_after_a_change() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    entry_lists = lambda: [u for m, u in fake.requests if m == "GET" and u.startswith("/apis/moontide.io/")  # noqa: E731
                           and len(u.split("/")) == 7]  # /apis/moontide.io/v1alpha1/namespaces/ns/<plural>
    await rec.reconcile("ns", deploy=False)
    read = len(entry_lists())
    patches = len(fake.status_patches)
    await rec.reconcile("ns")  # nothing changed since the pass: its view is used again
    assert len(entry_lists()) == read
    assert len(fake.status_patches) == patches + 1  # only the worker's: the others were written by the pass
    await rec.reconcile("ns", deploy=False)
    rec._ns["ns"].last = rec._ns["ns"].snapshot.taken + 1  # type: ignore[union-attr]  # a CR changed since
    await rec.reconcile("ns")
    assert len(entry_lists()) == 3 * read


async def test_a_deployment_event_does_not_undo_an_invalid_ready() -> None:
    crs = small_app()
    fake, rec = _setup(crs, settle_seconds=0.0)
    client, worker = crs[0], crs[1]
    try:
        rec.poke("ns")
        await _until(lambda: worker_status(fake, worker).get("reason") == "Progressing")
        changed = json.loads(json.dumps(fake.objects[_path(client)]))
        del changed["spec"]["address"]  # the worker cannot be deployed any more
        changed["metadata"]["generation"] = 2
        fake.put(changed)
        rec.observe("MODIFIED", changed)
        await _until(lambda: worker_status(fake, worker).get("reason") == "NoTemporalAddress")
        done = rec.done["ns"]
        rec.deployment_event("MODIFIED", _rolled_out(fake, worker))  # the old pods are up
        await _until(lambda: rec.done["ns"] > done)  # answered by a full reconcile, not the pods alone
        assert worker_status(fake, worker)["reason"] == "NoTemporalAddress"
    finally:
        await rec.stop()
