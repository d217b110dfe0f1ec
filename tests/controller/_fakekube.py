"""An in-memory API server behind the real ``kube.Kube`` (unit tests only; e2e uses a real API server).

``FakeKube`` is a ``Kube`` whose lightkube client talks HTTP to this fake through an httpx transport: the
requests are the ones the operator sends to a real API server (``requests`` records each), and the answers
follow the API server where the operator relies on it: 404 for a missing object, 409 for a create of an
existing one and for a write with a stale ``metadata.resourceVersion``, a new resourceVersion on every
write, ``metadata.generation`` bumped by a spec change, status written only through ``/status``.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any
from urllib.parse import parse_qs

import httpx
from lightkube.config.kubeconfig import KubeConfig
from lightkube.config.models import Cluster, User

from moontide.k8s import kinds, kube

_PLURALS = {"ConfigMap": "configmaps", "Deployment": "deployments", "Event": "events", "Lease": "leases",
            "Secret": "secrets", "Pod": "pods", "ServiceAccount": "serviceaccounts"}


def collection_path(api_version: str, plural: str, namespace: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{base}/namespaces/{namespace}/{plural}" if namespace else f"{base}/{plural}"


def object_path(obj: dict[str, Any]) -> str:
    """The URL path of a full object (apiVersion, kind, metadata.name/namespace), as the fake keys it."""
    plural = _PLURALS.get(obj["kind"]) or kinds.BY_KIND[obj["kind"]].plural
    meta = obj["metadata"]
    return f"{collection_path(obj['apiVersion'], plural, meta.get('namespace'))}/{meta['name']}"


def _status(code: int, reason: str, message: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                      "reason": reason, "message": message, "code": code})


class _Transport(httpx.MockTransport):
    def __deepcopy__(self, memo: Any) -> _Transport:
        return self  # lightkube deep-copies its connection parameters (dataclasses.asdict): keep this one


class FakeKube(kube.Kube):
    def __init__(self) -> None:
        #: URL path -> object; tests may read and change them directly.
        self.objects: dict[str, dict[str, Any]] = {}
        #: Every request as (method, URL path), in order.
        self.requests: list[tuple[str, str]] = []
        #: Paths of objects a server-side apply created (RBAC: an apply that creates needs ``create``).
        self.created_by_apply: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []
        self._versions = itertools.count(1)
        config = KubeConfig.from_one(cluster=Cluster(server="http://fake-apiserver"), user=User(), namespace="default")
        single = config.get()
        assert single is not None
        super().__init__(single, transport=_Transport(self._handle))

    def put(self, obj: dict[str, Any]) -> None:
        """Store an object as if someone else had written it."""
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = self._version()
        self.objects[object_path(obj)] = obj

    def _version(self) -> str:
        return str(next(self._versions))

    # -- the API ---------------------------------------------------------------------------------------------
    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        body = json.loads(request.content) if request.content else None
        method = request.method
        if method == "GET":
            if path in self.objects:
                return httpx.Response(200, json=self.objects[path])
            if self._is_collection(path):
                return httpx.Response(200, json={"kind": "List", "apiVersion": "v1", "metadata": {},
                                                 "items": self._list(path, query.get("labelSelector"))})
            return _status(404, "NotFound", f"{path} not found")
        if method == "PATCH":
            ctype = request.headers.get("content-type", "")
            if ctype == "application/apply-patch+yaml":
                assert query.get("fieldManager") == kinds.FIELD_MANAGER, query
                return self._apply(path, body)
            assert ctype == "application/merge-patch+json", ctype
            return self._merge_patch(path, body)
        if method == "POST":
            return self._create(path, body)
        if method == "PUT":
            return self._replace(path, body)
        if method == "DELETE":
            if path not in self.objects:
                return _status(404, "NotFound", f"{path} not found")
            self.deleted.append(path)
            return httpx.Response(200, json=self.objects.pop(path))
        return _status(405, "MethodNotAllowed", method)

    def _is_collection(self, path: str) -> bool:
        parts = path.strip("/").split("/")
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        return len(rest) == 1 or (len(rest) == 3 and rest[0] == "namespaces")

    def _list(self, path: str, selector: str | None) -> list[dict[str, Any]]:
        parts = path.strip("/").split("/")
        head, rest = (parts[:2], parts[2:]) if parts[0] == "api" else (parts[:3], parts[3:])
        namespace, plural = (rest[1], rest[2]) if len(rest) == 3 else (None, rest[0])
        wanted = dict(part.split("=", 1) for part in selector.split(",")) if selector else {}
        out = []
        for p, obj in self.objects.items():
            ps = p.strip("/").split("/")
            if ps[:len(head)] != head:
                continue
            tail = ps[len(head):]  # namespaces/<ns>/<plural>/<name>
            if len(tail) != 4 or tail[2] != plural or (namespace is not None and tail[1] != namespace):
                continue
            labels = (obj.get("metadata") or {}).get("labels") or {}
            if all(labels.get(k) == v for k, v in wanted.items()):
                out.append(copy.deepcopy(obj))
        return out

    def _apply(self, path: str, obj: dict[str, Any]) -> httpx.Response:
        """Server-side apply, roughly: status and uid stay; a changed spec bumps metadata.generation."""
        self.applied.append(copy.deepcopy(obj))
        assert object_path(obj) == path, (object_path(obj), path)
        old = self.objects.get(path)
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        if old is None:
            self.created_by_apply.append(path)
            meta["generation"] = 1
            meta["uid"] = f"uid-{meta['name']}"
        else:
            meta["uid"] = old["metadata"].get("uid")
            meta["generation"] = old["metadata"].get("generation", 1) + (old.get("spec") != new.get("spec"))
            if "status" in old:
                new["status"] = old["status"]
        meta["resourceVersion"] = self._version()
        self.objects[path] = new
        return httpx.Response(200, json=new)

    def _merge_patch(self, path: str, patch: dict[str, Any]) -> httpx.Response:
        base = path.removesuffix("/status")
        if base not in self.objects:
            return _status(404, "NotFound", f"{path} not found")
        obj = self.objects[base]
        expected = (patch.get("metadata") or {}).get("resourceVersion")
        if expected is not None and expected != obj["metadata"].get("resourceVersion"):
            return _status(409, "Conflict", "the object has been modified; please apply your changes to the latest "
                                            "version and try again")
        if path.endswith("/status"):  # only the status (in place: a test may hold the stored object)
            self.status_patches.append((base, copy.deepcopy(patch)))
            obj["status"] = _merge(obj.get("status") or {}, copy.deepcopy(patch.get("status") or {}))
        else:  # all but the status
            new = _merge(obj, {k: v for k, v in patch.items() if k != "status"})
            new["metadata"]["generation"] = obj["metadata"].get("generation", 1) + (obj.get("spec") != new.get("spec"))
            obj.clear()
            obj.update(new)
        obj["metadata"]["resourceVersion"] = self._version()
        return httpx.Response(200, json=obj)

    def _create(self, collection: str, body: dict[str, Any]) -> httpx.Response:
        if body.get("kind") == "Event":
            self.events.append(copy.deepcopy(body))
            return httpx.Response(201, json=body)
        if body.get("kind") == "SelfSubjectAccessReview":
            return httpx.Response(201, json={**body, "status": {"allowed": True}})
        path = f"{collection}/{body['metadata']['name']}"
        if path in self.objects:
            return _status(409, "AlreadyExists", f"{path} already exists")
        obj = copy.deepcopy(body)
        obj["metadata"].update(resourceVersion=self._version(), generation=1, uid=f"uid-{obj['metadata']['name']}")
        self.objects[path] = obj
        return httpx.Response(201, json=obj)

    def _replace(self, path: str, body: dict[str, Any]) -> httpx.Response:
        current = self.objects.get(path)
        if current is None:
            return _status(404, "NotFound", f"{path} not found")
        expected = body["metadata"].get("resourceVersion")
        if expected is not None and expected != current["metadata"].get("resourceVersion"):
            return _status(409, "Conflict", "the object has been modified; please apply your changes to the latest "
                                            "version and try again")
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = self._version()
        self.objects[path] = obj
        return httpx.Response(200, json=obj)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out
