"""A namespace's entry CRs -> Ready conditions, bundles and Deployments (against an in-memory API)."""

from __future__ import annotations

import json
from typing import Any

from _crs import WORKFLOW_LUA, cr, small_app
from _fakekube import FakeKube

from moontide.controller import bundle, objects
from moontide.controller.config import OperatorConfig
from moontide.controller.operator_cmd import code_of
from moontide.controller.reconciler import Reconciler
from moontide.lua import check_syntax


def _setup(crs: list[dict[str, Any]]) -> tuple[FakeKube, Reconciler]:
    fake = FakeKube()
    for c in crs:
        fake.put(c)
    rec = Reconciler(fake, OperatorConfig(worker_image="img"), check_lua=check_syntax, code_of=code_of)  # type: ignore[arg-type]
    return fake, rec


def _status(fake: FakeKube, c: dict[str, Any]) -> dict[str, Any]:
    return fake.objects[_path(c)].get("status") or {}


def _path(c: dict[str, Any]) -> str:
    from moontide.controller.kube import object_path

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
    for c in crs:
        assert _ready(fake, c)["status"] == "True", c["kind"]
        assert _status(fake, c)["observedGeneration"] == 1
    worker = crs[1]
    status = _status(fake, worker)
    dep = _deployment(fake, worker)
    assert dep["spec"]["template"]["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] == status["bundleHash"]
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


async def test_a_good_change_rolls_the_workers_and_keeps_old_code() -> None:
    crs = small_app()
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    worker, wf = crs[1], crs[2]
    first = _status(fake, worker)["bundleHash"]
    changed = json.loads(json.dumps(fake.objects[_path(wf)]))
    changed["spec"]["source"] = WORKFLOW_LUA.replace("return x", "return { x = x }")
    fake.put(changed)
    await rec.reconcile("ns")
    second = _status(fake, worker)["bundleHash"]
    assert second != first
    assert _deployment(fake, worker)["spec"]["template"]["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] \
        == second
    code = fake.objects[f"/api/v1/namespaces/ns/configmaps/{objects.code_configmap_name(worker['metadata']['name'])}"]
    assert len(code["data"]) == 2  # the old version stays for executions pinned to it
    assert any(e["reason"] == "BundleUpdated" for e in fake.events)


async def test_an_invalid_cr_without_a_good_version_is_left_out() -> None:
    crs = [*small_app(), cr("function.lua", "app:bad", source="return = 1")]
    fake, rec = _setup(crs)
    await rec.reconcile("ns")
    assert _ready(fake, crs[-1])["status"] == "False"
    worker = crs[1]
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
    rec.observe("DELETED", body)
    assert poked == ["ns", "ns", "ns"]
    assert bundle.BUNDLE_KEY == "bundle.json"
