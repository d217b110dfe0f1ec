"""The Kubernetes objects the operator wants: bundle ConfigMaps and Deployments (pure functions).

``reconciler`` calls these with custom resources and validated entries and
server-side applies what they return. Nothing here talks to the API server,
so every field of a worker pod is unit-tested (tests/controller/test_objects.py)
and the e2e suite runs the exact command and environment a Deployment holds.

A worker pod: ``moontide worker --bundle /etc/moontide/bundle --worker ID``,
the bundle ConfigMap (and ConfigMaps of large sources) mounted read-only and
reloaded in place when it changes (the pods roll only for a changed
TemporalWorker or TemporalClient: ``config_hash``), old
code versions (for executions pinned to them) from a second ConfigMap,
Temporal's address and namespace from the referenced TemporalClient as
environment, secrets only as ``secretKeyRef`` or mounted Secrets, non-root with
a read-only root filesystem (``/tmp`` is an emptyDir).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import durations, errors
from . import bundle
from .kinds import (
    ANNOTATION_BUNDLE_HASH,
    ANNOTATION_CONFIG_HASH,
    API_VERSION,
    LABEL_COMPONENT,
    LABEL_INSTANCE,
    LABEL_MANAGED_BY,
    LABEL_NAME,
    LABEL_OWNER,
    MANAGED_BY,
)
from .config import OperatorConfig

__all__ = [
    "BUNDLE_DIR",
    "CODE_DIR",
    "ENV_ADDRESS",
    "ENV_API_KEY",
    "ENV_NAMESPACE",
    "ENV_TLS",
    "ENV_TLS_DIR",
    "ENV_TLS_SERVER_NAME",
    "TLS_DIR",
    "bundle_configmap",
    "bundle_configmap_name",
    "code_configmap",
    "code_configmap_name",
    "config_hash",
    "owner_reference",
    "service_deployment",
    "temporal_address",
    "worker_deployment",
    "worker_service_account",
]

BUNDLE_DIR = "/etc/moontide/bundle"
CODE_DIR = "/etc/moontide/code"
TLS_DIR = "/etc/moontide/temporal-tls"

ENV_ADDRESS = "MOONTIDE_TEMPORAL_ADDRESS"
ENV_NAMESPACE = "MOONTIDE_TEMPORAL_NAMESPACE"
ENV_API_KEY = "MOONTIDE_TEMPORAL_API_KEY"
ENV_TLS = "MOONTIDE_TEMPORAL_TLS"
ENV_TLS_DIR = "MOONTIDE_TEMPORAL_TLS_DIR"
ENV_TLS_SERVER_NAME = "MOONTIDE_TEMPORAL_TLS_SERVER_NAME"

_SECURITY_CONTEXT = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
}
_POD_SECURITY_CONTEXT = {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                         "seccompProfile": {"type": "RuntimeDefault"}}


def bundle_configmap_name(cr_name: str) -> str:
    return f"{cr_name}-bundle"


def code_configmap_name(cr_name: str) -> str:
    return f"{cr_name}-code"


def owner_reference(cr: Mapping[str, Any]) -> dict[str, Any]:
    meta = cr["metadata"]
    return {"apiVersion": API_VERSION, "kind": cr["kind"], "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _labels(cr: Mapping[str, Any], component: str, cfg: OperatorConfig) -> dict[str, str]:
    return {**cfg.labels, LABEL_NAME: "moontide", LABEL_INSTANCE: cr["metadata"]["name"],
            LABEL_COMPONENT: component, LABEL_MANAGED_BY: MANAGED_BY,
            LABEL_OWNER: f"{cr['kind']}.{cr['metadata']['name']}"}


def _metadata(cr: Mapping[str, Any], name: str, component: str, cfg: OperatorConfig) -> dict[str, Any]:
    return {"name": name, "namespace": cr["metadata"]["namespace"], "labels": _labels(cr, component, cfg),
            "ownerReferences": [owner_reference(cr)]}


def bundle_configmap(cr: Mapping[str, Any], text: str, digest: str, component: str,
                     cfg: OperatorConfig) -> dict[str, Any]:
    """The bundle ConfigMap of a TemporalWorker or ProcessService CR."""
    meta = _metadata(cr, bundle_configmap_name(cr["metadata"]["name"]), component, cfg)
    meta["annotations"] = {ANNOTATION_BUNDLE_HASH: digest}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {bundle.BUNDLE_KEY: text}}


def code_configmap(cr: Mapping[str, Any], codes: Mapping[str, str], cfg: OperatorConfig) -> dict[str, Any]:
    """Lua code versions by digest (``<digest>.json``), for executions pinned to code no longer current."""
    meta = _metadata(cr, code_configmap_name(cr["metadata"]["name"]), "worker", cfg)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
            "data": {f"{d}.json": text for d, text in codes.items()}}


def worker_service_account(namespace: str, name: str, owners: Sequence[Mapping[str, Any]],
                           cfg: OperatorConfig) -> dict[str, Any]:
    """The service account of worker and service pods: no permissions, no token (they never call the API).

    Owned (not controlled) by every TemporalWorker and ProcessService of the namespace whose pods use it, so
    the garbage collector deletes it with the last of them.
    """
    refs = [{**owner_reference(o), "controller": False, "blockOwnerDeletion": False}
            for o in sorted(owners, key=lambda o: (o["kind"], o["metadata"]["name"]))]
    labels = {**cfg.labels, LABEL_NAME: "moontide", LABEL_COMPONENT: "worker", LABEL_MANAGED_BY: MANAGED_BY}
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": refs},
            "automountServiceAccountToken": False}


def temporal_address(client_spec: Mapping[str, Any] | None, cfg: OperatorConfig) -> str:
    """The Temporal frontend of a TemporalClient spec, or the operator's default; Invalid when neither."""
    address = (client_spec or {}).get("address") or cfg.temporal_address
    if not address:
        raise errors.Invalid("the TemporalClient has no address and the operator has no --temporal-address "
                             "(an embedded dev server cannot run inside a worker pod)")
    return str(address)


