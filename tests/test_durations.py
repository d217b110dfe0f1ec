"""Go-style durations parse to exact nanoseconds (moontide.durations)."""

from __future__ import annotations

import pytest

from moontide import durations, errors


@pytest.mark.parametrize("text, ns", [
    ("2.3h", 8_280_000_000_000),        # float math gave 8_279_999_999_999
    ("0.1s", 100_000_000),
    ("1.5s", 1_500_000_000),
    (".5s", 500_000_000),
    ("1.s", 1_000_000_000),
    ("1h30m", 5_400_000_000_000),
    ("1h0.7m", 3_642_000_000_000),
    ("1.0000000009s", 1_000_000_000),  # below a nanosecond is dropped
    ("0", 0),
    ("999999h", 999_999 * 3_600_000_000_000),
])
def test_parse_is_exact(text: str, ns: int) -> None:
    assert durations.parse(text) == ns


@pytest.mark.parametrize("text", ["", "h", "1x", "1h 2m", "-1s", "1..5s"])
def test_bad_durations_are_invalid(text: str) -> None:
    with pytest.raises(errors.Invalid):
        durations.parse(text)
