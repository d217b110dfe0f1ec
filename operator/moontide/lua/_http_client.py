"""The http_client module's requests (Wippy's ``http_client``), on httpx.

Shared by function hosts (a request blocks the function's own thread) and
process hosts (a request is awaited on the host's loop while other processes
run). Options are Wippy's; those Moontide cannot honour (``unix_socket``,
``overlay_network``, client certificates) are refused by name, never ignored.
Errors are Wippy's: Invalid for a bad URL or option, Internal (retryable) for
a network failure or a timeout, PermissionDenied for a private address.

SSRF protection, as in Wippy: unless the entry is granted ``http_client.private_ip``
(its ``permissions``), a connection to a non-public address (private, loopback,
link-local such as the cloud metadata service 169.254.169.254, carrier-grade NAT,
reserved, multicast, and IPv4 inside IPv6) is refused. The check is in the
connection itself (``_Guard``, the transport's network backend): the host name is
resolved once, every address it has is checked, and the connection goes to the
checked address (TLS still verifies the name), so a DNS answer cannot change
between the check and the connect, and every redirect is checked the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .. import durations, errors

__all__ = ["PRIVATE_IP", "Request", "batch", "batch_async", "batch_requests", "blocked", "client", "prepare", "send",
           "send_async"]

#: Go's http.Client defaults: follow up to 10 redirects; Wippy's default timeout
MAX_REDIRECTS = 10
DEFAULT_TIMEOUT = 90.0
OPTIONS = ("headers", "body", "query", "form", "files", "cookies", "auth", "timeout", "stream", "max_response_body",
           "tls")
REFUSED = {
    "unix_socket": "Moontide reaches HTTP servers over TCP only",
    "overlay_network": "Moontide has no network overlays",
}
TLS_OPTIONS = ("ca", "insecure_skip_verify")
#: Wippy's permission to reach private addresses (an entry's ``permissions``)
PRIVATE_IP = "http_client.private_ip"


@dataclass
class Request:
    method: str
    url: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    timeout: float = DEFAULT_TIMEOUT
    verify: Any = True
    stream: bool = False
    max_body: int = 0
    #: the entry may reach private addresses (``http_client.private_ip``); set by the host, never by Lua
    private_ip: bool = False


def _invalid(req_what: str, message: str) -> errors.Invalid:
    return errors.Invalid(f"http_client {req_what}: {message}")


def _strings(value: Any, name: str, what: str) -> dict[str, str]:
    if not isinstance(value, dict):
        raise _invalid(what, f"options.{name} must be a table of strings")
    for k, v in value.items():
        if not isinstance(v, str):
            raise _invalid(what, f"options.{name}.{k} must be a string, got {type(v).__name__}")
    return value


def prepare(method: Any, url: Any, opts_json: str | None) -> Request:
    """A request from Lua's arguments (its body and file contents, any bytes, come as Latin-1 text)."""
    what = f"{method} {url}"
    if not isinstance(method, str) or not isinstance(url, str):
        raise _invalid(what, "method and URL must be strings")
    if not method:
        raise _invalid(what, "method required")
    if not url:
        raise _invalid(what, "URL required")
    opts = json.loads(opts_json) if opts_json else {}
    for name, why in REFUSED.items():
        if name in opts:
            raise _invalid(what, f"option {name} is not supported: {why}")
    unknown = sorted(set(opts) - set(OPTIONS))
    if unknown:
        raise _invalid(what, f"unknown option {unknown[0]!r} (known: {', '.join(OPTIONS)})")
    req = Request(method.upper(), url)
    kw = req.kwargs
    for name, arg in (("headers", "headers"), ("query", "params"), ("cookies", "cookies"), ("form", "data")):
        if name in opts:  # tables of strings
            kw[arg] = _strings(opts[name], name, what)
    if "auth" in opts:
        auth = opts["auth"]
        if not isinstance(auth, dict) or not isinstance(auth.get("user"), str) or not isinstance(auth.get("pass"), str):
            raise _invalid(what, "options.auth must be {user = \"name\", pass = \"secret\"}")
        kw["auth"] = (auth["user"], auth["pass"])
    if "body" in opts:
        if not isinstance(opts["body"], str):
            raise _invalid(what, "options.body must be a string")
        kw["content"] = opts["body"].encode("latin-1")
    if "files" in opts:
        if "body" in opts:
            raise _invalid(what, "options.body and options.files do not go together (files make a multipart body)")
        kw["files"] = _files(opts["files"], what)
    if "timeout" in opts:
        t = opts["timeout"]
        req.timeout = float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else \
            durations.parse(t) / 1e9
    if "stream" in opts:
        req.stream = bool(opts["stream"])
    if "max_response_body" in opts:
        m = opts["max_response_body"]
        if not isinstance(m, (int, float)) or isinstance(m, bool) or m < 0:
            raise _invalid(what, "options.max_response_body must be a number of bytes (0: no limit)")
        req.max_body = int(m)
    if "tls" in opts:
        req.verify = _tls(opts["tls"], what)
    return req