def _temporal(client_spec: Mapping[str, Any] | None, cfg: OperatorConfig
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(env, volumes, volume mounts) connecting a pod to the TemporalClient's server."""
    spec = client_spec or {}
    env: list[dict[str, Any]] = [
        {"name": ENV_ADDRESS, "value": temporal_address(spec, cfg)},
        {"name": ENV_NAMESPACE, "value": str(spec.get("namespace") or "default")},
    ]
    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    ref = spec.get("apiKeySecretRef")
    if ref:
        env.append({"name": ENV_API_KEY, "valueFrom": {"secretKeyRef": {"name": ref["name"], "key": ref["key"]}}})
    tls = spec.get("tls") or {}
    auth_type = (spec.get("auth") or {}).get("type")
    tls_secret = (spec.get("tlsSecretRef") or {}).get("name")
    if tls.get("enabled") or tls_secret or auth_type == "mtls":
        env.append({"name": ENV_TLS, "value": "true"})
        if tls.get("server_name"):
            env.append({"name": ENV_TLS_SERVER_NAME, "value": str(tls["server_name"])})
    if tls_secret:
        env.append({"name": ENV_TLS_DIR, "value": TLS_DIR})
        volumes.append({"name": "temporal-tls", "secret": {"secretName": tls_secret}})
        mounts.append({"name": "temporal-tls", "mountPath": TLS_DIR, "readOnly": True})
    return env, volumes, mounts


def _bundle_volume(cr_name: str, refs: list[tuple[str, str]]) -> dict[str, Any]:
    sources: list[dict[str, Any]] = [{"configMap": {"name": bundle_configmap_name(cr_name)}}]
    by_cm: dict[str, list[str]] = {}
    for cm, key in refs:
        by_cm.setdefault(cm, []).append(key)
    for cm, keys in sorted(by_cm.items()):
        items = [{"key": k, "path": f"{bundle.SOURCES_DIR}/{cm}/{k}"} for k in sorted(keys)]
        sources.append({"configMap": {"name": cm, "items": items}})
    return {"name": "bundle", "projected": {"sources": sources}}


def _grace_seconds(entry_data: Mapping[str, Any]) -> int:
    stop = (entry_data.get("lifecycle") or {}).get("stop_timeout", "10s")
    return max(30, int(durations.parse(stop) / 1e9) + 5)


def config_hash(cr: Mapping[str, Any], client_spec: Mapping[str, Any] | None) -> str:
    """What a worker pod cannot reload in place: its TemporalWorker's spec (worker options, pod settings) and
    its TemporalClient's (the connection). Other entries (Lua) reach running pods with their bundle."""
    return bundle.digest(bundle.dumps({"worker": dict(cr.get("spec") or {}), "client": dict(client_spec or {})}))


def _deployment(cr: Mapping[str, Any], *, component: str, args: list[str], entry_data: Mapping[str, Any],
                client_spec: Mapping[str, Any] | None, refs: list[tuple[str, str]], restart: tuple[str, str],
                replicas: int, strategy: str, extra_volumes: list[dict[str, Any]],
                extra_mounts: list[dict[str, Any]], cfg: OperatorConfig) -> dict[str, Any]:
    name = cr["metadata"]["name"]
    pod = dict((cr.get("spec") or {}).get("deployment") or {})
    env, volumes, mounts = _temporal(client_spec, cfg) if client_spec is not None or cfg.temporal_address \
        else ([], [], [])
    env = [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, *env,
           *(pod.get("env") or [])]
    labels = _labels(cr, component, cfg)
    selector = {LABEL_NAME: "moontide", LABEL_INSTANCE: name, LABEL_COMPONENT: component}
    port = cfg.http_port
    container: dict[str, Any] = {
        "name": component,
        "image": pod.get("image") or cfg.worker_image,
        "command": ["moontide"],
        "args": [*args, "--http-port", str(port)],
        "env": env,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 10,
                          "failureThreshold": 6},
        "volumeMounts": [{"name": "bundle", "mountPath": BUNDLE_DIR, "readOnly": True}, *extra_mounts,
                         {"name": "tmp", "mountPath": "/tmp"}, *mounts],
        "securityContext": dict(_SECURITY_CONTEXT),
    }
    if pod.get("imagePullPolicy") or cfg.image_pull_policy:
        container["imagePullPolicy"] = pod.get("imagePullPolicy") or cfg.image_pull_policy
    if pod.get("resources"):
        container["resources"] = pod["resources"]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [_bundle_volume(name, refs), *extra_volumes, {"name": "tmp", "emptyDir": {}}, *volumes],
        "securityContext": dict(_POD_SECURITY_CONTEXT),
        "terminationGracePeriodSeconds": _grace_seconds(entry_data),
        "automountServiceAccountToken": False,
    }
    account = pod.get("serviceAccountName") or cfg.worker_service_account
    if account:
        pod_spec["serviceAccountName"] = account
    for key in ("nodeSelector", "tolerations", "affinity"):
        if pod.get(key):
            pod_spec[key] = pod[key]
    annotations = {**(pod.get("podAnnotations") or {}), restart[0]: restart[1],
                   "prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
    spec: dict[str, Any] = {
        "replicas": replicas,
        "selector": {"matchLabels": selector},
        "strategy": {"type": strategy},
        "template": {"metadata": {"labels": {**(pod.get("podLabels") or {}), **labels}, "annotations": annotations},
                     "spec": pod_spec},
    }
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(cr, name, component, cfg),
            "spec": spec}


