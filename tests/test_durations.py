"""``regtool.durations.parse_duration``: the durations server options take (``--proxy-ttl 168h``)."""

from __future__ import annotations

import pytest

from regtool.durations import parse_duration
from regtool.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("168h", 168 * 3600.0),
        ("30m", 1800.0),
        ("90s", 90.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1.5h", 5400.0),
        ("500ms", 0.5),
        ("3600", 3600.0),
        ("0.25", 0.25),
        (" 10m ", 600.0),
    ],
)
def test_durations_in_go_units_or_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "h", "1h 30m", "-5", "5m-", "inf", "nan", "1h30", "10M"])
def test_anything_else_is_a_usage_error_naming_the_option(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid --proxy-ttl .*: expected e\.g\. 168h"):
        parse_duration(text, what="--proxy-ttl")
