"""Semver tags and ranges as skopeo sync's images-by-semver reads them (Masterminds' grammar)."""

from __future__ import annotations

import pytest

from regtool.client.sync.semver import SemverRange, parse_version
from regtool.errors import UsageError

TAGS = ["0.2.3", "0.2.9", "0.3.0", "1.0.0", "v1.1", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0-rc.1",
        "2.0.0", "2.5.1", "latest", "1.2.3-beta", "01.2.3"]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (">=1.2.0 <2", ["1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        (">= 1.2.0, < 2.0.0", ["1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("^1.2.3", ["1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("^0.2.3", ["0.2.3", "0.2.9"]),
        ("~1.2", ["1.2.0", "1.2.3", "1.2.9"]),
        ("~1", ["1.0.0", "v1.1", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9"]),
        ("1.2.x", ["1.2.0", "1.2.3", "1.2.9"]),
        ("1.2", ["1.2.0", "1.2.3", "1.2.9"]),
        ("=2.0.0", ["2.0.0"]),
        ("!=1.2, >=1.2, <1.4", ["1.3.0"]),
        ("1.0 - 1.2.3", ["1.0.0", "v1.1", "1.2.0", "1.2.3"]),
        ("<1 || >=2.5", ["0.2.3", "0.2.9", "0.3.0", "2.5.1"]),
        (">=2.0.0-rc.1 <3", ["2.0.0-rc.1", "2.0.0", "2.5.1"]),
        (
            "*",
            ["0.2.3", "0.2.9", "0.3.0", "1.0.0", "v1.1", "1.2.0", "1.2.3", "1.2.9", "1.3.0", "1.9.9", "2.0.0", "2.5.1"],
        ),
    ],
)
def test_ranges_choose_these_tags(text: str, expected: list[str]) -> None:
    semver = SemverRange.parse(text)
    assert [tag for tag in TAGS if semver.matches(tag)] == expected


def test_a_prerelease_sorts_before_its_release() -> None:
    rc, release = parse_version("2.0.0-rc.1"), parse_version("2.0.0")
    assert rc is not None and release is not None
    assert rc < release
    assert parse_version("1.0.0-alpha.2") < parse_version("1.0.0-alpha.10")  # type: ignore[operator]
    assert parse_version("latest") is None and parse_version("01.2.3") is None


@pytest.mark.parametrize("text", ["", "   ", ">=banana", "1.2 ||", ">= 1.2 <"])
def test_bad_ranges_are_usage_errors_naming_the_range(text: str) -> None:
    with pytest.raises(UsageError, match="--semver"):
        SemverRange.parse(text, where="--semver")
