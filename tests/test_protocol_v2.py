from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from regtool.protocol import v2


def test_routes_table() -> None:
    assert v2.ROUTES["base"] == "/v2/"
    assert v2.ROUTES["manifest"] == "/v2/{name}/manifests/{reference}"
    assert v2.ROUTES["uploads"].endswith("/blobs/uploads/")
    assert v2.API_VERSION_HEADER == "Docker-Distribution-API-Version"
    assert v2.API_VERSION == "registry/2.0"


def test_paths() -> None:
    digest = "sha256:" + "a" * 64
    assert v2.manifest_path("library/busybox", "latest") == "/v2/library/busybox/manifests/latest"
    assert v2.manifest_path("a/b", digest) == f"/v2/a/b/manifests/{digest}"
    assert v2.blob_path("a/b", digest) == f"/v2/a/b/blobs/{digest}"
    assert v2.uploads_path("a") == "/v2/a/blobs/uploads/"
    assert v2.upload_path("a", "u-1") == "/v2/a/blobs/uploads/u-1"
    assert v2.referrers_path("a", digest) == f"/v2/a/referrers/{digest}"


def test_components_are_quoted() -> None:
    # nothing a caller passes can add a path segment or a query
    assert v2.manifest_path("a", "x?y#z") == "/v2/a/manifests/x%3Fy%23z"
    assert v2.upload_path("a", "id with space") == "/v2/a/blobs/uploads/id%20with%20space"


def test_queries() -> None:
    digest = "sha256:" + "b" * 64
    mount = v2.uploads_path("a/b", mount=digest, **{"from": "c/d"})
    assert urlsplit(mount).path == "/v2/a/b/blobs/uploads/"
    assert parse_qs(urlsplit(mount).query) == {"mount": [digest], "from": ["c/d"]}
    assert v2.tags_path("a") == "/v2/a/tags/list"
    assert v2.tags_path("a", n=10) == "/v2/a/tags/list?n=10"
    assert parse_qs(urlsplit(v2.tags_path("a", n=2, last="v&1")).query) == {"n": ["2"], "last": ["v&1"]}
    assert v2.catalog_path() == "/v2/_catalog"
    assert v2.catalog_path(n=5, last="x/y") == "/v2/_catalog?n=5&last=x%2Fy"
    path = v2.referrers_path("a", digest, "application/vnd.x+json")
    assert parse_qs(urlsplit(path).query) == {"artifactType": ["application/vnd.x+json"]}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ('</v2/_catalog?last=b&n=2>; rel="next"', "/v2/_catalog?last=b&n=2"),
        ("<https://r.io/v2/a/tags/list?n=1&last=x>; rel=next", "https://r.io/v2/a/tags/list?n=1&last=x"),
        ('</a>;rel="next"', "/a"),
        ('</a>; REL="Next"', "/a"),
        ('</a>; type="text/html"; rel="next"', "/a"),
        ('</a>; rel="prev next"', "/a"),
        ('</prev>; rel="prev", </next>; rel="next"', "/next"),
        ('</a>; rel="prev"', None),
        ("</a>; rel=nextpage", None),
        ('</a>; title="rel=next"', None),
        ("garbage", None),
    ],
)
def test_parse_link_next(header: str | None, expected: str | None) -> None:
    assert v2.parse_link_next(header) == expected


def test_format_link_round_trips() -> None:
    path = v2.tags_path("a/b", n=3, last="t")
    assert v2.parse_link_next(v2.format_link_next(path)) == path
