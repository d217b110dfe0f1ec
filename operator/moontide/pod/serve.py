"""``moontide worker`` and ``moontide service``: what the pods the operator makes run.

Both read a bundle directory (the mounted ConfigMap: ``bundle.json`` and
``sources/``), connect to Temporal from the environment the Deployment sets
(``MOONTIDE_TEMPORAL_ADDRESS``, ``MOONTIDE_TEMPORAL_NAMESPACE``,
``MOONTIDE_TEMPORAL_API_KEY``, ``MOONTIDE_TEMPORAL_TLS*``; falling back to the
bundle's temporal.client entry) and serve /healthz, /readyz and /metrics.

The worker runs ``moontide.workflows.build_worker`` for one temporal.worker
entry, copies old code versions (``--code-history``) into its code store so
executions pinned to them replay, and reloads when the bundle changes: it
shuts the old worker down and starts one on the new bundle (tasks wait on
the queue meanwhile). Metrics: the
Temporal SDK's own (workflow and activity counts, task latencies), plus
Moontide's per function (calls, errors by kind, Lua errors, seconds).

This module is imported by the CLI only when one of these commands runs; it
is the one Kubernetes-side module that loads lupa and the Temporal worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

from .. import errors
from ..entries import App, Entry, resolve_ref
from ..entries import expand_env as _env
from ..k8s import bundle, objects
from ..k8s.health import Health, metric

__all__ = ["run_service", "run_worker", "temporal_settings"]

log = logging.getLogger("moontide.worker")
slog = logging.getLogger("moontide.service")

_BUNDLE = metric("Info", "moontide_bundle", "The bundle this process runs.")
_RELOADS = metric("Counter", "moontide_bundle_reloads_total", "Bundle reloads, by outcome.", ("outcome",))
_CALLS = metric("Counter", "moontide_function_calls_total", "Function (activity) calls, by entry and outcome.",
                ("function", "outcome"))
_ERRORS = metric("Counter", "moontide_function_errors_total", "Function errors by kind.", ("function", "kind"))
_LUA_ERRORS = metric("Counter", "moontide_lua_errors_total", "Lua errors (raised, over budget) in functions.",
                     ("function", "kind"))
_SECONDS = metric("Histogram", "moontide_function_seconds", "Time in a function call.", ("function",))
_SERVICE = metric("Gauge", "moontide_service_up", "1 while the service's process is Running.", ("service",))
_SERVICE_RESTARTS = metric("Gauge", "moontide_service_restarts", "Restarts of the service.", ("service",))


def temporal_settings(client: Entry | None, *, override: str | None = None) -> dict[str, Any]:
    """Keyword arguments of ``Client.connect`` (plus ``address``) from the environment and the client entry."""
    data = client.data if client is not None else {}
    address = override or os.environ.get(objects.ENV_ADDRESS) or data.get("address")
    if not address:
        raise errors.Unavailable(f"no Temporal address: set {objects.ENV_ADDRESS} or the temporal.client's "
                                   "address")
    kw: dict[str, Any] = {"address": _env(address),
                          "namespace": os.environ.get(objects.ENV_NAMESPACE) or data.get("namespace") or "default"}
    auth = data.get("auth") or {}
    api_key = os.environ.get(objects.ENV_API_KEY) or (_env(auth.get("api_key")) if auth.get("api_key") else None)
    if api_key:
        kw["api_key"] = api_key
    tls = data.get("tls") or {}
    if os.environ.get(objects.ENV_TLS, "").lower() == "true" or tls.get("enabled") or auth.get("type") == "mtls":
        from temporalio.service import TLSConfig

        tls_dir = os.environ.get(objects.ENV_TLS_DIR)

        def read(env_file: str, field: str) -> bytes | None:
            if tls_dir and (Path(tls_dir) / env_file).is_file():
                return (Path(tls_dir) / env_file).read_bytes()
            return Path(_env(tls[field])).read_bytes() if tls.get(field) else None

        kw["tls"] = TLSConfig(server_root_ca_cert=read("ca.crt", "ca_file"), client_cert=read("tls.crt", "cert_file"),
                              client_private_key=read("tls.key", "key_file"),
                              domain=os.environ.get(objects.ENV_TLS_SERVER_NAME) or tls.get("server_name"))
    return kw


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _interceptor() -> Any:
    """A client interceptor that workers pick up too: Moontide's function metrics."""
    from temporalio import activity
    from temporalio import client as tclient
    from temporalio import worker as tworker

    class Inbound(tworker.ActivityInboundInterceptor):
        async def execute_activity(self, input: tworker.ExecuteActivityInput) -> Any:
            name = activity.info().activity_type
            started = time.monotonic()
            try:
                result = await self.next.execute_activity(input)
            except BaseException as e:
                kind = str(getattr(e, "type", None) or type(e).__name__)
                if not hasattr(e, "type"):  # not an ApplicationError: moontide.functions did not say why
                    log.warning("function %s failed: %s", name, e, exc_info=not isinstance(e, asyncio.CancelledError))
                _CALLS.labels(name, "error").inc()
                _ERRORS.labels(name, kind).inc()
                if kind in ("LuaError", "BudgetExceeded"):
                    _LUA_ERRORS.labels(name, kind).inc()
                raise
            finally:
                _SECONDS.labels(name).observe(time.monotonic() - started)
            _CALLS.labels(name, "ok").inc()
            return result

    class Metrics(tclient.Interceptor, tworker.Interceptor):
        def intercept_activity(self, next: tworker.ActivityInboundInterceptor) -> tworker.ActivityInboundInterceptor:
            return Inbound(next)

    return Metrics()


