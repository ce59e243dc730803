"""Registry hosts in references: case-insensitive, skopeo's ``docker://`` prefix, and registry-only arguments."""

from __future__ import annotations

import pytest

from regtool.errors import InvalidReference
from regtool.reference import Reference, is_loopback_host, parse_registry


@pytest.mark.parametrize(
    ("text", "registry", "repository"),
    [
        ("LOCALHOST:5000/team/app", "localhost:5000", "team/app"),
        ("LocalHost/app", "localhost", "app"),
        ("Registry.Example.COM/team/app:1.0", "registry.example.com", "team/app"),
        ("docker://127.0.0.1:5000/team/app:1.0", "127.0.0.1:5000", "team/app"),
        ("DOCKER://Example.com/app", "example.com", "app"),
        ("docker://busybox", "docker.io", "library/busybox"),
        ("INDEX.DOCKER.IO/busybox", "docker.io", "library/busybox"),
    ],
)
def test_hosts_are_lowercased_and_the_transport_dropped(text: str, registry: str, repository: str) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository) == (registry, repository)


def test_uppercase_loopback_is_loopback() -> None:
    assert is_loopback_host("LOCALHOST:5000")
    assert is_loopback_host("App.LocalHost")
    assert Reference.parse("LOCALHOST:5000/app").is_loopback


@pytest.mark.parametrize(
    ("text", "registry"),
    [
        ("127.0.0.1:5000", "127.0.0.1:5000"),
        ("LOCALHOST:5000", "localhost:5000"),
        ("docker://127.0.0.1:5000", "127.0.0.1:5000"),
        ("docker://127.0.0.1:5000/", "127.0.0.1:5000"),
        ("index.docker.io", "docker.io"),
        ("[::1]:5000", "[::1]:5000"),
    ],
)
def test_parse_registry(text: str, registry: str) -> None:
    assert parse_registry(text) == registry


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("127.0.0.1:5000/conc", "takes no path ('conc')"),
        ("docker://127.0.0.1:5000/team/app", "takes no path"),
        ("", "expected a registry"),
        ("docker://", "expected a registry"),
        ("bad host", "invalid registry host"),
        ("example.com:99999", "invalid port"),
    ],
)
def test_parse_registry_refuses(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReference, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse_registry(text)
