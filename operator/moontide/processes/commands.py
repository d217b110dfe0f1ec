"""``moontide ps``: the process side of the command line.

``moontide ps`` lists the Moontide apps running on this machine
(``moontide.running``: app directory, OS process, Temporal server, workers and
process hosts), each with its services and processes. ``moontide ps --app DIR``
lists that app's services (state, restarts, last error) and the processes of
its hosts, from the state a running app (``moontide run``, which runs the hosts
and services with the workers) writes to ``DIR/.moontide/processes.json``; with
no app running it lists the services as declared, Stopped. ``-o json|yaml|table``.

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
    ps = sub.add_parser("ps", help="list the running apps, or one app's services and processes: state, restarts, "
                                   "last error")
    ps.add_argument("-a", "--app", metavar="APP_DIR", help="this app only (default: every app running here)")
    ps.add_argument("-o", "--output", choices=("json", "yaml", "table"), default="table",
                    help="how to print it (default: table)")
    ps.add_argument("--json", dest="output", action="store_const", const="json", help="same as -o json")
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
    from ..protocol import STATE_DIR, STATUS_FILE

    path = app_dir / STATE_DIR / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not data.get("running") or not _alive(data.get("pid")):
        return None
    return data


def _declared(app_dir: Path) -> dict[str, Any]:
    from ..app import load

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


def _print(output: str, data: Any, text: str) -> None:
    if output == "json":
        print(json.dumps(data, indent=2, sort_keys=True))
    elif output == "yaml":
        import yaml

        print(yaml.safe_dump(data, sort_keys=True, default_flow_style=False), end="")
    else:
        print(text)


def _ps(args: argparse.Namespace) -> int:
    from .. import running

    if args.app is None:
        apps = [{**a, "processes": read_status(Path(a["app"]))} for a in running.apps()]
        _print(args.output, {"apps": apps}, _apps_table(apps, args))
        return 0
    app_dir = Path(args.app).resolve()
    data = read_status(app_dir)
    if data is None:
        data = _declared(app_dir)
        runs = running.apps(app_dir)
        if runs:  # running, with no process hosts: nothing writes processes.json
            data |= {"running": True, "pid": runs[0]["pid"], "workers": runs[0].get("workers") or {}}
    _print(args.output, data, _app_text(data, app_dir, args))
    return 0


def _apps_table(apps: list[dict[str, Any]], args: argparse.Namespace) -> str:
    if not apps:
        return "no Moontide app is running here (start one with `moontide run APP_DIR`)"
    now = time.time()
    rows = [["APP", "PID", "UPTIME", "TEMPORAL", "WORKERS", "HOSTS"]]
    for a in apps:
        rows.append([a["app"], str(a["pid"]), _ago(now - a.get("started", now)), a.get("address") or "-",
                     ", ".join(a.get("workers") or []) or "-", ", ".join(a.get("hosts") or []) or "-"])
    out = [_table(rows)]
    for a in apps:
        if a.get("processes"):
            out += ["", f"app {a['app']}:", _app_text(a["processes"], Path(a["app"]), args)]
    return "\n".join(out)


def _app_text(data: dict[str, Any], app_dir: Path, args: argparse.Namespace) -> str:
    out: list[str] = []
    if not data.get("running"):
        out.append(f"no Moontide app is running for {app_dir} (start it with `moontide run {args.app}`)")
    elif "pid" in data and not data.get("hosts"):
        out.append(f"app {app_dir} is running (pid {data['pid']}, workers "
                   f"{', '.join(data.get('workers') or []) or 'none'}); it has no process hosts")
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
    return "\n".join(out)
