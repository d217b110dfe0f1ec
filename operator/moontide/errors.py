"""One error tree for Moontide.

Every error has a stable ``kind``, and every kind is a class here. The kind is
what Lua code sees as ``err:kind()``, what travels through Temporal as
``ApplicationError.type`` (``non_retryable = not retryable``), what a custom
resource shows as a condition reason and what picks the CLI's exit code::

    MoontideError                   kind        retryable  exit  meaning
    ├── NotFound                    NotFound       no       2    an entry, function, execution that does not exist
    ├── AlreadyExists               AlreadyExists  no       2    a name or workflow ID already taken
    ├── Invalid                     Invalid        no       2    bad input: entries, values crossing Lua<->JSON
    │   └── EntryErrors             Invalid        no       2    every problem found loading an app, at once
    ├── PermissionDenied            PermissionDenied no     2    the caller may not do this
    ├── Unavailable                 Unavailable    yes      3    a server, host or operation is not reachable here (now)
    │   └── NotReady                Unavailable    yes      3    a dependency is not there yet: retry after ``delay``
    ├── Timeout                     Timeout        yes      2    a deadline passed
    ├── Canceled                    Canceled       no       2    the caller or the execution was canceled
    ├── Terminated                  Terminated     no       2    the execution was ended at once
    ├── Internal                    Internal       yes      2    a bug or a transient fault (the default)
    ├── Conflict                    Conflict       yes      2    a concurrent change won
    ├── RateLimited                 RateLimited    yes      2    too many requests; retry later
    ├── Unknown                     Unknown        yes      2    a failure nobody classified
    ├── LuaError                    LuaError       no       2    Lua code raised (message carries file:line and traceback)
    ├── BudgetExceeded              BudgetExceeded no       2    Lua ran past its instruction budget or memory cap
    └── ExecutionFailed             (the execution's)  no   1    a workflow or process ended in failure:
        ├── WorkflowFailed                                       ``kind``, ``message``, ``details`` are its error's
        └── ProcessFailed

``retryable`` is each class's default; an instance may say otherwise (an
Unavailable operation that never will be, ``Unavailable(..., retryable=False)``).
Lua code may raise kinds of its own: ``of_kind`` answers the class of a known
kind, else a ``MoontideError`` carrying it. ``exit_code`` answers the CLI's exit
code; ``moontide.failures`` maps to and from Temporal's failures.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "AlreadyExists",
    "BudgetExceeded",
    "Canceled",
    "Conflict",
    "EntryErrors",
    "EntryProblem",
    "ExecutionFailed",
    "Internal",
    "Invalid",
    "LuaError",
    "MoontideError",
    "NotFound",
    "NotReady",
    "PermissionDenied",
    "ProcessFailed",
    "RateLimited",
    "Terminated",
    "Timeout",
    "Unavailable",
    "Unknown",
    "WorkflowFailed",
    "condition_reason",
    "exit_code",
    "of_kind",
]

#: The kinds Lua code can test ``err:kind()`` against (``errors.NOT_FOUND`` ...).
KINDS = (
    "NotFound",
    "AlreadyExists",
    "Invalid",
    "PermissionDenied",
    "Unavailable",
    "Timeout",
    "Canceled",
    "Terminated",
    "Internal",
    "Conflict",
    "RateLimited",
    "Unknown",
    "LuaError",
    "BudgetExceeded",
)

#: CLI exit codes: the command worked; the execution it waited for failed; bad input (or
#: anything else); the server or app is unreachable.
EXIT_OK, EXIT_FAILED, EXIT_ERROR, EXIT_UNAVAILABLE = 0, 1, 2, 3


class MoontideError(Exception):
    """Base of every Moontide error; ``kind`` is stable, ``retryable`` travels with it."""

    kind = "Internal"
    retryable = True

    def __init__(self, message: str, *, kind: str | None = None, retryable: bool | None = None,
                 details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if kind is not None:
            self.kind = kind
        if retryable is not None:
            self.retryable = retryable

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "retryable": self.retryable, "details": self.details}


class NotFound(MoontideError):
    kind = "NotFound"
    retryable = False


class AlreadyExists(MoontideError):
    kind = "AlreadyExists"
    retryable = False


class Invalid(MoontideError):
    kind = "Invalid"
    retryable = False


class PermissionDenied(MoontideError):
    kind = "PermissionDenied"
    retryable = False


class Unavailable(MoontideError):
    kind = "Unavailable"
    retryable = True


class NotReady(Unavailable):
    """Something this needs is not there yet (no worker, no bundle): try again after ``delay`` seconds."""

    def __init__(self, message: str, delay: float = 5.0, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.delay = delay


class Timeout(MoontideError):
    kind = "Timeout"
    retryable = True


class Canceled(MoontideError):
    kind = "Canceled"
    retryable = False


class Terminated(MoontideError):
    kind = "Terminated"
    retryable = False


class Internal(MoontideError):
    kind = "Internal"
    retryable = True


class Conflict(MoontideError):
    kind = "Conflict"
    retryable = True


class RateLimited(MoontideError):
    kind = "RateLimited"
    retryable = True


class Unknown(MoontideError):
    kind = "Unknown"
    retryable = True


class LuaError(MoontideError):
    """Lua code raised an error; ``message`` holds the Lua message, ``traceback`` file:line frames."""

    kind = "LuaError"
    retryable = False

    def __init__(self, message: str, *, traceback: str = "", **kw: Any) -> None:
        super().__init__(message, **kw)
        self.traceback = traceback

    def __str__(self) -> str:
        return f"{self.message}\n{self.traceback}" if self.traceback else self.message


class BudgetExceeded(MoontideError):
    """Lua ran past its instruction budget or memory cap: the task fails, the worker lives on."""

    kind = "BudgetExceeded"
    retryable = False


class ExecutionFailed(MoontideError):
    """An execution ended in failure; ``kind``, ``message`` and ``details`` are its error's (never retried)."""

    retryable = False

    @property
    def error(self) -> MoontideError:
        """The execution's error as the class of its kind."""
        return of_kind(self.kind, self.message, retryable=False, details=self.details)


