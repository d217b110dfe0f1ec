"""``moontide ps`` and ``moontide up``: the process side of the command line.

- ``moontide ps --app DIR [--json]`` lists the app's services (state, restarts,
  last error) and the processes of its hosts, from the state a running app
  writes to ``DIR/.moontide/processes.json``; with no app running it lists the
  services as declared, Stopped.
- ``moontide up DIR`` runs an app whole: Temporal workers (``AppRuntime``), its
  process hosts and its ``auto_start`` services (in ``depends_on`` order), with
  processes and workflows wired both ways; ``--spawn ENTRY`` also starts a
  process (or a workflow), prints its result as JSON and exits.

``moontide.cli`` calls ``register(subparsers)``; each handler returns an exit code
(or a coroutine of one).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from .. import errors

__all__ = ["register"]

log = logging.getLogger("moontide")


def _json_arg(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not JSON: {e}") from None


def register(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list an app's services and processes: state, restarts, last error")
    ps.add_argument("--app", required=True, metavar="APP_DIR")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.add_argument("--all", action="store_true", help="every process, not only the first 50 per host")
    ps.set_defaults(handler=_ps)

    up = sub.add_parser("up", help="run an app with its process hosts and auto_start services until Ctrl-C")
    up.add_argument("app", metavar="APP_DIR")
    up.add_argument("--spawn", metavar="ENTRY_ID",
                    help="also start this process.lua (or workflow.lua) entry, print its result and exit")
    up.add_argument("--host", metavar="HOST_ID", help="the process.host (or temporal.worker) for --spawn")
    up.add_argument("--input", type=_json_arg, action="append", default=[], metavar="JSON",
                    help="an argument for --spawn (repeat for more)")
    up.add_argument("--no-ui", action="store_true", help="start the embedded server without its Web UI")
    up.add_argument("--temporal", metavar="HOST:PORT",
                    help="use this Temporal server instead of the app's clients / the embedded one")
    up.set_defaults(handler=_up)


# -- ps -----------------------------------------------------------------------------------
def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def read_status(app_dir: Path) -> dict[str, Any] | None:
    """The state a running app wrote, or None when no app is running for ``app_dir``."""
    from ..runtime import STATE_DIR
    from ._system import STATUS_FILE

    path = app_dir / STATE_DIR / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not data.get("running") or not _alive(data.get("pid")):
        return None
    return data


def _declared(app_dir: Path) -> dict[str, Any]:
    from ..runtime import load

    app = load(app_dir)
    services = []
    for e in app.of_kind("process.service"):
        lc = e.data.get("lifecycle") or {}
        services.append({"id": e.id, "state": "Stopped", "pid": None, "restarts": 0, "last_error": None,
                         "process": app.resolve(e.data["process"], e.namespace),
                         "host": app.resolve(e.data["host"], e.namespace),
                         "auto_start": bool(lc.get("auto_start")), "depends_on": list(lc.get("depends_on") or [])})
    hosts = [{"id": e.id, "processes": 0, "list": [], "recent_exits": []} for e in app.of_kind("process.host")]
    return {"running": False, "services": services, "hosts": hosts}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def _ps(args: argparse.Namespace) -> int:
    app_dir = Path(args.app).resolve()
    data = read_status(app_dir) or _declared(app_dir)
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
        return 0
    out: list[str] = []
    if not data.get("running"):
        out.append(f"no Moontide app is running for {app_dir} (start it with `moontide up {args.app}`)")
    services = data.get("services") or []
    if services:
        rows = [["SERVICE", "STATE", "RESTARTS", "PID", "UPTIME", "LAST ERROR"]]
        for s in services:
            state = s["state"]
            if s.get("retry_in") is not None:
                state += f" (restart in {s['retry_in']:.1f}s)"
            rows.append([s["id"], state, str(s.get("restarts", 0)), s.get("pid") or "-", _ago(s.get("uptime")),
                         s.get("last_error") or ""])
        out.append(_table(rows))
    else:
        out.append("no process.service entries")
    now = time.time()
    for h in data.get("hosts") or []:
        out.append("")
        out.append(f"host {h['id']}: {h.get('processes', 0)} processes"
                   + (f", {h['spawned']} spawned, {h['failed']} failed" if "spawned" in h else ""))
        procs = h.get("list") or []
        shown = procs if args.all else procs[:50]
        if shown:
            rows = [["PID", "ENTRY", "STATE", "INBOX", "UPTIME"]]
            for p in shown:
                rows.append([p["pid"], p["entry"], p["state"], str(p["inbox"]), _ago(now - p["started"])])
            out.append(_table(rows))
            if len(shown) < h.get("processes", 0):
                out.append(f"... {h['processes'] - len(shown)} more (--all)")
        failed = [e for e in h.get("recent_exits") or [] if e.get("error")]
        if failed:
            out.append("recent failures:")
            for e in failed[-5:]:
                out.append(f"  {e['pid']} {e['entry']}: {e['error']}")
    print("\n".join(out))
    return 0


# -- up -------------------------------------------------------------------------------------
async def _up(args: argparse.Namespace) -> int:
    from ..runtime import AppRuntime
    from ._bridge import RuntimeBridge
    from ._system import ProcessSystem

    rt = AppRuntime(args.app, temporal=args.temporal, serve=True, ui=not args.no_ui)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with rt:
        clients = rt.app.of_kind("temporal.client")
        client = await rt.client(clients[0].id) if clients else None
        system = ProcessSystem(rt.app, bridge=RuntimeBridge(rt), client=client, state_dir=rt.state)
        async with system:
            if args.spawn:
                job: asyncio.Task[int] = asyncio.create_task(_spawn(rt, system, args))
            else:
                log.info("serving %s: %d process hosts, %d services; Ctrl-C to stop", rt.root, len(system.hosts),
                         len(system.supervisor.services))
                job = asyncio.create_task(_forever(rt))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({job, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if job in done:
                stopper.cancel()
                return job.result()
            job.cancel()
            log.info("stopping: services in reverse order, then processes and workers")
            return 130


async def _forever(rt: Any) -> int:
    await rt.wait()
    return 0


async def _spawn(rt: Any, system: Any, args: argparse.Namespace) -> int:
    entry = rt.app.get(args.spawn)
    if entry.kind == "process.lua":
        pid = system.spawn(entry.id, args.host, *args.input)
        wait = system.result
    elif entry.kind == "workflow.lua":
        pid = await rt.spawn(entry.id, args.host, *args.input)
        wait = rt.result
    else:
        raise errors.Invalid(f"--spawn {entry.id}: a {entry.kind} cannot be spawned "
                             "(name a process.lua or workflow.lua entry)")
    log.info("spawned %s", pid)
    try:
        result = await wait(pid)
    except errors.MoontideError as e:
        print(f"{entry.id} {pid} failed: [{e.kind}] {e}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True, ensure_ascii=False))
    return 0
