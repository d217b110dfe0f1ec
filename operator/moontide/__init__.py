"""Moontide: durable business processes written in plain Lua, on Temporal and Kubernetes.

Public API: load an app and run it (``AppRuntime``), name executions (``Pid``),
and the error tree (``moontide.errors``). Names load lazily so that
``moontide.entries`` and the controller never pull in lupa or the Temporal worker.
"""

from __future__ import annotations

from typing import Any

from . import errors

__all__ = ["AppRuntime", "Pid", "errors"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name in ("AppRuntime", "Pid"):
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'moontide' has no attribute {name!r}")
