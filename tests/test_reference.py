from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from regtool.digest import Digest
from regtool.errors import InvalidReference
from regtool.grammar import NAME_COMPONENT
from regtool.reference import Reference, is_loopback_host, registry_api_host, split_host_port

DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("busybox", "docker.io", "library/busybox", "latest", None),
        ("busybox:1.36", "docker.io", "library/busybox", "1.36", None),
        ("team/app", "docker.io", "team/app", "latest", None),
        ("docker.io/busybox", "docker.io", "library/busybox", "latest", None),
        ("index.docker.io/library/busybox", "docker.io", "library/busybox", "latest", None),
        ("registry-1.docker.io/team/app:v1", "docker.io", "team/app", "v1", None),
        ("localhost/app", "localhost", "app", "latest", None),
        ("localhost:5000/team/app:1", "localhost:5000", "team/app", "1", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", "latest", None),
        ("[::1]:5000/app", "[::1]:5000", "app", "latest", None),
        ("ghcr.io/a/b/c", "ghcr.io", "a/b/c", "latest", None),
        (f"busybox@{DIGEST}", "docker.io", "library/busybox", None, DIGEST),
        (f"quay.io/a/b:v2@{DIGEST}", "quay.io", "a/b", "v2", DIGEST),
        ("my-host:8080/a__b/c.d-e", "my-host:8080", "a__b/c.d-e", "latest", None),
        # docker's rule: a first component without '.' or ':' (and not localhost) is a path, not a host
        ("myhost/app", "docker.io", "myhost/app", "latest", None),
        # and a lone "host:port" is an image with a tag
        ("localhost:5000", "docker.io", "library/localhost", "5000", None),
    ],
)
def test_parse(text: str, registry: str, repository: str, tag: str | None, digest: str | None) -> None:
    ref = Reference.parse(text)
    assert ref.registry == registry
    assert ref.repository == repository
    assert ref.tag == tag
    assert ref.digest == (Digest.parse(digest) if digest else None)
    assert Reference.parse(str(ref)) == ref


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid image reference"),
        (" busybox", "invalid image reference"),
        ("busybox\n", "invalid image reference"),
        ("Busybox", "invalid repository name"),
        ("busybox:", "invalid tag"),
        ("busybox:-x", "invalid tag"),
        ("busybox:" + "a" * 129, "invalid tag"),
        ("busybox:lat\n@" + DIGEST, "invalid tag"),  # no newline hidden in the middle
        ("busybox@sha256:abc", "invalid digest"),
        ("busybox@", "invalid digest"),
        ("a//b", "invalid repository name"),
        ("a/", "invalid repository name"),
        ("example.com/", "missing repository"),
        ("exa_mple.com/app", "invalid registry host"),
        ("example.com:99999/app", "invalid port"),
        ("example.com:0/app", "invalid port"),
        ("a/" + "b" * 260, "too long"),
        ("a-/b", "invalid repository name"),
        ("x" * 600, "invalid image reference"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(InvalidReference, match=message):
        Reference.parse(text)


def test_default_tag_and_repository_refs() -> None:
    assert Reference.parse("busybox", default_tag=None).tag is None
    repo = Reference.parse_repository("localhost:5000/app")
    assert (repo.registry, repo.repository, repo.tag, repo.digest) == ("localhost:5000", "app", None, None)
    assert repo.repository_ref == "localhost:5000/app"
    with pytest.raises(InvalidReference, match="without tag or digest"):
        Reference.parse_repository("app:1")


def test_reference_property_and_helpers() -> None:
    ref = Reference.parse(f"localhost:5000/app:1@{DIGEST}")
    assert ref.reference == DIGEST
    assert ref.with_tag("2").reference == "2"
    assert ref.with_tag("2").digest is None
    assert str(Reference.parse("app").with_digest(Digest.parse(DIGEST))) == f"docker.io/library/app:latest@{DIGEST}"
    assert Reference("r.io", "app").reference == "latest"
    assert Reference.parse("busybox").api_host == "registry-1.docker.io"
    assert ref.api_host == "localhost:5000"
    assert ref.is_loopback
    assert not Reference.parse("ghcr.io/a").is_loopback


@pytest.mark.parametrize(
    ("registry", "host", "port"),
    [
        ("example.com", "example.com", None),
        ("example.com:443", "example.com", 443),
        ("[::1]", "::1", None),
        ("[::1]:5000", "::1", 5000),
        ("[::1]:x", "::1", None),
        ("host:²", "host:²", None),  # a non-ASCII digit is no port
    ],
)
def test_split_host_port(registry: str, host: str, port: int | None) -> None:
    assert split_host_port(registry) == (host, port)


@pytest.mark.parametrize(
    ("registry", "loopback"),
    [
        ("localhost", True),
        ("localhost:5000", True),
        ("app.localhost", True),
        ("127.0.0.1", True),
        ("127.1.2.3:80", True),
        ("[::1]:5000", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("localhost.example.com", False),
    ],
)
def test_is_loopback_host(registry: str, loopback: bool) -> None:
    assert is_loopback_host(registry) is loopback


def test_registry_api_host() -> None:
    assert registry_api_host("docker.io") == "registry-1.docker.io"
    assert registry_api_host("index.docker.io") == "registry-1.docker.io"
    assert registry_api_host("ghcr.io") == "ghcr.io"


# -- properties ---------------------------------------------------------------------------------------------------

components = st.from_regex(rf"\A{NAME_COMPONENT}\Z", fullmatch=True).filter(lambda c: len(c) <= 30)
paths = st.lists(components, min_size=1, max_size=4).map("/".join)
tags = st.from_regex(r"\A[a-zA-Z0-9_][a-zA-Z0-9._-]{0,20}\Z", fullmatch=True)
digests = st.binary(max_size=8).map(lambda b: str(Digest.of(b)))
hosts = st.sampled_from(["localhost", "localhost:5000", "example.com", "a.b.c:443", "127.0.0.1:5000", "[::1]:80"])


@given(st.text(max_size=200))
def test_any_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    assert Reference.parse(str(ref)) == ref


@given(st.text(alphabet="abc:/@.-_0123456789ABsha", max_size=80))
def test_reference_shaped_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        Reference.parse(text)
    except InvalidReference:
        pass


@given(st.one_of(st.none(), hosts), paths, st.one_of(st.none(), tags), st.one_of(st.none(), digests))
def test_valid_references_round_trip(host: str | None, path: str, tag: str | None, digest: str | None) -> None:
    first = path.split("/")[0]
    assume(host is not None or ("." not in first and first != "localhost"))  # else docker reads it as a host
    text = (f"{host}/" if host else "") + path + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")
    ref = Reference.parse(text)
    if host is not None:
        assert ref.registry == host
        assert ref.repository == path
    else:
        assert ref.registry == "docker.io"
        assert ref.repository == (path if "/" in path else f"library/{path}")
    assert ref.tag == (tag if tag or digest else "latest")
    assert ref.digest == (Digest.parse(digest) if digest else None)
    assert Reference.parse(str(ref)) == ref