def worker_deployment(cr: Mapping[str, Any], *, entry_id: str, entry_data: Mapping[str, Any],
                      client_spec: Mapping[str, Any] | None, refs: list[tuple[str, str]], digest: str,
                      cfg: OperatorConfig) -> dict[str, Any]:
    """The Deployment of a TemporalWorker: ``moontide worker`` on the bundle, env from the TemporalClient.

    Its pods reload a changed bundle in place (``digest`` is only on the Deployment, for people to read);
    they roll when ``config_hash`` changes."""
    replicas = int(((cr.get("spec") or {}).get("deployment") or {}).get("replicas", 1))
    code_volume = {"name": "code", "configMap": {"name": code_configmap_name(cr["metadata"]["name"]),
                                                 "optional": True}}
    code_mount = {"name": "code", "mountPath": CODE_DIR, "readOnly": True}
    args = ["worker", "--bundle", BUNDLE_DIR, "--worker", entry_id, "--code-history", CODE_DIR]
    deployment = _deployment(cr, component="worker", args=args, entry_data=entry_data, client_spec=client_spec,
                             refs=refs, restart=(ANNOTATION_CONFIG_HASH, config_hash(cr, client_spec)),
                             replicas=replicas, strategy="RollingUpdate", extra_volumes=[code_volume],
                             extra_mounts=[code_mount], cfg=cfg)
    deployment["metadata"]["annotations"] = {ANNOTATION_BUNDLE_HASH: digest}
    return deployment


def service_deployment(cr: Mapping[str, Any], *, entry_id: str, entry_data: Mapping[str, Any],
                       client_spec: Mapping[str, Any] | None, refs: list[tuple[str, str]], digest: str,
                       cfg: OperatorConfig) -> dict[str, Any]:
    """The Deployment of a ProcessService: one pod (Recreate: never two copies) running ``moontide service``."""
    args = ["service", "--bundle", BUNDLE_DIR, "--service", entry_id]
    return _deployment(cr, component="service", args=args, entry_data=entry_data, client_spec=client_spec,
                       refs=refs, restart=(ANNOTATION_BUNDLE_HASH, digest), replicas=1, strategy="Recreate",
                       extra_volumes=[], extra_mounts=[], cfg=cfg)
