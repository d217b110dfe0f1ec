"""One error tree for Moontide.

Every error has a stable ``kind``. The kind is what Lua code sees as
``err:kind()``, what travels through Temporal as ``ApplicationError.type`` and
what a custom resource shows as a condition reason::

    MoontideError                 kind (Internal by default), message, retryable
    ├── NotFound                  an entry, function, execution that does not exist
    ├── Invalid                   bad input: entries, values crossing Lua<->JSON
    │   └── EntryErrors           every problem found loading an app, at once
    ├── Timeout                   a deadline passed
    ├── Canceled                  the caller or the execution was canceled
    ├── LuaError                  Lua code raised (message carries file:line and traceback)
    └── BudgetExceeded            Lua ran past its instruction budget or memory cap
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "KINDS",
    "BudgetExceeded",
    "Canceled",
    "EntryErrors",
    "EntryProblem",
    "Invalid",
    "LuaError",
    "MoontideError",
    "NotFound",
    "Timeout",
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


class Invalid(MoontideError):
    kind = "Invalid"
    retryable = False


class Timeout(MoontideError):
    kind = "Timeout"
    retryable = True


class Canceled(MoontideError):
    kind = "Canceled"
    retryable = False


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
