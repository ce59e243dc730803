from __future__ import annotations

import platform as stdlib_platform

import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import NotFoundError, UsageError
from regtool.manifest import Descriptor, Platform
from regtool.platform import host_platform, matches, parse_platform, select_manifest


def entry(n: int, platform: Platform | None) -> Descriptor:
    return Descriptor(mt.OCI_MANIFEST, Digest.of(str(n).encode()), n, platform=platform)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("linux/amd64", Platform("amd64", "linux")),
        ("linux/arm/v7", Platform("arm", "linux", "v7")),
        ("windows/amd64", Platform("amd64", "windows")),
    ],
)
def test_parse_platform(text: str, expected: Platform) -> None:
    assert parse_platform(text) == expected
    assert str(parse_platform(text)) == text


@pytest.mark.parametrize("text", ["", "linux", "linux/", "/amd64", "linux/arm/v7/x", "linux//v7"])
def test_parse_platform_rejects(text: str) -> None:
    with pytest.raises(UsageError, match="expected OS/ARCH"):
        parse_platform(text)


def test_host_platform(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stdlib_platform, "machine", lambda: "x86_64")
    assert host_platform() == Platform("amd64", "linux")
    monkeypatch.setattr(stdlib_platform, "machine", lambda: "aarch64")
    assert host_platform() == Platform("arm64", "linux")
    monkeypatch.setattr(stdlib_platform, "machine", lambda: "armv7l")
    assert host_platform() == Platform("arm", "linux", "v7")
    monkeypatch.setattr(stdlib_platform, "machine", lambda: "RISCV64")
    assert host_platform().architecture == "riscv64"


@pytest.mark.parametrize(
    ("wanted", "candidate", "ok"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/amd64", "linux/arm64", False),
        ("linux/amd64", "windows/amd64", False),
        ("linux/arm64", "linux/arm64/v8", True),  # v8 is arm64's default variant
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm", "linux/arm/v7", True),  # no variant asked: any will do
        ("linux/arm", "linux/arm/v6", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm", True),  # arm without a variant is v7
        ("linux/amd64/v1", "linux/amd64", True),
    ],
)
def test_matches(wanted: str, candidate: str, ok: bool) -> None:
    assert matches(parse_platform(wanted), parse_platform(candidate)) is ok


def test_select_manifest_takes_the_best_match() -> None:
    entries = (
        entry(1, None),
        entry(2, Platform("arm", "linux", "v6")),
        entry(3, Platform("arm", "linux", "v7")),
        entry(4, Platform("amd64", "linux")),
        entry(5, Platform("amd64", "linux")),
    )
    assert select_manifest(entries, parse_platform("linux/amd64")).size == 4
    assert select_manifest(entries, parse_platform("linux/arm/v7")).size == 3
    # arm without a variant is v7, which the v7 entry serves better than the v6 one listed first.
    assert select_manifest(entries, parse_platform("linux/arm")).size == 3
    assert select_manifest(entries, parse_platform("linux/arm/v6")).size == 2
    with pytest.raises(
        NotFoundError,
        match=r"^busybox has no manifest for platform linux/s390x; available: linux/arm/v6, linux/arm/v7, linux/amd64",
    ):
        select_manifest(entries, parse_platform("linux/s390x"), where="busybox")
    with pytest.raises(NotFoundError, match="available: none"):
        select_manifest((entry(1, None),), parse_platform("linux/amd64"))


@pytest.mark.parametrize(
    ("listed", "wanted", "chosen"),
    [
        # An entry "linux/arm" is arm/v7, as containerd and containers/image read it.
        (["linux/arm", "linux/arm64"], "linux/arm/v7", "linux/arm"),
        # The nearest lesser variant a machine runs, when its own is not listed.
        (["linux/arm/v5", "linux/arm/v6"], "linux/arm/v7", "linux/arm/v6"),
        # No variant asked: the default one, not whichever variant is listed first.
        (["linux/arm/v6", "linux/arm/v7", "linux/amd64/v3", "linux/amd64"], "linux/arm", "linux/arm/v7"),
        (["linux/arm/v6", "linux/arm/v7", "linux/amd64/v3", "linux/amd64"], "linux/amd64", "linux/amd64"),
        (["linux/amd64", "linux/amd64/v3"], "linux/amd64/v3", "linux/amd64/v3"),
        (["linux/amd64", "linux/amd64/v2"], "linux/amd64/v3", "linux/amd64/v2"),
        (["linux/arm64/v8", "linux/arm/v7"], "linux/arm64", "linux/arm64/v8"),
        (["linux/riscv64/rva22", "linux/riscv64"], "linux/riscv64", "linux/riscv64"),
        (["linux/riscv64/rva22"], "linux/riscv64", "linux/riscv64/rva22"),
    ],
)
def test_select_manifest_reads_variants_as_containerd_does(listed: list[str], wanted: str, chosen: str) -> None:
    entries = tuple(entry(i, parse_platform(text)) for i, text in enumerate(listed))
    assert str(select_manifest(entries, parse_platform(wanted)).platform) == chosen


@pytest.mark.parametrize(
    ("listed", "wanted"),
    [
        # A default amd64 machine may not run v3's instructions.
        (["linux/amd64/v3"], "linux/amd64"),
        (["linux/arm/v7"], "linux/arm/v6"),
    ],
)
def test_select_manifest_refuses_a_variant_the_platform_cannot_run(listed: list[str], wanted: str) -> None:
    entries = tuple(entry(i, parse_platform(text)) for i, text in enumerate(listed))
    with pytest.raises(NotFoundError, match=f"no manifest for platform {wanted}; available: {listed[0]}"):
        select_manifest(entries, parse_platform(wanted))
