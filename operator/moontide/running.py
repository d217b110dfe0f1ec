"""Which Moontide apps run on this machine: each serving ``Runtime`` leaves a record while it runs.

A record is one small JSON file per serving runtime in the run directory
(``MOONTIDE_RUN_DIR``, else ``$XDG_RUNTIME_DIR/moontide``, else
``~/.cache/moontide/running``): the app directory, the OS process, when it
started, the Temporal server it uses, its workers (with their task queues)
and process hosts. ``moontide ps`` lists them; a record whose process is gone
is skipped (and removed).
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

__all__ = ["apps", "record_dir", "register", "unregister"]


def record_dir() -> Path:
    explicit = os.environ.get("MOONTIDE_RUN_DIR")
    if explicit:
        return Path(explicit)
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "moontide"
    return Path.home() / ".cache" / "moontide" / "running"


def register(info: dict[str, Any]) -> Path | None:
    """Record a serving runtime (``info``: app, address, workers, hosts); its file, None if it cannot be written."""
    path = record_dir() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    record = {**info, "pid": os.getpid(), "started": time.time()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(record, sort_keys=True, default=str))
        os.replace(tmp, path)
    except OSError:
        return None
    return path


def unregister(path: Path | None) -> None:
    if path is not None:
        try:
            path.unlink()
        except OSError:
            pass


def _alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except PermissionError:
        return True
    except (OSError, ValueError, TypeError):
        return False
    return True


def apps(app_dir: Path | None = None) -> list[dict[str, Any]]:
    """The records of the apps running now (of ``app_dir`` only, if given), oldest first."""
    out = []
    root = str(Path(app_dir).resolve()) if app_dir is not None else None
    try:
        files = sorted(record_dir().glob("*.json"))
    except OSError:
        return []
    for f in files:
        try:
            record = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(record.get("pid")):
            unregister(f)
            continue
        if root is None or record.get("app") == root:
            out.append(record)
    return sorted(out, key=lambda r: r.get("started", 0))
