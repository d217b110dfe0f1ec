"""Go-style durations ("24h", "1h30m", "500ms", "1.5s") as used by entries and Lua.

A number is a count of nanoseconds (Lua's ``time.SECOND`` is 1e9), so
``time.sleep(5 * time.SECOND)`` and ``time.sleep("5s")`` mean the same.
"""

from __future__ import annotations

import re
from datetime import timedelta
from fractions import Fraction

from . import errors

__all__ = ["PATTERN", "UNITS", "parse", "to_timedelta", "format_ns"]

UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
#: The JSON-schema pattern of a duration string (one source for entries and CRDs).
PATTERN = r"^([0-9]+(\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$|^0$"


def parse(value: str | int | float) -> int:
    """Return nanoseconds for a duration string or a number of nanoseconds."""
    if isinstance(value, bool):
        raise errors.Invalid(f"invalid duration {value!r}: expected a string like '1h30m' or nanoseconds")
    if isinstance(value, (int, float)):
        if value < 0:
            raise errors.Invalid(f"invalid duration {value!r}: negative")
        return int(value)
    if not isinstance(value, str):
        raise errors.Invalid(f"invalid duration {value!r}: expected a string like '1h30m' or nanoseconds")
    text = value.strip()
    if text == "0":
        return 0
    pos, total = 0, Fraction(0)
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        # exact decimal arithmetic: float("2.3") * 3600e9 is 1 ns short
        total += Fraction(m.group(1) if not m.group(1).endswith(".") else m.group(1)[:-1]) * UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise errors.Invalid(f"invalid duration {value!r}: expected a string like '24h', '1h30m', '500ms'")
    return int(total)


def to_timedelta(value: str | int | float) -> timedelta:
    return timedelta(microseconds=parse(value) / 1000)


def format_ns(ns: int) -> str:
    """Shortest Go-style spelling of a duration, for messages."""
    if ns == 0:
        return "0s"
    out = []
    for unit in ("h", "m", "s", "ms", "us", "ns"):
        size = UNITS[unit]
        if ns >= size:
            out.append(f"{ns // size}{unit}")
            ns %= size
    return "".join(out)
