"""The http_client module, from Wippy's page (en/lua/http/client.md), against a real server on loopback.

These run the function host's path (a request blocks the caller's thread);
tests/processes/test_process_http.py runs the process host's (awaited on its loop).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from lua_helpers import done, make_runtime, run_lua

from moontide.lua import _http_client
from moontide.lua.host import FunctionHost

MODS = ["http_client", "json", "errors"]


class Echo(BaseHTTPRequestHandler):
    """Answers what it got as JSON; /redirect redirects, /binary is every byte, /slow waits."""

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        if self.path.startswith("/redirect"):
            self.send_response(302)
            self.send_header("Location", "/final")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path == "/slow":
            threading.Event().wait(3)
        out = bytes(range(256)) if self.path == "/binary" else json.dumps({
            "method": self.command, "path": self.path, "headers": dict(self.headers.items()),
            "body": body.decode("latin-1")}).encode()
        self.send_response(404 if self.path == "/missing" else 200)
        self.send_header("Content-Length", str(len(out)))
        self.send_header("set-cookie", "session=abc; Path=/")
        self.send_header("x-multi", "one")
        self.send_header("x-multi", "two")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_PROPFIND = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(10)


def lua(body: str, *args: object, private_ip: bool = True) -> tuple[object, ...]:
    """Run ``body`` in a function host; granted http_client.private_ip unless told not to (the server is on
    loopback)."""
    rt = make_runtime()
    host = FunctionHost(rt)
    if private_ip:
        host.permissions = frozenset({_http_client.PRIVATE_IP})
    return done(run_lua(body, *args, rt=rt, host=host, modules=MODS))


def test_methods_and_the_response_object(url: str) -> None:
    got = lua("""
        local url = ...
        local out = {}
        for _, m in ipairs({"get", "post", "put", "patch", "delete"}) do
          local r = http_client[m](url .. "/" .. m)
          out[#out + 1] = json.decode(r.body).method
        end
        local r = http_client.get(url .. "/x")
        local h = http_client.head(url .. "/h")
        local pf = http_client.request("PROPFIND", url .. "/dav", {headers = {Depth = "1"}})
        local missing = http_client.get(url .. "/missing")
        return table.concat(out, ","), r.status_code, r.headers["Content-Type"] == nil, r.headers["X-Multi"],
               r.cookies.session, r.body_size == #r.body, r.url, h.body, h.body_size,
               json.decode(pf.body).method, json.decode(pf.body).headers.Depth, missing.status_code
    """, url)
    assert got == ("GET,POST,PUT,PATCH,DELETE", 200, True, "one", "abc", True, url + "/x", "", 0, "PROPFIND", "1", 404)


def test_request_options(url: str) -> None:
    got = lua("""
        local url = ...
        local r = http_client.post(url .. "/p", {
          headers = {["Content-Type"] = "application/json", ["X-A"] = "1"},
          body = json.encode({name = "Alice"}),
          query = {q = "lua programming", page = "1"},
          cookies = {c = "v"},
          auth = {user = "admin", pass = "secret"},
          timeout = "30s",
        })
        local d = json.decode(r.body)
        local f = json.decode(http_client.post(url .. "/login", {form = {username = "alice", password = "s 3"}}).body)
        return d.path, d.headers["X-A"], d.headers["Content-Type"], d.body, d.headers.Cookie, d.headers.Authorization,
               f.body, f.headers["Content-Type"]
    """, url)
    assert got == ("/p?page=1&q=lua+programming", "1", "application/json", '{"name":"Alice"}', "c=v",
                   "Basic YWRtaW46c2VjcmV0", "password=s+3&username=alice", "application/x-www-form-urlencoded")


def test_binary_bodies_both_ways_and_file_uploads(url: str) -> None:
    got = lua("""
        local url = ...
        local sent = json.decode(http_client.post(url .. "/b", {body = "\\x00\\xff\\x80"}).body).body
        local bin = http_client.get(url .. "/binary").body
        local up = json.decode(http_client.post(url .. "/u", {
          form = {title = "My Document"},
          files = {{name = "attachment", filename = "report.pdf", content = "%PDF\\x00\\xff", content_type = "application/pdf"}},
        }).body)
        return #sent, #bin, bin:byte(1), bin:byte(256), up.headers["Content-Type"]:match("^multipart/form%-data") ~= nil,
               up.body:find('name="attachment"; filename="report.pdf"', 1, true) ~= nil,
               up.body:find('name="title"', 1, true) ~= nil, up.body:find("My Document", 1, true) ~= nil
    """, url)
    # the server answers the body's bytes as Latin-1 text: 3 bytes sent are 5 bytes of UTF-8 back
    assert got == (5, 256, 0, 255, True, True, True, True)


def test_redirects_are_followed(url: str) -> None:
    got = lua("local r = http_client.get((...) .. '/redirect') return r.status_code, r.url", url)
    assert got == (200, url + "/final")


def test_streaming_reads_the_body_in_chunks(url: str) -> None:
    got = lua("""
        local r = http_client.get((...) .. "/binary", {stream = true})
        local sizes = {}
        while true do
          local chunk = r.stream:read(100)
          if not chunk then break end
          sizes[#sizes + 1] = #chunk
        end
        return r.body, r.body_size, table.concat(sizes, ","), r.stream:close()
    """, url)
    assert got == (None, -1, "100,100,56", True)


def test_batch_requests(url: str) -> None:
    got = lua("""
        local url = ...
        local responses, errs = http_client.request_batch({
          {"GET", url .. "/users"},
          {"POST", url .. "/log", {body = "event"}},
        })
        local r2, e2 = http_client.request_batch({{"GET", url .. "/ok"}, {"GET", "http://127.0.0.1:1/down"}})
        return errs, json.decode(responses[1].body).path, json.decode(responses[2].body).body, r2[1].status_code,
               r2[2], e2[1], errors.is(e2[2], errors.INTERNAL)
    """, url)
    assert got == (None, "/users", "event", 200, None, None, True)


def test_errors(url: str) -> None:
    got = lua("""
        local url = ...
        local function check(kind, ...)
          local r, err = http_client.request(...)
          return r == nil and errors.is(err, kind) and tostring(err) or "unexpected"
        end
        return check(errors.INVALID, "GET", "notaurl"),
               check(errors.INVALID, "GET", url, {unix_socket = "/var/run/docker.sock"}),
               check(errors.INVALID, "GET", url, {retries = 3}),
               check(errors.INVALID, "GET", url, {headers = {X = 1}}),
               check(errors.INVALID, "GET", url, {tls = {cert = "x", key = "y"}}),
               check(errors.INTERNAL, "GET", "http://127.0.0.1:1/"),
               check(errors.INTERNAL, "GET", url .. "/slow", {timeout = 0.2}),
               check(errors.INVALID, "GET", ""),
               check(errors.INTERNAL, "GET", url .. "/binary", {max_response_body = 10})
    """, url)
    assert got[0].startswith("http_client GET notaurl: invalid URL")
    assert got[1].endswith("option unix_socket is not supported: Moontide reaches HTTP servers over TCP only")
    assert "unknown option 'retries'" in got[2]
    assert got[3].endswith("options.headers.X must be a string, got int")
    assert "option tls.cert is not supported" in got[4]
    assert got[5].startswith("http_client GET http://127.0.0.1:1/: ")
    assert got[6].startswith(f"http_client GET {url}/slow: timeout")
    assert got[7] == "http_client: URL required"
    assert "exceeds max_response_body (10)" in got[8]


def test_network_errors_are_retryable() -> None:
    got = lua("""
        local _, err = http_client.get("http://127.0.0.1:1/")
        local _, bad = http_client.get("notaurl")
        return json.encode({n = err, b = bad})
    """)
    shown = json.loads(got[0])
    assert shown["n"]["retryable"] is True and shown["b"]["retryable"] is False


def test_uri_encoding() -> None:
    got = lua("""
        local bad, err = http_client.decode_uri("%zz")
        return http_client.encode_uri("hello world"), http_client.encode_uri("a/b?c=d&e=é~-_."),
               http_client.decode_uri("hello+world"), http_client.decode_uri("a%2Fb%3F"), bad, errors.is(err, errors.INVALID)
    """)
    assert got == ("hello+world", "a%2Fb%3Fc%3Dd%26e%3D%C3%A9~-_.", "hello world", "a/b?", None, True)


SSRF = """
    local url = ...
    local function denied(...)
      local r, err = http_client.request(...)
      return r == nil and errors.is(err, errors.PERMISSION_DENIED) and not err:retryable() and tostring(err)
        or "unexpected"
    end
    local responses, errs = http_client.request_batch({ { "GET", url .. "/a" } })
    return denied("GET", url .. "/x"), denied("GET", (url:gsub("127.0.0.1", "localhost")) .. "/x"),
           denied("GET", "http://169.254.169.254/latest/meta-data/"), denied("GET", "http://[::1]:1/"),
           denied("GET", "http://[::ffff:127.0.0.1]:1/"), denied("GET", "http://10.1.2.3:1/"),
           errs and errors.is(errs[1], errors.PERMISSION_DENIED)
"""


def test_private_addresses_are_refused_by_default(url: str) -> None:
    got = lua(SSRF, url, private_ip=False)
    assert all(g != "unexpected" for g in got[:6]), got
    assert got[0] == ("http_client: not allowed: private IP 127.0.0.1; grant the entry the http_client.private_ip "
                      "permission (its permissions field) to reach internal hosts")
    assert "private IP localhost (127.0.0.1)" in got[1]  # resolved first, then refused
    assert "169.254.169.254" in got[2] and got[6] is True


def test_dns_rebinding_cannot_slip_past_the_check() -> None:
    # a public name cannot be had offline: the guard is handed a resolution that changes between calls
    # (DNS rebinding) and must connect only to the address it checked
    import socket

    answers = iter([[(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 80))],
                    [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", 80))]])
    connected: list[str] = []

    class Inner:
        def connect_tcp(self, host: str, port: int, **kw: object) -> None:
            connected.append(host)

    guard = _http_client._Guard(Inner())
    real = socket.getaddrinfo
    socket.getaddrinfo = lambda *a, **k: next(answers)  # type: ignore[assignment]
    try:
        guard.connect_tcp("rebind.example", 80)
        with pytest.raises(Exception, match="not allowed: private IP rebind.example \\(127.0.0.1\\)"):
            guard.connect_tcp("rebind.example", 80)
    finally:
        socket.getaddrinfo = real
    assert connected == ["93.184.216.34"]  # the checked address itself, not the name again


@pytest.mark.parametrize(("address", "refused"), [
    ("127.0.0.1", True), ("10.0.0.1", True), ("172.16.5.4", True), ("192.168.1.1", True), ("169.254.169.254", True),
    ("100.64.0.1", True), ("0.0.0.0", True), ("224.0.0.1", True), ("::1", True), ("fe80::1", True), ("fd00:ec2::254", True),
    ("::ffff:10.0.0.1", True), ("64:ff9b::a00:1", True), ("2002:a00:1::", True), ("8.8.8.8", False),
    ("2606:4700:4700::1111", False),
])
def test_what_counts_as_private(address: str, refused: bool) -> None:
    assert _http_client.blocked(address) is refused


def test_the_guard_is_in_the_clients_transport() -> None:
    # the guard sits on a private attribute of httpx/httpcore: an upgrade that moves it must fail here
    for asynchronous in (False, True):
        c = _http_client.client(asynchronous=asynchronous)
        assert isinstance(c._transport._pool._network_backend, _http_client._Guard)
        assert not isinstance(_http_client.client(private_ip=True, asynchronous=asynchronous)
                              ._transport._pool._network_backend, _http_client._Guard)


def test_an_entry_opts_in_with_its_permissions_field(url: str, make_app: Callable[..., Path]) -> None:
    from moontide.lua.code import LuaCode
    from moontide.runtime import load
    from moontide.workflows import Functions

    source = "return function(url) local r, err = http_client.get(url) return r and r.status_code or err:kind() end"
    root = make_app({"app.yaml": f"""
        version: "1.0"
        namespace: app
        entries:
          - name: open
            kind: function.lua
            source: '{source}'
            modules: [http_client]
            permissions: [http_client.private_ip]
          - name: closed
            kind: function.lua
            source: '{source}'
            modules: [http_client]
        """})
    app = load(root)
    fns = Functions({e.id: LuaCode.from_entry(app, e) for e in app.of_kind("function.lua")}, app=app)
    assert fns.call("app:open", [url + "/x"]) == 200
    assert fns.call("app:closed", [url + "/x"]) == "PermissionDenied"