async def _connect(app: App, client_id: str | None, *, override: str | None, sdk_metrics_port: int) -> Any:
    from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

    from ..client import connect_temporal

    client_entry = app.entries.get(client_id) if client_id else None
    kw = temporal_settings(client_entry, override=override)
    address = kw.pop("address")
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=f"127.0.0.1:{sdk_metrics_port}")))
    deadline = time.monotonic() + 60
    while True:
        try:
            return await connect_temporal(address, runtime=runtime, interceptors=[_interceptor()],
                                          identity=f"{os.environ.get('POD_NAME') or socket.gethostname()}@moontide",
                                          **kw)
        except errors.Unavailable as e:
            if time.monotonic() > deadline:
                raise
            log.warning("not yet: %s", e.message)
            await asyncio.sleep(2)


def _sdk_metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:  # noqa: S310 - loopback
        return str(resp.read().decode())


def _copy_history(history: Path | None, store: Path) -> int:
    """Copy old code versions (``<digest>.json``) into the worker's code store; how many were new."""
    if history is None or not history.is_dir():
        return 0
    store.mkdir(parents=True, exist_ok=True)
    n = 0
    for f in history.glob("*.json"):
        target = store / f.name
        if not target.exists():
            shutil.copyfile(f, target)
            n += 1
    return n


def _load(bundle_dir: Path) -> tuple[App, str]:
    from ..lua import check_syntax

    return bundle.load_dir(bundle_dir, check_lua=check_syntax)


def _fingerprint(bundle_dir: Path, history: Path | None) -> str:
    """Changes when the mounted bundle (or code history) changes; cheap enough to poll."""
    parts = []
    for root in (bundle_dir, history):
        if root is not None and root.is_dir():
            for f in sorted(root.rglob("*")):
                if f.is_file() and "..data" not in f.parts[-2:]:
                    st = f.stat()
                    parts.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    return "\n".join(parts)


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    return stop


