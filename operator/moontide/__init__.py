"""Moontide: durable business processes written in plain Lua, on Temporal and Kubernetes.

The public Python API (docs/python-api.md):

- ``Client``: reach executions by pid (spawn, send, cancel, terminate, status,
  result, list); connects as Temporal's tools do, with no app directory.
- ``Runtime``: serve an app (workers, process hosts, services, the embedded
  dev server) and start its workflows; ``AppRuntime`` is its former name.
- ``WorkflowPid``, ``ProcessPid``, ``parse_pid``: the two pid forms (``moontide.protocol``).
- ``errors``: the error tree (``MoontideError`` and one class per kind);
  ``WorkflowFailed``/``ProcessFailed`` are what ``result`` raises.
- ``load``: load and check an app directory; ``testing``: run an app against a dev server.

Importing ``moontide`` (or ``moontide.entries``) loads neither lupa nor the
Temporal SDK: the names below that need them are imported on first use, and
imported for real when a type checker reads this module, so they are typed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from . import errors
from .errors import MoontideError, ProcessFailed, WorkflowFailed
from .protocol import ProcessPid, WorkflowPid, parse_pid

if TYPE_CHECKING:
    from . import testing
    from .app import load
    from .client import Client
    from .runtime import AppRuntime, Pid, Runtime

__all__ = [
    "AppRuntime",
    "Client",
    "MoontideError",
    "Pid",
    "ProcessFailed",
    "ProcessPid",
    "Runtime",
    "WorkflowFailed",
    "WorkflowPid",
    "errors",
    "load",
    "parse_pid",
    "testing",
]
__version__ = "0.1.0"

#: name -> the module it comes from, for the names that import lupa or the Temporal SDK
_DEFERRED = {"AppRuntime": "runtime", "Client": "client", "Pid": "runtime", "Runtime": "runtime", "load": "app",
             "testing": None}


def __getattr__(name: str) -> Any:
    if name not in _DEFERRED:
        raise AttributeError(f"module 'moontide' has no attribute {name!r}")
    module = _DEFERRED[name]
    value = (importlib.import_module(f".{name}", __name__) if module is None
             else getattr(importlib.import_module(f".{module}", __name__), name))
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
