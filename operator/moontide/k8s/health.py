"""/healthz, /readyz and Prometheus /metrics for the operator, worker and service processes.

A stdlib HTTP server on a daemon thread: it keeps answering while the asyncio
loop is busy, and needs no web framework. So that liveness still means
something, the loop beats once a second: /healthz fails once it has not beaten
for ``stuck_after`` seconds (a loop that stopped answering is a dead process). Metrics come from
``prometheus_client`` (the ``operator`` extra); without it /metrics says so
with a 501 and the probes still work. ``extra_metrics`` lets the worker append
the Temporal SDK's own Prometheus text (workflow and activity counts and
latencies) so one port serves everything.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Health", "metric"]

log = logging.getLogger("moontide.health")

try:
    import prometheus_client
except ImportError:  # pragma: no cover - the operator extra installs it
    prometheus_client = None  # type: ignore[assignment]


_METRICS: dict[str, Any] = {}


def metric(kind: str, name: str, documentation: str, labels: tuple[str, ...] = (), **kw: Any) -> Any:
    """A process-wide Prometheus metric (created once; a no-op stand-in without prometheus_client)."""
    if name in _METRICS:
        return _METRICS[name]
    if prometheus_client is None:
        made: Any = _Noop()
    else:
        made = getattr(prometheus_client, kind)(name, documentation, labels, **kw)
    _METRICS[name] = made
    return made


class _Noop:
    def labels(self, *a: Any, **k: Any) -> _Noop:
        return self

    def inc(self, *a: Any) -> None:
        pass

    def dec(self, *a: Any) -> None:
        pass

    def set(self, *a: Any) -> None:
        pass

    def observe(self, *a: Any) -> None:
        pass

    def info(self, *a: Any) -> None:
        pass


class Health:
    """Liveness and readiness flags plus the HTTP server that reports them."""

    def __init__(self, *, port: int, host: str = "0.0.0.0", extra_metrics: Callable[[], str] | None = None,
                 stuck_after: float = 30.0) -> None:
        self.port = port
        self.host = host
        self.alive = True
        self.stuck_after = stuck_after
        self._beat: float | None = None  # monotonic time of the loop's last beat; None: no loop watched
        self._beater: asyncio.Task[None] | None = None
        self.ready = False
        self.reason = "starting"
        self.extra_metrics = extra_metrics
        self._server: ThreadingHTTPServer | None = None

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready = ready
        self.reason = reason or ("ok" if ready else "not ready")

    def stuck_for(self) -> float:
        """Seconds the watched event loop has not beaten (0 while it beats, or when none is watched)."""
        if self._beat is None:
            return 0.0
        late = time.monotonic() - self._beat
        return late if late > self.stuck_after else 0.0

    async def _beats(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(1.0)

    def start(self) -> None:
        """Serve the endpoints; called on an event loop, also watch that loop."""
        if self.port <= 0:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            self._beat = time.monotonic()
            self._beater = loop.create_task(self._beats())
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                path = self.path.split("?", 1)[0]
                if path in ("/healthz", "/livez"):
                    stuck = health.stuck_for()
                    if stuck:
                        self._send(503, f"event loop stuck for {stuck:.0f}s\n")
                    else:
                        self._send(200 if health.alive else 503, "ok\n" if health.alive else "dead\n")
                elif path == "/readyz":
                    self._send(200 if health.ready else 503, f"{health.reason}\n")
                elif path == "/metrics":
                    if prometheus_client is None:
                        self._send(501, "prometheus_client is not installed (pip install 'moontide[operator]')\n")
                        return
                    text = prometheus_client.generate_latest().decode()
                    if health.extra_metrics is not None:
                        try:
                            text += health.extra_metrics()
                        except Exception as e:  # the SDK exporter may be starting
                            log.debug("extra metrics unavailable: %s", e)
                    self._send(200, text, prometheus_client.CONTENT_TYPE_LATEST)
                else:
                    self._send(404, "not found\n")

            def _send(self, code: int, body: str, content_type: str = "text/plain; charset=utf-8") -> None:
                data = body.encode()
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="moontide-health", daemon=True).start()
        log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", self.host, self.port)

    def stop(self) -> None:
        if self._beater is not None:
            self._beater.cancel()
            self._beater, self._beat = None, None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
