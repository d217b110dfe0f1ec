"""CustomResourceDefinitions of group moontide.io, generated from the entry schemas.

``moontide.entries.SCHEMAS`` is the single source of truth: a CR's ``spec`` is
the entry's data with the same field names, plus ``entryId`` (the exact entry
ID; a CR name must be a DNS name) and a few Kubernetes-only fields (a
ConfigMap reference for large Lua, secret references, the pod settings of a
Deployment). ``Workflow`` (a spawn) is defined here. The schemas are deep
copies made structural (OpenAPI v3 as Kubernetes wants it), so the API server
itself refuses a bad enum, pattern, type or minimum with a 422.

``python -m moontide.tools.crds`` (or ``moontide crds --write``)
rewrites ``crds/`` and ``helm/moontide/crds/``; tests/controller/test_crds.py
fails when they drift from the schemas.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from .. import durations
from ..entries import LUA_KINDS, SCHEMAS, Schema
from ..entries._schemas import NAME_PATTERN
from ..k8s.kinds import CATEGORY, ENTRY_RESOURCES, GROUP, K8S_ONLY_FIELDS, VERSION, WORKFLOW, Resource

__all__ = ["ENTRY_ID_PATTERN", "K8S_ONLY_FIELDS", "PHASES", "crd", "crds", "render", "write"]

_NAME = NAME_PATTERN.strip("^$")
#: ``namespace:name`` exactly (no reference shorthand: a CR names the entry it is).
ENTRY_ID_PATTERN = f"^{_NAME}:{_NAME}$"
#: Phases of a Workflow's execution.
PHASES = ("Pending", "Running", "Succeeded", "Failed", "Canceled", "Terminated", "TimedOut")

_PRESERVE = {"x-kubernetes-preserve-unknown-fields": True}


def _string(description: str, **extra: Any) -> Schema:
    return {"type": "string", "description": description, **extra}


def _key_ref(description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "properties": {
            "name": _string("Name of the object, in the custom resource's namespace."),
            "key": _string("Key in its data."),
        },
        "required": ["name", "key"],
    }


def structural(schema: Schema) -> Schema:
    """A deep copy of an entry schema as a Kubernetes structural schema.

    ``additionalProperties: false`` has no structural equivalent (Kubernetes
    prunes unknown fields instead); everything else the entry schemas use
    (type, enum, pattern, minimum, default, preserve-unknown) carries over,
    except an empty-string default: kube-apiserver 1.20 refuses it ("Invalid
    value: null"), and the entry loader fills it in anyway.
    """
    out = copy.deepcopy(schema)
    _convert(out)
    return out


def _convert(node: Any) -> None:
    if not isinstance(node, dict):
        return
    if node.get("additionalProperties") is False:
        del node["additionalProperties"]
    elif node.get("additionalProperties") is True:
        del node["additionalProperties"]
        node.update(_PRESERVE)
    if node.get("default") == "":
        del node["default"]
    for sub in node.get("properties", {}).values():
        _convert(sub)
    for key in ("items", "additionalProperties"):
        _convert(node.get(key))


_CONDITIONS: Schema = {
    "type": "array",
    "description": "Kubernetes-style conditions: Ready (every kind), Succeeded (Workflow).",
    "x-kubernetes-list-type": "map",
    "x-kubernetes-list-map-keys": ["type"],
    "items": {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": _string("Ready, or Succeeded for a Workflow."),
            "status": _string("True, False or Unknown.", enum=["True", "False", "Unknown"]),
            "reason": _string("One CamelCase word: why (an error kind such as Invalid, or Valid, Running...)."),
            "message": _string("What happened, for people (file, entry, field and Lua line of a problem)."),
            "observedGeneration": {"type": "integer", "description": "metadata.generation this was computed for."},
            "lastTransitionTime": _string("When status last changed.", format="date-time"),
        },
    },
}


def _entry_status(kind: str) -> Schema:
    props: dict[str, Schema] = {
        "observedGeneration": {"type": "integer", "description": "metadata.generation last reconciled."},
        "conditions": _CONDITIONS,
    }
    if kind in ("temporal.worker", "process.service"):
        props |= {
            "bundleHash": _string("Hash of the entries bundle the pods run (also a pod template annotation)."),
            "bundleConfigMap": _string("ConfigMap holding the bundle."),
            "deployment": _string("The Deployment running the pods."),
            "replicas": {"type": "integer", "description": "Pods the Deployment has."},
            "readyReplicas": {"type": "integer", "description": "Pods ready."},
            "availableReplicas": {"type": "integer",
                                  "description": "Pods available (Ready is True only when at least one is)."},
            "updatedReplicas": {"type": "integer", "description": "Pods running the current bundle."},
        }
    if kind == "temporal.worker":
        props |= {
            "taskQueue": _string("The Temporal task queue the workers poll."),
            "temporalAddress": _string("The Temporal frontend the workers connect to."),
        }
    if kind == "process.service":
        props |= {
            "state": _string("Running (a pod is available), Starting, or Failed (the pod-level reason is Ready's).",
                             enum=["Starting", "Running", "Failed"]),
            "restarts": {"type": "integer", "description": "Restarts of the service's container."},
            "lastError": _string("Last termination message or reason of the service's container."),
        }
    return {"type": "object", "description": "Observed state, written by the operator.", "properties": props}


_DEPLOYMENT: Schema = {
    "type": "object",
    "description": "Kubernetes settings of the Deployment the operator makes (not part of the entry).",
    "default": {},
    "properties": {
        "replicas": {"type": "integer", "minimum": 0, "default": 1, "description": "Pods to run (workers only)."},
        "image": _string("Container image; default: the operator's --worker-image."),
        "imagePullPolicy": _string("Image pull policy.", enum=["Always", "IfNotPresent", "Never"]),
        "serviceAccountName": _string("Service account of the pods."),
        "resources": {"type": "object", "description": "Container resources (requests, limits).", **_PRESERVE},
        "nodeSelector": {
            "type": "object",
            "description": "Node labels the pods need.",
            "additionalProperties": {"type": "string"},
        },
        "tolerations": {"type": "array", "description": "Pod tolerations.", "items": {"type": "object", **_PRESERVE}},
        "affinity": {"type": "object", "description": "Pod affinity.", **_PRESERVE},
        "podAnnotations": {
            "type": "object",
            "description": "Extra pod annotations.",
            "additionalProperties": {"type": "string"},
        },
        "podLabels": {"type": "object", "description": "Extra pod labels.", "additionalProperties": {"type": "string"}},
        "env": {
            "type": "array",
            "description": "Extra container environment (Kubernetes EnvVar objects; use valueFrom for secrets).",
            "items": {"type": "object", **_PRESERVE},
        },
    },
}


def entry_spec(kind: str) -> Schema:
    """The ``spec`` schema of the CR holding an entry of ``kind``."""
    spec = structural(SCHEMAS[kind])
    props = {"entryId": _string("The exact entry ID, namespace:name.", pattern=ENTRY_ID_PATTERN)}
    props |= spec["properties"]
    required = ["entryId", *spec.get("required", [])]
    if kind in LUA_KINDS:
        required.remove("source")  # or sourceFrom: one of them (checked by the operator)
        props["source"] = _string("The Lua code, inline (or use sourceFrom for a large source).")
        props["sourceFrom"] = {
            "type": "object",
            "description": "Where the Lua code is when it is not inline (one of source, sourceFrom).",
            "properties": {"configMapKeyRef": _key_ref("A key of a ConfigMap holding the Lua text.")},
            "required": ["configMapKeyRef"],
        }
    if kind == "temporal.client":
        props["apiKeySecretRef"] = _key_ref("Secret key holding the API key (auth type api_key); never inline.")
        props["tlsSecretRef"] = {
            "type": "object",
            "description": "Secret with tls.crt, tls.key (mTLS) and ca.crt, mounted into workers; "
            "overrides the tls file fields.",
            "properties": {"name": _string("Name of the Secret.")},
            "required": ["name"],
        }
    if kind in ("temporal.worker", "process.service"):
        props["deployment"] = _DEPLOYMENT
    spec["properties"] = props
    spec["required"] = required
    spec["description"] = SCHEMAS[kind].get("description", "") + " Same fields as the entry, plus entryId."
    return spec


def _duration(description: str) -> Schema:
    return _string(description, pattern=durations.PATTERN)


_WORKFLOW_SPEC: Schema = {
    "type": "object",
    "description": "Start a Lua workflow on a temporal.worker, exactly once (process.spawn).",
    "required": ["workflow", "worker"],
    "properties": {
        "workflow": _string("ID of the workflow.lua entry to run.", pattern=ENTRY_ID_PATTERN),
        "worker": _string("ID of the temporal.worker entry whose task queue runs it.", pattern=ENTRY_ID_PATTERN),
        "input": {
            "type": "array",
            "description": "Arguments of the workflow function (JSON values).",
            "default": [],
            "items": {"description": "An argument (any JSON value).", "nullable": True, **_PRESERVE},
        },
        "workflowId": _string("Temporal workflow ID; default: derived from the CR (namespace, name, uid)."),
        "deletionPolicy": _string(
            "What deleting this CR does to a running execution: Cancel (Lua sees pid.cancel and can "
            "compensate), Terminate (at once, no Lua runs) or Abandon (leave it running).",
            enum=["Cancel", "Terminate", "Abandon"],
            default="Cancel",
        ),
        "executionTimeout": _duration("Limit of the whole execution, e.g. '24h'; default none."),
        "options": {
            "type": "object",
            "description": "Start options with Wippy's names, as process.with_options takes them, e.g. "
                           "{\"temporal.workflow.run_timeout\": \"1h\", \"temporal.workflow.retry_policy\": {...}, "
                           "\"temporal.workflow.search_attributes\": {...}, \"temporal.workflow.memo\": {...}}. "
                           "The ID and its policies come from the CR (workflowId; started exactly once).",
            **_PRESERVE,
        },
        "signals": {
            "type": "array",
            "description": "Messages to deliver to the execution, each exactly once (a Temporal signal, "
            "deduplicated by request ID); append to send more. Recorded in status.signals.",
            "default": [],
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
            "items": {
                "type": "object",
                "required": ["name", "topic"],
                "properties": {
                    "name": _string("Unique name of this delivery (names it in status.signals).", pattern=f"^{_NAME}$"),
                    "topic": _string("The message topic (Lua: process.listen(topic), msg:topic())."),
                    "payload": {"description": "The message payload (any JSON value).", "nullable": True, **_PRESERVE},
                },
            },
        },
    },
}

_WORKFLOW_STATUS: Schema = {
    "type": "object",
    "description": "The execution, as last observed by the operator.",
    "properties": {
        "phase": _string("Where the execution is.", enum=list(PHASES)),
        "workflowId": _string("Temporal workflow ID."),
        "runId": _string("Temporal run ID of the first run."),
        "pid": _string("Moontide pid: {client@worker|workflow_id}."),
        "codeDigest": _string("Digest of the Lua code the execution is pinned to."),
        "startTime": _string("When the execution started.", format="date-time"),
        "finishTime": _string("When it closed.", format="date-time"),
        "result": {"description": "The workflow's result (JSON), when small enough.", "nullable": True, **_PRESERVE},
        "resultTruncated": {"type": "boolean", "description": "The result was too large to show here."},
        "message": _string("Failure message, or what the operator is waiting for."),
        "errorKind": _string("Error kind of a failure (Invalid, NotFound, LuaError, ...)."),
        "signals": {
            "type": "array",
            "description": "Signals delivered, by name.",
            "items": {
                "type": "object",
                "properties": {
                    "name": _string("The signal's name in spec.signals."),
                    "deliveredAt": _string("When it was delivered.", format="date-time"),
                },
            },
        },
        "observedGeneration": {"type": "integer", "description": "metadata.generation last reconciled."},
        "conditions": _CONDITIONS,
    },
}


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


_READY = '.status.conditions[?(@.type=="Ready")]'
_AGE = _column("Age", ".metadata.creationTimestamp", "date")


def _columns(resource: Resource) -> list[dict[str, Any]]:
    if resource is WORKFLOW:
        return [
            _column("Phase", ".status.phase"),
            _column("Workflow", ".spec.workflow"),
            _AGE,
            _column("Message", ".status.message"),
            _column("Workflow ID", ".status.workflowId", priority=1),
            _column("Run", ".status.runId", priority=1),
        ]
    cols = [_column("Entry", ".spec.entryId"), _column("Ready", f"{_READY}.status"),
            _column("Reason", f"{_READY}.reason")]
    if resource.entry_kind in ("temporal.worker", "process.service"):
        cols += [_column("Pods", ".status.readyReplicas", "integer"), _column("Bundle", ".status.bundleHash")]
    return [*cols, _AGE, _column("Message", f"{_READY}.message", priority=1)]


def crd(resource: Resource) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind."""
    if resource is WORKFLOW:
        spec, status = _WORKFLOW_SPEC, _WORKFLOW_STATUS
    else:
        assert resource.entry_kind is not None
        spec, status = entry_spec(resource.entry_kind), _entry_status(resource.entry_kind)
    schema = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": copy.deepcopy(spec),
            "status": copy.deepcopy(status),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": resource.crd_name, "labels": {"app.kubernetes.io/part-of": "moontide"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": resource.kind,
                "listKind": f"{resource.kind}List",
                "plural": resource.plural,
                "singular": resource.singular,
                "shortNames": list(resource.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _columns(resource),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def crds() -> list[dict[str, Any]]:
    """Every CRD: the entry kinds, then Workflow."""
    return [crd(r) for r in (*ENTRY_RESOURCES, WORKFLOW)]


_HEADER = "# Generated from operator/moontide/entries/_schemas.py by `moontide crds --write`; do not edit.\n"


def render(definition: dict[str, Any]) -> str:
    """One CRD as a YAML document (stable: same input, same text)."""
    return _HEADER + yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=100)


def files() -> dict[str, str]:
    """``{file name: YAML text}`` of every CRD."""
    return {f"{d['metadata']['name']}.yaml": render(d) for d in crds()}


#: Where the generated CRDs live, relative to the repository root.
TARGETS = ("crds", "helm/moontide/crds")


def write(repo_root: Path) -> list[Path]:
    """Rewrite the generated CRD files under ``repo_root``; returns the files written."""
    written = []
    for target in TARGETS:
        directory = repo_root / target
        directory.mkdir(parents=True, exist_ok=True)
        wanted = files()
        for stale in directory.glob(f"*.{GROUP}.yaml"):
            if stale.name not in wanted:
                stale.unlink()
        for name, text in wanted.items():
            path = directory / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            written.append(path)
    return written


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3]
    for p in write(root):
        print(p)
