"""An in-memory stand-in for ``kube.Kube`` (unit tests only; e2e uses a real API server)."""

from __future__ import annotations

import copy
from typing import Any

from moontide.k8s import kube


class FakeKube:
    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.applied: list[dict[str, Any]] = []
        self.status_patches: list[tuple[str, dict[str, Any]]] = []
        self.deleted: list[str] = []

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[kube.object_path(obj)] = copy.deepcopy(obj)

    async def list(self, url: str, *, label_selector: str | None = None, cached: bool = False) -> list[dict[str, Any]]:
        prefix = url + "/"
        wanted = dict(part.split("=", 1) for part in label_selector.split(",")) if label_selector else {}
        return [copy.deepcopy(o) for p, o in self.objects.items() if p.startswith(prefix) and "/" not in p[len(prefix):]
                and all(((o.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())]

    async def get(self, url: str) -> dict[str, Any]:
        if url not in self.objects:
            raise kube.NotFound(404, "NotFound", url)
        return copy.deepcopy(self.objects[url])

    async def get_or_none(self, url: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.objects.get(url))

    async def apply(self, obj: dict[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply, roughly: status and uid stay; a changed spec bumps metadata.generation."""
        self.applied.append(copy.deepcopy(obj))
        url = kube.object_path(obj)
        old = self.objects.get(url)
        new = copy.deepcopy(obj)
        meta = new["metadata"]
        if old is None:
            meta["generation"] = 1
            meta["uid"] = f"uid-{meta['name']}"
        else:
            meta["uid"] = old["metadata"].get("uid")
            meta["generation"] = old["metadata"].get("generation", 1) + (old.get("spec") != new.get("spec"))
            if "status" in old:
                new["status"] = old["status"]
        self.objects[url] = new
        return copy.deepcopy(new)

    async def request(self, method: str, url: str, **_: Any) -> Any:
        assert method == "DELETE", method
        if url not in self.objects:
            raise kube.NotFound(404, "NotFound", url)
        await self.delete(url)

    async def delete(self, url: str, *, propagation: str = "Background") -> None:
        self.deleted.append(url)
        self.objects.pop(url, None)

    async def merge_patch(self, url: str, patch: dict[str, Any]) -> dict[str, Any]:
        base = url.removesuffix("/status")
        if base not in self.objects:
            raise kube.NotFound(404, "NotFound", url)
        obj = self.objects[base]
        if url.endswith("/status"):
            self.status_patches.append((base, copy.deepcopy(patch)))
            obj.setdefault("status", {}).update(copy.deepcopy(patch.get("status") or {}))
        else:
            expected = (patch.get("metadata") or {}).get("resourceVersion")
            if expected is not None and expected != obj["metadata"].get("resourceVersion"):
                raise kube.Conflict(409, "Conflict", "the object has been modified")
            self.objects[base] = _merge(obj, {k: v for k, v in patch.items() if k != "status"})
        return copy.deepcopy(self.objects[base])

    async def create(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("kind") == "Event":
            self.events.append(copy.deepcopy(body))
            return body
        target = f"{url}/{body['metadata']['name']}"
        if target in self.objects:
            raise kube.Conflict(409, "AlreadyExists", target)
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = "1"
        self.objects[target] = obj
        return copy.deepcopy(obj)

    async def replace(self, url: str, body: dict[str, Any]) -> dict[str, Any]:
        current = self.objects.get(url)
        if current is None:
            raise kube.NotFound(404, "NotFound", url)
        if body["metadata"].get("resourceVersion") != current["metadata"].get("resourceVersion"):
            raise kube.Conflict(409, "Conflict", "the object has been modified")
        obj = copy.deepcopy(body)
        obj["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.objects[url] = obj
        return copy.deepcopy(obj)


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
