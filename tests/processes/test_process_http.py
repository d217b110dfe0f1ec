"""http from a process waits without holding its host; from a function (its own thread) it still works.

The server is a real one on loopback. Its ``/slow`` answer is held until the
test releases it, and the test releases it only after two other processes on
the same host have finished a ping-pong: if a request held the host's loop,
the ping-pong could not finish and the test would time out.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable

import pytest

from _procs import process_app, running, settle
from moontide import errors

MODULES = "[process, channel, http, json, errors]"


@pytest.fixture
def server() -> Iterator[tuple[str, threading.Event]]:
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/slow":
                release.wait(60)
            body = f"{self.path} {self.headers.get('X-Who', '')}".encode()
            self.send_response(200 if self.path != "/missing" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", release
    finally:
        release.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def _app(make_app: Callable[..., Path], processes: dict[str, str], **kw: object) -> Path:
    app = process_app(make_app, processes, **kw)  # type: ignore[arg-type]
    text = (app / "app.yaml").read_text().replace("modules: [process, channel, time, errors, json, logger, funcs, uuid]",
                                                  f"modules: {MODULES[:-1]}, funcs]")
    (app / "app.yaml").write_text(text)
    return app


async def test_a_process_waiting_on_http_does_not_hold_the_host(make_app: Callable[..., Path],
                                                               server: tuple[str, threading.Event]) -> None:
    url, release = server
    fetcher = """
    return function(url)
      local r, err = http.get(url .. "/slow", { headers = { ["X-Who"] = "fetcher" } })
      if not r then return nil, err end
      return { status = r.status_code, body = r.body }
    end
    """
    ping = """
    return function(n)
      local peer = process.spawn("pong", "host")
      for i = 1, n do
        process.send(peer, "ping", { i = i })
        local msg = process.inbox():receive()
        assert(msg.i == i)
      end
      return n
    end
    """
    pong = """
    return function()
      while true do
        local msg = process.inbox():receive()
        process.send(msg:from(), "pong", { i = msg.i })
      end
    end
    """
    app = _app(make_app, {"fetcher": fetcher, "ping": ping, "pong": pong})
    async with running(app) as system:
        waiting = system.spawn("app:fetcher", "app:host", url)
        await settle(system, waiting, "waiting for http GET")
        # the fetcher waits on its request; the host goes on with the others
        assert await system.result(system.spawn("app:ping", "app:host", 500)) == 500
        assert system.actor(waiting) is not None, "the request was answered before it was released"
        release.set()
        assert await system.result(waiting) == {"status": 200, "body": "/slow fetcher"}


async def test_http_answers_errors_and_functions_keep_their_synchronous_http(
        make_app: Callable[..., Path], server: tuple[str, threading.Event]) -> None:
    url, _ = server
    caller = """
    return function(url)
      local missing = http.get(url .. "/missing")
      local _, refused = http.get("http://127.0.0.1:1/")
      local _, bad = http.get(url, { colour = "red" })
      local via_function = funcs.call("fetch", url .. "/fn")
      return { missing = missing.status_code, refused = refused:kind(), bad = bad:kind() .. ": " .. bad:message(),
               via_function = via_function }
    end
    """
    fetch = """
    return function(url)
      local r, err = http.get(url)
      if not r then return nil, err end
      return r.body
    end
    """
    app = _app(make_app, {"caller": caller}, functions={"fetch": fetch})
    text = (app / "app.yaml").read_text().replace("modules: [time, errors, json, logger, process]",
                                                  "modules: [http, errors]")
    (app / "app.yaml").write_text(text)
    async with running(app) as system:
        out = await system.result(system.spawn("app:caller", "app:host", url))
    assert out["missing"] == 404 and out["refused"] == "Unavailable" and out["via_function"] == "/fn "
    assert out["bad"].startswith("Invalid: http: unknown option 'colour'")



async def test_http_client_from_a_process_waits_on_the_hosts_loop(
        make_app: Callable[..., Path], server: tuple[str, threading.Event]) -> None:
    """Wippy's http_client in a process: the request is awaited (the process waits, the host goes on)."""
    url, release = server
    fetcher = """
    return function(url)
      local r, err = http_client.get(url .. "/slow", { headers = { ["X-Who"] = "client" } })
      if not r then return nil, err end
      local batch, errs = http_client.request_batch({ { "GET", url .. "/a" }, { "GET", "http://127.0.0.1:1/" } })
      local _, bad = http_client.get(url, { unix_socket = "/tmp/x.sock" })
      return { status = r.status_code, body = r.body, size = r.body_size, first = batch[1].body,
               second = batch[2], second_err = errors.is(errs[2], errors.INTERNAL),
               bad = errors.is(bad, errors.INVALID) }
    end
    """
    app = _app(make_app, {"fetcher": fetcher, "guarded": fetcher})
    text = (app / "app.yaml").read_text().replace(f"modules: {MODULES[:-1]}, funcs]",
                                                  "modules: [http_client, errors]")
    # the server is on loopback: refused by default (SSRF), reachable with Wippy's permission
    text = text.replace("source: file://fetcher.lua", "source: file://fetcher.lua\n    permissions: [http_client.private_ip]")
    (app / "app.yaml").write_text(text)
    async with running(app) as system:
        pid = system.spawn("app:fetcher", "app:host", url)
        await settle(system, pid, "waiting for http_client GET")
        release.set()
        out = await system.result(pid)
        with pytest.raises(errors.MoontideError, match="not allowed: private IP 127.0.0.1") as refused:
            await system.result(system.spawn("app:guarded", "app:host", url))
    assert out == {"status": 200, "body": "/slow client", "size": 12, "first": "/a ", "second_err": True,
                   "bad": True}
    assert refused.value.kind == "PermissionDenied"
