"""Moontide: durable business processes written in plain Lua, on Temporal and Kubernetes.

Public API: load an app and run it (``AppRuntime``), name executions (``Pid``),
and the error tree (``moontide.errors``). Internal code imports modules, not
these names.
"""

from . import errors
from .runtime import AppRuntime, Pid

__all__ = ["AppRuntime", "Pid", "errors"]
__version__ = "0.1.0"
