"""A small asynchronous Kubernetes API client on httpx: get, list, server-side apply, patch, delete.

Kopf watches and calls handlers; this client is what the operator's own code
uses to write objects (bundle ConfigMaps, Deployments, statuses, Events,
Leases). Credentials come from the same places Kopf looks (a kubeconfig or the
pod's service account) through Kopf's own login functions, so both talk to
the same API server as the same user.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .kinds import FIELD_MANAGER

__all__ = ["Conflict", "Connection", "Kube", "KubeError", "NotFound", "connection", "login_info", "object_path", "path"]


class KubeError(Exception):
    """The API server refused a request; ``status`` is the HTTP status, ``reason`` Kubernetes' reason."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFound(KubeError):
    """404: no such object (or no such kind: the CRD is not installed)."""


class Conflict(KubeError):
    """409: a stale resourceVersion, an object that exists, or a field owned by another manager."""


@dataclass(frozen=True)
class Connection:
    """Where the API server is and how to log in."""

    server: str
    verify: ssl.SSLContext | bool
    headers: Mapping[str, str]
    default_namespace: str | None = None


def _ssl_context(info: Any) -> ssl.SSLContext | bool:
    if info.insecure:
        return False
    ctx = ssl.create_default_context(cafile=info.ca_path) if info.ca_path else ssl.create_default_context()
    if info.ca_data:
        data = info.ca_data if isinstance(info.ca_data, bytes) else info.ca_data.encode()
        ctx.load_verify_locations(cadata=base64.b64decode(data).decode())
    cert, key = info.certificate_path, info.private_key_path
    # ssl reads a client certificate and key only from files: inline ones (kubeconfig *-data) go to a
    # private directory for the moment of loading, and are gone once loaded
    with tempfile.TemporaryDirectory(prefix="moontide-kube-") as tmp:
        written: dict[str, str] = {}
        for name, data in (("cert", info.certificate_data), ("key", info.private_key_data)):
            if data:
                file = Path(tmp) / f"{name}.pem"
                file.touch(mode=0o600)
                file.write_bytes(base64.b64decode(data if isinstance(data, bytes) else data.encode()))
                written[name] = str(file)
        cert, key = written.get("cert", cert), written.get("key", key)
        if cert:
            ctx.load_cert_chain(cert, key)
    return ctx


def login_info() -> Any:
    """Kopf's ``ConnectionInfo``: $KUBECONFIG when set, else the pod's service account, else ~/.kube/config."""
    import os

    import kopf

    settings = kopf.OperatorSettings()
    if os.environ.get("KUBECONFIG"):
        info = kopf.login_with_kubeconfig(settings=settings)
    else:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(settings=settings)
    if info is None or not info.server:
        raise kopf.LoginError("no Kubernetes credentials: no service account token and no kubeconfig")
    return info


def connection() -> Connection:
    """Where the API server is and how to log in (see ``login_info``)."""
    info = login_info()
    headers = {}
    if info.token:
        headers["Authorization"] = f"{info.scheme or 'Bearer'} {info.token}"
    elif info.username and info.password:
        basic = base64.b64encode(f"{info.username}:{info.password}".encode()).decode()
        headers["Authorization"] = f"Basic {basic}"
    return Connection(str(info.server).rstrip("/"), _ssl_context(info), headers, info.default_namespace)


def path(api_version: str, plural: str, namespace: str | None = None, name: str | None = None,
         subresource: str | None = None) -> str:
    """The URL path of a collection or an object: ``path("apps/v1", "deployments", "ns", "x")``."""
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    parts = [base]
    if namespace:
        parts.append(f"namespaces/{namespace}")
    parts.append(plural)
    if name:
        parts.append(name)
    if subresource:
        parts.append(subresource)
    return "/".join(parts)


_PLURALS = {"ConfigMap": "configmaps", "Deployment": "deployments", "Event": "events", "Lease": "leases",
            "Secret": "secrets", "Pod": "pods", "ServiceAccount": "serviceaccounts"}


def object_path(obj: Mapping[str, Any]) -> str:
    """The path of a full object (apiVersion, kind, metadata.name/namespace)."""
    from .kinds import BY_KIND

    kind = obj["kind"]
    plural = _PLURALS.get(kind) or BY_KIND[kind].plural
    meta = obj["metadata"]
    return path(obj["apiVersion"], plural, meta.get("namespace"), meta["name"])


class Kube:
    """An API client; ``async with Kube(connection()) as kube:``."""

    def __init__(self, conn: Connection, *, timeout: float = 30.0, max_connections: int = 20) -> None:
        self.conn = conn
        # At most as many requests in flight as connections: httpcore's pool does work per queued request
        # and connection on every change, which made a burst of status writes CPU-bound.
        self._slots = asyncio.Semaphore(max_connections)
        self.http = httpx.AsyncClient(
            base_url=conn.server, verify=conn.verify, headers=dict(conn.headers), timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections))

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self.http.aclose()

    async def request(self, method: str, url: str, *, body: Any = None, content_type: str = "application/json",
                      params: Mapping[str, str] | None = None) -> Any:
        content = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": content_type} if content is not None else {}
        async with self._slots:
            resp = await self.http.request(method, url, content=content, headers=headers, params=params)
        if resp.status_code >= 400:
            try:
                status = resp.json()
                reason, message = status.get("reason", ""), status.get("message", resp.text)
            except ValueError:
                reason, message = "", resp.text
            cls = NotFound if resp.status_code == 404 else Conflict if resp.status_code == 409 else KubeError
            raise cls(resp.status_code, reason, message)
        return resp.json() if resp.content else None

    async def get(self, url: str) -> dict[str, Any]:
        return await self.request("GET", url)

    async def get_or_none(self, url: str) -> dict[str, Any] | None:
        try:
            return await self.get(url)
        except NotFound:
            return None

    async def list(self, url: str, *, label_selector: str | None = None, cached: bool = False) -> list[dict[str, Any]]:
        """The items of a collection. ``cached``: from the API server's watch cache (``resourceVersion=0``), which
        costs it far less than a read from etcd and holds at least every change a watch has already seen."""
        params = {"labelSelector": label_selector} if label_selector else {}
        if cached:
            params["resourceVersion"] = "0"
        out = await self.request("GET", url, params=params or None)
        return list(out.get("items") or [])

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply: the object as the operator wants it (fields it leaves out are not its own)."""
        params = {"fieldManager": FIELD_MANAGER, "force": "true" if force else "false"}
        return await self.request("PATCH", object_path(obj), body=obj,
                                  content_type="application/apply-patch+yaml", params=params)

    async def merge_patch(self, url: str, patch: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", url, body=patch,
                                  content_type="application/merge-patch+json")

    async def create(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", url, body=body)

    async def replace(self, url: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("PUT", url, body=body)

    async def delete(self, url: str, *, propagation: str = "Background") -> None:
        try:
            await self.request("DELETE", url, body={"propagationPolicy": propagation})
        except NotFound:
            pass
