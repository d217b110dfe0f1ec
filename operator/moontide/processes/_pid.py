"""Pids of local processes: ``{host_id|run.n}``, never confused with a workflow's pid.

A workflow's pid is ``{client@worker|workflow_id}`` (``moontide.runtime.Pid``);
it always holds an ``@``. A local process's pid names the ``process.host`` entry
that runs it, the run of that host (six hex digits, random per host start, so a
pid kept by a workflow across an app restart never reaches a different process)
and a counter in hex::

    {app:processes|3f9a1c.1a}

Entry IDs cannot hold ``@``, ``|`` or braces, so the two forms never overlap.
Anything that does not start with ``{`` is a registry name (``process.send("sessions", ...)``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import errors

__all__ = ["LocalPid", "is_local_pid", "is_workflow_pid"]

_LOCAL = re.compile(r"^\{(?P<host>[^@|{}]+)\|(?P<run>[0-9a-f]+)\.(?P<n>[0-9a-f]+)\}$")
_WORKFLOW = re.compile(r"^\{[^@|{}]+@[^|{}]+\|[^{}]+\}$")


@dataclass(frozen=True)
class LocalPid:
    """A process on a ``process.host``: ``{host|run.n}``."""

    host: str
    run: str
    n: int

    def __str__(self) -> str:
        return f"{{{self.host}|{self.run}.{self.n:x}}}"

    @classmethod
    def parse(cls, text: str) -> LocalPid:
        m = _LOCAL.match(text.strip())
        if not m:
            raise errors.Invalid(f"invalid process pid {text!r}: expected '{{host|run.n}}', e.g. '{{app:host|3f9a1c.1}}'")
        return cls(m["host"], m["run"], int(m["n"], 16))


def is_local_pid(text: str) -> bool:
    return _LOCAL.match(text) is not None


def is_workflow_pid(text: str) -> bool:
    return _WORKFLOW.match(text) is not None