class WorkflowFailed(ExecutionFailed):
    """The workflow execution ended in failure (an error, a cancel, a terminate, a timeout)."""


class ProcessFailed(ExecutionFailed):
    """The process ended in failure (an error, terminate, cancel); ``kind`` and ``message`` are its error's."""


#: kind -> its class: the one table every mapping goes through
_CLASSES: dict[str, type[MoontideError]] = {
    c.kind: c for c in (NotFound, AlreadyExists, Invalid, PermissionDenied, Unavailable, Timeout, Canceled,
                        Terminated, Internal, Conflict, RateLimited, Unknown, LuaError, BudgetExceeded)}
assert tuple(_CLASSES) == KINDS


def of_kind(kind: str | None, message: str, *, retryable: bool | None = None, details: Any = None) -> MoontideError:
    """An error of ``kind`` (Internal when None or empty) as its class; a kind of Lua's own keeps the base class."""
    kind = kind or "Internal"
    cls = _CLASSES.get(kind)
    if cls is None:
        return MoontideError(message, kind=kind, retryable=retryable, details=details)
    if cls is LuaError:
        return LuaError(message, retryable=retryable, details=details)
    return cls(message, retryable=retryable, details=details)


def exit_code(e: BaseException) -> int:
    """The ``moontide`` command's exit code for ``e``: 1 an execution failed, 3 unreachable, 2 anything else."""
    if isinstance(e, MoontideError):
        if isinstance(e, ExecutionFailed):
            return EXIT_FAILED
        return EXIT_UNAVAILABLE if e.kind == "Unavailable" else EXIT_ERROR
    return EXIT_ERROR


def condition_reason(e: MoontideError) -> str:
    """The reason a custom resource's condition shows for ``e``: its kind."""
    return e.kind


@dataclass(frozen=True)
class EntryProblem:
    """One problem in an app: where it is (file, entry, field, line) and what is wrong."""

    file: str
    message: str
    entry: str | None = None
    field: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.entry:
            parts.append(f"entry {self.entry}")
        if self.field:
            parts.append(f"field {self.field}")
        return ": ".join([", ".join(parts), self.message])


class EntryErrors(Invalid):
    """All problems found while loading an app, reported together."""

    def __init__(self, problems: list[EntryProblem]) -> None:
        self.problems = list(problems)
        n = len(self.problems)
        head = f"{n} problem{'s' if n != 1 else ''} in the app:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))
