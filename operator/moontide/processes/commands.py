"""``moontide ps``: the process side of the command line.

``moontide ps --app DIR [--json]`` lists the app's services (state, restarts,
last error) and the processes of its hosts, from the state a running app
(``moontide run``, which runs the hosts and services with the workers) writes
to ``DIR/.moontide/processes.json``; with no app running it lists the services
as declared, Stopped.

``moontide.cli`` calls ``register(subparsers)``; each handler returns an exit code
(or a coroutine of one).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["register"]


def register(sub: Any) -> None:
    ps = sub.add_parser("ps", help="list an app's services and processes: state, restarts, last error")
    ps.add_argument("--app", required=True, metavar="APP_DIR")
    ps.add_argument("--json", action="store_true", help="print JSON")
    ps.add_argument("--all", action="store_true", help="every process, not only the first 50 per host")
    ps.set_defaults(handler=_ps)


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
        out.append(f"no Moontide app is running for {app_dir} (start it with `moontide run {args.app}`)")
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
