"""How a process ended, as Python sees it and as exit events carry it."""

from __future__ import annotations

import time
from typing import Any

from .. import errors

__all__ = ["Exit", "error_dict", "first_line"]


class Exit:
    """How a process ended: ``value`` (its result) or ``error``."""

    __slots__ = ("value", "error", "at")

    def __init__(self, value: Any = None, error: errors.MoontideError | None = None) -> None:
        self.value = value
        self.error = error
        self.at = time.time()

    @property
    def ok(self) -> bool:
        return self.error is None

    def result(self) -> dict[str, Any]:
        """The ``result`` field of exit events: ``{value=}`` or ``{error={kind, message, retryable}}``."""
        if self.error is None:
            return {"value": self.value}
        return {"error": error_dict(self.error)}

    def __repr__(self) -> str:
        return f"Exit(value={self.value!r})" if self.error is None else f"Exit(error={self.error!r})"


def error_dict(e: errors.MoontideError) -> dict[str, Any]:
    out = {"kind": e.kind, "message": e.message, "retryable": e.retryable}
    if e.details is not None:
        out["details"] = e.details
    return out


def first_line(e: BaseException) -> str:
    text = str(e)
    return text.splitlines()[0] if text else type(e).__name__