def _files(files: Any, what: str) -> list[tuple[str, tuple[str | None, bytes, str]]]:
    if not isinstance(files, list):
        raise _invalid(what, "options.files must be an array of {name=, filename=, content=}")
    out = []
    for i, f in enumerate(files, 1):
        if not isinstance(f, dict) or not isinstance(f.get("name"), str) or not isinstance(f.get("content"), str):
            raise _invalid(what, f"options.files[{i}] must have a name and a content string")
        out.append((f["name"], (f.get("filename"), f["content"].encode("latin-1"),
                                 str(f.get("content_type") or "application/octet-stream"))))
    return out


def _tls(tls: Any, what: str) -> Any:
    if not isinstance(tls, dict):
        raise _invalid(what, "options.tls must be a table")
    unknown = sorted(set(tls) - set(TLS_OPTIONS))
    if unknown:
        raise _invalid(what, f"option tls.{unknown[0]} is not supported (supported: {', '.join(TLS_OPTIONS)})")
    if tls.get("insecure_skip_verify"):
        return False
    if "ca" in tls:
        try:
            return ssl.create_default_context(cadata=str(tls["ca"]))
        except ssl.SSLError as e:
            raise _invalid(what, f"options.tls.ca: not a PEM certificate: {e}") from None
    return True


def _canonical(name: str) -> str:
    """Go's http.CanonicalHeaderKey: content-type -> Content-Type."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _response(r: Any, req: Request) -> dict[str, Any]:
    """The response table Lua gets (a stream reads over the body: it is buffered here)."""
    headers: dict[str, str] = {}
    for k, v in r.headers.multi_items():
        headers.setdefault(_canonical(k), v)
    content = r.content
    if req.max_body and len(content) > req.max_body:
        raise errors.Internal(f"http_client {req.method} {req.url}: response body of {len(content)} bytes "
                                   f"exceeds max_response_body ({req.max_body})", retryable=False)
    out = {"status_code": r.status_code, "headers": headers, "cookies": dict(r.cookies), "url": str(r.url)}
    if req.stream:
        out["stream_data"], out["body_size"] = content, -1
    else:
        out["body"], out["body_size"] = content, len(content)
    return out


@contextlib.contextmanager
def _errors(req: Request) -> Iterator[None]:
    import httpx

    where = f"http_client {req.method} {req.url}"
    try:
        yield
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as e:
        raise errors.Invalid(f"{where}: invalid URL: {e}") from None
    except httpx.TimeoutException as e:
        raise errors.Internal(f"{where}: timeout: {e or type(e).__name__}") from None
    except (httpx.HTTPError, OSError, ValueError) as e:
        raise errors.Internal(f"{where}: {e or type(e).__name__}") from None


def _request_args(req: Request) -> dict[str, Any]:
    return {"method": req.method, "url": req.url, "timeout": req.timeout, **req.kwargs}


def blocked(address: str) -> bool:
    """Whether an address is off limits without ``http_client.private_ip``: anything but a public unicast one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None or ip in _NAT64:
            return True  # an IPv4 address in IPv6 clothing: judged as IPv4 would be, refused outright
    return not ip.is_global or ip.is_multicast


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _denied(host: str, address: str) -> errors.MoontideError:
    shown = host if host == address else f"{host} ({address})"
    return errors.PermissionDenied(f"http_client: not allowed: private IP {shown}; grant the entry the "
                                f"{PRIVATE_IP} permission (its permissions field) to reach internal hosts")


