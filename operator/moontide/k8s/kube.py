"""The Kubernetes API client: lightkube, with what Moontide adds to it.

Kopf watches and calls handlers; this client is what the operator's own code
(and ``moontide operator-cleanup``) uses to read and write objects: bundle
ConfigMaps, Deployments, statuses, Events, Leases. Credentials, TLS and HTTP
are lightkube's (``lightkube.AsyncClient`` on httpx); the kubeconfig is
found in the order Kopf's login uses (``kube_config``), and Kopf logs in
with the same credentials (``login_info``), so both act as the same user.

Built-in kinds are lightkube's (``lightkube.resources.*``); the moontide.io
kinds are lightkube generic resources made from ``kinds.RESOURCES``
(``custom_resource``). Objects go in and come out as plain dicts (what Kopf
hands the handlers and ``objects`` builds), addressed by resource class,
namespace and name. What this module adds: the errors callers catch
(``NotFound``, ``Conflict``, ``KubeError`` from lightkube's ``ApiError``), a
cap on requests in flight, lists from the API server's watch cache
(``cached``), server-side apply as ``kinds.FIELD_MANAGER`` (forced), and an
inline client key that is on disk only while the TLS context loads it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from lightkube import ApiError, AsyncClient, codecs
from lightkube.config.kubeconfig import KubeConfig, SingleConfig
from lightkube.core import resource as lkr
from lightkube.core.exceptions import ConfigError
from lightkube.core.resource_registry import resource_registry
from lightkube.generic_resource import GenericNamespacedResource, create_namespaced_resource
from lightkube.types import CascadeType, PatchType

from .kinds import FIELD_MANAGER, GROUP, RESOURCES, VERSION, Resource

__all__ = ["CUSTOM_RESOURCES", "Conflict", "Kube", "KubeError", "NotFound", "custom_resource", "kube_config",
           "login_info", "resource_of"]

#: A lightkube resource class (``lightkube.resources.core_v1.ConfigMap``, ``custom_resource(WORKFLOW)``, ...),
#: or a subresource of one (``Deployment.Status``).
ResourceType = type[lkr.Resource]

#: The moontide.io kinds as lightkube generic resources, by kind.
CUSTOM_RESOURCES: dict[str, type[GenericNamespacedResource]] = {
    r.kind: create_namespaced_resource(GROUP, VERSION, r.kind, r.plural) for r in RESOURCES}


def custom_resource(resource: Resource) -> type[GenericNamespacedResource]:
    """The lightkube class of a moontide.io kind (``custom_resource(WORKFLOW).Status`` is its status)."""
    return CUSTOM_RESOURCES[resource.kind]


def resource_of(obj: Mapping[str, Any]) -> ResourceType:
    """The lightkube class of an object by its apiVersion and kind."""
    return resource_registry.load(obj["apiVersion"], obj["kind"])


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


def _error(e: httpx.HTTPStatusError) -> KubeError:
    if isinstance(e, ApiError):
        status, reason, message = e.status.code or e.response.status_code, e.status.reason or "", e.status.message
    else:  # not a JSON Status (a proxy's answer, say)
        status, reason, message = e.response.status_code, "", e.response.text
    cls = NotFound if status == 404 else Conflict if status == 409 else KubeError
    return cls(status, reason, message or "")


# -- where the API server is and who we are ----------------------------------------------------------------------

def _from_files(paths: list[str]) -> KubeConfig:
    """$KUBECONFIG's files merged as kubectl merges them: the first file to name a cluster, context or user (or to
    set current-context) wins."""
    if len(paths) == 1:
        return KubeConfig.from_file(paths[0])
    merged: dict[str, Any] = {"current-context": None, "clusters": [], "contexts": [], "users": []}
    for p in paths:
        file = Path(p).expanduser()
        if not file.is_file():  # kubectl skips a missing file of the list
            continue
        conf = yaml.safe_load(file.read_text()) or {}
        merged["current-context"] = merged["current-context"] or conf.get("current-context")
        for key in ("clusters", "contexts", "users"):
            seen = {item["name"] for item in merged[key]}
            merged[key] += [item for item in conf.get(key) or [] if item["name"] not in seen]
    return KubeConfig.from_dict(merged, fname=Path(paths[0]).expanduser())


def kube_config() -> SingleConfig:
    """The cluster and credentials: $KUBECONFIG when set, else the pod's service account, else ~/.kube/config
    (the order of Kopf's own login, which ``login_info`` gives these same credentials)."""
    env = os.environ.get("KUBECONFIG")
    if env:
        config = _from_files([p for p in env.split(os.pathsep) if p])
    else:
        try:
            config = KubeConfig.from_service_account()
        except (ConfigError, KeyError):  # no token file, or not in a pod (no KUBERNETES_SERVICE_HOST)
            config = KubeConfig.from_file("~/.kube/config")
    single = config.get()
    assert single is not None
    if single.context.namespace:  # the service account's namespace file may end in a newline
        single = single._replace(context=dataclasses.replace(single.context,
                                                             namespace=single.context.namespace.strip()))
    return single


def login_info(config: SingleConfig | None = None) -> Any:
    """Kopf's ``ConnectionInfo`` for the credentials of ``kube_config()``: Kopf and this client log in alike.
    A service account's token is read from its file each time (Kopf logs in again when a token expires)."""
    import kopf

    try:
        config = config or kube_config()
    except ConfigError as e:
        raise kopf.LoginError(f"no Kubernetes credentials: {e}") from None
    cluster, user = config.cluster, config.user

    def path(p: str | None) -> str | None:
        return str(config.abs_file(p)) if p else None

    token = user.token if user else None
    if user and user.token_file:
        token = Path(path(user.token_file) or "").read_text().strip()
    elif user and user.exec and not token:  # a credential plugin: its token now (Kopf asks again when it expires)
        token = _exec_token(user.exec)
    return kopf.ConnectionInfo(
        server=cluster.server, ca_path=path(cluster.certificate_auth), ca_data=cluster.certificate_auth_data,
        insecure=cluster.insecure or None, token=token, scheme="Bearer" if token else None,
        username=user.username if user else None, password=user.password if user else None,
        certificate_path=path(user.client_cert) if user else None,
        certificate_data=user.client_cert_data if user else None,
        private_key_path=path(user.client_key) if user else None,
        private_key_data=user.client_key_data if user else None,
        default_namespace=config.context.namespace)


def _exec_token(plugin: Any) -> str:
    """Run a kubeconfig ``exec`` credential plugin as lightkube does; the token of its ExecCredential."""
    import json

    from lightkube.config.client_adapter import ExecAuth, sync_check_output

    command, env = ExecAuth(plugin)._prepare()
    return str(json.loads(sync_check_output(command, env=env))["status"]["token"])


@contextmanager
def _inline_files(config: SingleConfig) -> Iterator[SingleConfig]:
    """``config`` with its inline CA, client certificate and key (kubeconfig ``*-data``) as files of a private
    directory, removed when the block ends. ssl loads them only from files; lightkube would write them to
    temporary files that live as long as its objects do. The client loads them once, when it is made."""
    cluster, user = config.cluster, config.user
    if not (cluster.certificate_auth_data or (user and (user.client_cert_data or user.client_key_data))):
        yield config
        return
    import base64

    with tempfile.TemporaryDirectory(prefix="moontide-kube-") as tmp:
        def file(name: str, data: str | None) -> str | None:
            if not data:
                return None
            f = Path(tmp) / name
            f.touch(mode=0o600)
            f.write_bytes(base64.b64decode(data))
            return str(f)

        cluster = dataclasses.replace(
            cluster, certificate_auth=file("ca.pem", cluster.certificate_auth_data) or cluster.certificate_auth,
            certificate_auth_data=None)
        if user:
            user = dataclasses.replace(
                user, client_cert=file("cert.pem", user.client_cert_data) or user.client_cert,
                client_key=file("key.pem", user.client_key_data) or user.client_key,
                client_cert_data=None, client_key_data=None)
        yield config._replace(cluster=cluster, user=user)


# -- the client -------------------------------------------------------------------------------------------------

class Kube:
    """An API client; ``async with Kube() as kube:`` (credentials from ``kube_config()``).

    ``client`` is the lightkube ``AsyncClient`` underneath. Namespaced objects are addressed by resource class,
    name and namespace: ``await kube.get(ConfigMap, "x", namespace="ns")``; objects are plain dicts.
    ``transport`` (tests): lightkube deep-copies its connection parameters, so a transport that holds state
    must return itself from ``__deepcopy__``.
    """

    def __init__(self, config: SingleConfig | None = None, *, timeout: float = 30.0, max_connections: int = 20,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        config = config or kube_config()
        if config.user is None:  # lightkube wants a user, even an anonymous one
            from lightkube.config.models import User

            config = config._replace(user=User())
        # At most this many requests in flight (httpx's pool holds more connections than that): httpcore's
        # pool does work per queued request and connection on every change, which made a burst of status
        # writes CPU-bound.
        self._slots = asyncio.Semaphore(max_connections)
        with _inline_files(config) as files:
            self.client = AsyncClient(files, timeout=httpx.Timeout(timeout), field_manager=FIELD_MANAGER,
                                      transport=transport)
        self.config = config

    async def __aenter__(self) -> Kube:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        async with self._slots:
            try:
                return await method(*args, **kwargs)
            except httpx.HTTPStatusError as e:
                raise _error(e) from e

    @staticmethod
    def _plain(obj: Any) -> dict[str, Any]:
        # lightkube decodes lazily: an object nobody looked into goes back to a dict without decoding it
        return obj.to_dict()

    async def get(self, res: ResourceType, name: str, *, namespace: str | None = None) -> dict[str, Any]:
        return self._plain(await self._call(self.client.get, res, name, namespace=namespace))

    async def get_or_none(self, res: ResourceType, name: str, *, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            return await self.get(res, name, namespace=namespace)
        except NotFound:
            return None

    async def list(self, res: ResourceType, namespace: str | None, *, labels: Mapping[str, str] | None = None,
                   cached: bool = False) -> list[dict[str, Any]]:
        """The objects of a kind in ``namespace`` (None: in every namespace), those with ``labels`` if given.
        ``cached``: from the API server's watch cache (``resourceVersion=0``), which costs it far less than a read
        from etcd and holds at least every change a watch has already seen."""
        ns = namespace if namespace is not None else "*"
        if cached:  # lightkube's list takes no resourceVersion: its own request with that one more parameter
            generic = self.client._client
            selector = ",".join(f"{k}={v}" for k, v in labels.items()) if labels else None
            request = generic.prepare_request("list", res=res, namespace=ns,
                                              params={"labelSelector": selector, "resourceVersion": "0"})
            items = generic.list(request)
        else:
            items = self.client.list(res, namespace=ns, labels=dict(labels) if labels else None)

        async def collect() -> list[dict[str, Any]]:
            return [self._plain(o) async for o in items]

        return await self._call(collect)

    async def apply(self, obj: Mapping[str, Any], *, force: bool = True) -> dict[str, Any]:
        """Server-side apply: the object as the operator wants it (fields it leaves out are not its own)."""
        meta = obj["metadata"]
        return self._plain(await self._call(
            self.client.patch, resource_of(obj), meta["name"], dict(obj), namespace=meta.get("namespace"),
            patch_type=PatchType.APPLY, field_manager=FIELD_MANAGER, force=force))

    async def merge_patch(self, res: ResourceType, name: str, patch: Mapping[str, Any], *,
                          namespace: str | None = None) -> dict[str, Any]:
        """A JSON merge patch; ``res`` may be a status subresource (``custom_resource(WORKFLOW).Status``)."""
        return self._plain(await self._call(self.client.patch, res, name, dict(patch), namespace=namespace,
                                            patch_type=PatchType.MERGE))

    async def create(self, obj: Mapping[str, Any], *, namespace: str | None = None) -> dict[str, Any]:
        """Create an object (in ``namespace`` when its metadata names none); Conflict when it exists."""
        return self._plain(await self._call(self.client.create, _model(obj), namespace=namespace))

    async def replace(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Replace an object; its metadata.resourceVersion must be the current one (else Conflict)."""
        return self._plain(await self._call(self.client.replace, _model(obj)))

    async def delete(self, res: ResourceType, name: str, *, namespace: str | None = None,
                     propagation: str = "Background", missing_ok: bool = True) -> bool:
        """Delete an object; False if there was none (NotFound instead unless ``missing_ok``)."""
        try:
            await self._call(self.client.delete, res, name, namespace=namespace, cascade=CascadeType(propagation))
        except NotFound:
            if not missing_ok:
                raise
            return False
        return True


def _model(obj: Mapping[str, Any]) -> Any:
    """A lightkube object of ``obj`` (for create and replace, which take one): lazy, so it goes out as it came in."""
    return codecs.from_dict(dict(obj))