async def run_worker(*, bundle_dir: str, worker_id: str | None, code_history: str | None = None,
                     code_store: str | None = None, http_port: int = 8080, temporal: str | None = None,
                     reload_seconds: float = 1.0) -> int:
    """Serve one temporal.worker entry of a bundle until SIGTERM; 0 on a clean stop."""
    from ..workflows import build_worker

    logging.getLogger("httpx").setLevel(logging.WARNING)
    root = Path(bundle_dir)
    history = Path(code_history) if code_history else None
    store = Path(code_store or os.environ.get("MOONTIDE_CODE_STORE") or "/tmp/moontide/code")
    sdk_port = _free_port()
    health = Health(port=http_port, extra_metrics=lambda: _sdk_metrics(sdk_port))
    health.start()
    stop = _stop_event()
    try:
        app, digest = _load(root)
        workers = app.of_kind("temporal.worker")
        wid = worker_id or os.environ.get("MOONTIDE_WORKER") or (workers[0].id if len(workers) == 1 else None)
        if wid is None:
            raise errors.Invalid("name the temporal.worker entry to run: --worker ID "
                                 f"(the bundle has: {', '.join(w.id for w in workers) or 'none'})")
        entry = app.get(wid)
        if entry.kind != "temporal.worker":
            raise errors.Invalid(f"{wid} is a {entry.kind}, not a temporal.worker")
        client_id = resolve_ref(str(entry.data["client"]), entry.namespace)
        client = await _connect(app, client_id, override=temporal, sdk_metrics_port=sdk_port)
        _copy_history(history, store)
        fingerprint = _fingerprint(root, history)

        def start(app: App, digest: str) -> tuple[Any, asyncio.Task[None]]:
            worker = build_worker(client, app, app.get(wid), code_store=store)
            task = asyncio.create_task(worker.run(), name=f"worker {wid} {digest}")
            _BUNDLE.info({"hash": digest, "worker": wid, "entries": str(len(app.entries))})
            log.info("worker %s serving bundle %s (%d workflows, %d functions) on task queue %r",
                     wid, digest, len(app.of_kind("workflow.lua")), len(app.of_kind("function.lua")),
                     app.get(wid).data.get("task_queue") or wid)
            return worker, task

        worker, task = start(app, digest)
        health.set_ready(True, f"serving bundle {digest}")
        stopping = asyncio.ensure_future(stop.wait())
        while True:
            await asyncio.wait({stopping, task}, timeout=reload_seconds if reload_seconds > 0 else None,
                               return_when=asyncio.FIRST_COMPLETED)
            if task.done() and not stop.is_set():
                health.alive = False
                stopping.cancel()
                task.result()  # the worker died: raise its error
                return 1
            if stop.is_set():
                break
            now = _fingerprint(root, history)
            if now == fingerprint:
                continue
            fingerprint = now
            _copy_history(history, store)
            try:
                new_app, new_digest = _load(root)
            except errors.MoontideError as e:
                _RELOADS.labels("invalid").inc()
                log.error("bundle changed but does not load (keeping bundle %s): %s", digest, e.message)
                continue
            if new_digest == digest:
                continue
            log.info("bundle changed: %s -> %s", digest, new_digest)
            # The SDK refuses two workers of one client on a task queue: the old one goes first
            # (tasks wait on the queue meanwhile; nothing is lost).
            health.set_ready(False, "reloading")
            await worker.shutdown()
            await asyncio.gather(task, return_exceptions=True)
            worker, task = start(new_app, new_digest)
            digest = new_digest
            health.set_ready(True, f"serving bundle {digest}")
            _RELOADS.labels("ok").inc()
        health.set_ready(False, "stopping")
        await worker.shutdown()
        await asyncio.gather(task, return_exceptions=True)
        return 0
    finally:
        health.stop()


async def run_service(*, bundle_dir: str, service_id: str | None, http_port: int = 8080,
                      temporal: str | None = None) -> int:
    """Run one process.service of a bundle under its supervisor until SIGTERM (or it ends)."""
    try:
        from ..processes import ProcessSystem
        from ..processes._supervisor import FINAL, ServiceState
    except ImportError as e:
        raise errors.Unavailable(f"moontide service: the process host (moontide.processes) is not available in "
                                   f"this build: {e}", retryable=False) from None
    health = Health(port=http_port)
    health.start()
    stop = _stop_event()
    try:
        app, digest = _load(Path(bundle_dir))
        services = app.of_kind("process.service")
        sid = service_id or (services[0].id if len(services) == 1 else None)
        if sid is None:
            raise errors.Invalid("name the process.service entry to run: --service ID "
                                 f"(the bundle has: {', '.join(s.id for s in services) or 'none'})")
        if app.get(sid).kind != "process.service":
            raise errors.Invalid(f"{sid} is a {app.get(sid).kind}, not a process.service")
        client = None
        if os.environ.get(objects.ENV_ADDRESS) or temporal:
            clients = app.of_kind("temporal.client")
            client = await _connect(app, clients[0].id if len(clients) == 1 else None, override=temporal,
                                    sdk_metrics_port=_free_port())
        system = ProcessSystem(app, client=client)
        await system.start(auto_start=False)
        try:
            await system.supervisor.start([sid])
            svc = system.service(sid)
            slog.info("service %s running from bundle %s", sid, digest)
            ended = False
            while not stop.is_set():
                up = svc.state == ServiceState.RUNNING
                health.set_ready(up, str(svc.state))
                _SERVICE.labels(sid).set(1 if up else 0)
                _SERVICE_RESTARTS.labels(sid).set(svc.restarts)
                if svc.state in FINAL and not ended:
                    ended = True
                    slog.info("service %s ended: %s%s", sid, svc.state,
                              f" ({svc.last_error})" if svc.last_error else "")
                    if svc.state != ServiceState.EXITED:
                        return 1  # Failed: the pod restarts, and its status shows the error
                    # A clean return is done: stay up (not ready) so the Deployment does not rerun it.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
            return 0
        finally:
            await system.stop()
    finally:
        health.stop()