def _checked(host: str, infos: list[Any]) -> str:
    """The address to connect to: the first one, once every address of the name is public."""
    addresses = [info[4][0] for info in infos]
    if not addresses:
        raise OSError(f"{host}: no address")
    for a in addresses:
        if blocked(a):
            raise _denied(host, a)
    return str(addresses[0])


def _host_text(host: Any) -> str:
    return host.decode("ascii") if isinstance(host, bytes) else str(host)


class _Guard:
    """A network backend (httpcore's) that connects only to checked public addresses."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def connect_tcp(self, host: Any, port: int, timeout: float | None = None, local_address: str | None = None,
                    socket_options: Any = None) -> Any:
        name = _host_text(host)
        address = _checked(name, socket.getaddrinfo(name, port, type=socket.SOCK_STREAM))
        return self.inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                      socket_options=socket_options)

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        raise errors.PermissionDenied("http_client: unix sockets are not supported")

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _AsyncGuard(_Guard):
    async def connect_tcp(self, host: Any, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Any = None) -> Any:
        name = _host_text(host)
        infos = await asyncio.get_running_loop().getaddrinfo(name, port, type=socket.SOCK_STREAM)
        return await self.inner.connect_tcp(_checked(name, infos), port, timeout=timeout,
                                            local_address=local_address, socket_options=socket_options)

    async def connect_unix_socket(self, *args: Any, **kwargs: Any) -> Any:
        return super().connect_unix_socket()

    async def sleep(self, seconds: float) -> None:  # type: ignore[override]
        await self.inner.sleep(seconds)


def client(*, verify: Any = True, private_ip: bool = False, asynchronous: bool = False) -> Any:
    """An httpx client following redirects as Wippy's does; without ``private_ip``, its connections are guarded."""
    import httpx

    transport_cls = httpx.AsyncHTTPTransport if asynchronous else httpx.HTTPTransport
    transport: Any = transport_cls(verify=verify)
    if not private_ip:
        pool = transport._pool  # httpcore's connection pool: its backend makes every connection
        pool._network_backend = (_AsyncGuard if asynchronous else _Guard)(pool._network_backend)
    cls = httpx.AsyncClient if asynchronous else httpx.Client
    return cls(verify=verify, transport=transport, follow_redirects=True, max_redirects=MAX_REDIRECTS)


def send(req: Request) -> dict[str, Any]:
    """The request, on this thread."""
    with _errors(req), client(verify=req.verify, private_ip=req.private_ip) as c:
        return _response(c.request(**_request_args(req)), req)


async def send_async(req: Request, shared: Any = None) -> dict[str, Any]:
    """The request, awaited; ``shared`` (from ``client(asynchronous=True, private_ip=req.private_ip)``) is
    used when it verifies TLS the usual way."""
    with _errors(req):
        if shared is not None and req.verify is True:
            return _response(await shared.request(**_request_args(req)), req)
        async with client(verify=req.verify, private_ip=req.private_ip, asynchronous=True) as c:
            return _response(await c.request(**_request_args(req)), req)


def batch_requests(requests_json: str) -> list[Request]:
    """request_batch's requests; Invalid for the first bad one (then none is sent, as in Wippy)."""
    return [prepare(r["method"], r["url"], r.get("options")) for r in json.loads(requests_json)]


async def batch_async(reqs: list[Request], shared: Any = None) -> list[dict[str, Any]]:
    """Every request at once, in order: {ok=true, response=} or {ok=false, error={kind=, message=, retryable=}}."""
    async def one(req: Request) -> dict[str, Any]:
        try:
            return {"ok": True, "response": await send_async(req, shared)}
        except errors.MoontideError as e:
            return {"ok": False, "error": e.as_dict()}
    return list(await asyncio.gather(*(one(r) for r in reqs)))


def batch(reqs: list[Request]) -> list[dict[str, Any]]:
    """``batch_async`` from a thread with no event loop (a function's)."""
    return asyncio.run(batch_async(reqs))
