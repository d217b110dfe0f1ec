"""What a worker or service pod gets: command, environment, volumes, owner, hash, security."""

from __future__ import annotations

from typing import Any

import pytest

from moontide import errors
from moontide.k8s import objects
from moontide.k8s.config import OperatorConfig

from _crs import cr

CFG = OperatorConfig(worker_image="img:1", temporal_address="default-temporal:7233")


def _worker(client_spec: dict[str, Any] | None, **deployment: Any) -> dict[str, Any]:
    owner = cr("temporal.worker", "app:worker", client="client")
    if deployment:
        owner["spec"]["deployment"] = deployment
    return objects.worker_deployment(owner, entry_id="app:worker", entry_data={"lifecycle": {"stop_timeout": "60s"}},
                                     client_spec=client_spec, refs=[("big", "a.lua")], digest="abc123", cfg=CFG)


def _env(dep: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_worker_pod_runs_the_bundle_with_temporal_from_the_client() -> None:
    dep = _worker({"entryId": "app:client", "address": "temporal.example:7233", "namespace": "orders"})
    pod = dep["spec"]["template"]
    container = pod["spec"]["containers"][0]
    assert container["command"] == ["moontide"]
    assert container["args"] == ["worker", "--bundle", objects.BUNDLE_DIR, "--worker", "app:worker",
                                 "--code-history", objects.CODE_DIR, "--http-port", "8080"]
    env = _env(dep)
    assert env[objects.ENV_ADDRESS] == "temporal.example:7233"
    assert env[objects.ENV_NAMESPACE] == "orders"
    # the bundle is reloaded in place: only what the pod cannot reload is in its template
    assert objects.ANNOTATION_BUNDLE_HASH not in pod["metadata"]["annotations"]
    assert dep["metadata"]["annotations"][objects.ANNOTATION_BUNDLE_HASH] == "abc123"
    assert container["image"] == "img:1"
    assert pod["spec"]["terminationGracePeriodSeconds"] == 65


def test_worker_pods_roll_for_their_worker_or_client_not_for_a_new_bundle() -> None:
    def template_hash(dep: dict[str, Any]) -> str:
        return str(dep["spec"]["template"]["metadata"]["annotations"][objects.ANNOTATION_CONFIG_HASH])

    client = {"entryId": "app:client", "address": "temporal.example:7233"}
    base = template_hash(_worker(client))
    owner = cr("temporal.worker", "app:worker", client="client")
    other_bundle = objects.worker_deployment(owner, entry_id="app:worker", entry_data={}, client_spec=client,
                                             refs=[("big", "a.lua")], digest="another", cfg=CFG)
    assert template_hash(other_bundle) == base
    assert template_hash(_worker({**client, "namespace": "other"})) != base
    assert template_hash(_worker(client, replicas=2)) != base


def test_owner_reference_points_at_the_cr() -> None:
    (ref,) = _worker(None)["metadata"]["ownerReferences"]
    assert ref["kind"] == "TemporalWorker" and ref["controller"] and ref["blockOwnerDeletion"]
    assert ref["uid"].startswith("uid-")


def test_no_client_address_falls_back_to_the_operator_default_or_fails() -> None:
    assert _env(_worker({"entryId": "app:client"}))[objects.ENV_ADDRESS] == "default-temporal:7233"
    with pytest.raises(errors.Invalid, match="no address"):
        objects.temporal_address({}, OperatorConfig())


def test_secrets_only_by_reference() -> None:
    dep = _worker({"entryId": "app:client", "address": "a:1", "auth": {"type": "api_key"},
                   "apiKeySecretRef": {"name": "cloud", "key": "api-key"}, "tlsSecretRef": {"name": "certs"},
                   "tls": {"enabled": True, "server_name": "x.tmprl.cloud"}})
    env = _env(dep)
    assert env[objects.ENV_API_KEY] == {"secretKeyRef": {"name": "cloud", "key": "api-key"}}
    assert env[objects.ENV_TLS] == "true" and env[objects.ENV_TLS_SERVER_NAME] == "x.tmprl.cloud"
    assert env[objects.ENV_TLS_DIR] == objects.TLS_DIR
    volumes = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    assert volumes["temporal-tls"] == {"name": "temporal-tls", "secret": {"secretName": "certs"}}
    text = str(dep)
    assert "sekret" not in text


def test_pods_are_non_root_with_a_read_only_root() -> None:
    spec = _worker(None)["spec"]["template"]["spec"]
    sc = spec["containers"][0]["securityContext"]
    assert sc["readOnlyRootFilesystem"] and sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"] for m in spec["containers"][0]["volumeMounts"]}
    assert "/tmp" in mounts


def test_large_sources_are_projected_into_the_bundle() -> None:
    volumes = {v["name"]: v for v in _worker(None)["spec"]["template"]["spec"]["volumes"]}
    sources = volumes["bundle"]["projected"]["sources"]
    owner = cr("temporal.worker", "app:worker")["metadata"]["name"]
    assert sources[0] == {"configMap": {"name": objects.bundle_configmap_name(owner)}}
    assert sources[1] == {"configMap": {"name": "big", "items": [{"key": "a.lua", "path": "sources/big/a.lua"}]}}
    assert volumes["code"]["configMap"]["optional"] is True


def test_deployment_settings_from_the_cr() -> None:
    dep = _worker(None, replicas=3, image="mine:2", resources={"limits": {"cpu": "1"}}, nodeSelector={"a": "b"},
                  env=[{"name": "EXTRA", "value": "1"}], podAnnotations={"x": "y"})
    assert dep["spec"]["replicas"] == 3
    pod = dep["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == "mine:2"
    assert pod["spec"]["containers"][0]["resources"] == {"limits": {"cpu": "1"}}
    assert pod["spec"]["nodeSelector"] == {"a": "b"}
    assert _env(dep)["EXTRA"] == "1"
    assert pod["metadata"]["annotations"]["x"] == "y"


def test_selector_uses_stable_labels_only() -> None:
    dep = _worker(None)
    selector = dep["spec"]["selector"]["matchLabels"]
    assert set(selector) == {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component"}
    assert selector.items() <= dep["spec"]["template"]["metadata"]["labels"].items()


def test_service_pod_is_one_replica_recreated() -> None:
    owner = cr("process.service", "app:svc", process="p", host="h")
    dep = objects.service_deployment(owner, entry_id="app:svc", entry_data={}, client_spec=None, refs=[],
                                     digest="d", cfg=CFG)
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][:5] == ["service", "--bundle", objects.BUNDLE_DIR,
                                                                            "--service", "app:svc"]


def test_bundle_configmap_carries_the_hash() -> None:
    owner = cr("temporal.worker", "app:worker", client="c")
    cm = objects.bundle_configmap(owner, "{}", "h1", "worker", CFG)
    assert cm["data"] == {"bundle.json": "{}"}
    assert cm["metadata"]["annotations"] == {objects.ANNOTATION_BUNDLE_HASH: "h1"}
    assert cm["metadata"]["ownerReferences"][0]["kind"] == "TemporalWorker"
