"""Manifest PUT/GET/DELETE beyond the conformance suite: every accepted kind, validation, limits."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from tests.server.helpers import digest_of, image_manifest, index_manifest, push_blob, push_manifest, random_blob
from tests.support.serve import run_serve


def _error_code(response: httpx.Response) -> str:
    return str(response.json()["errors"][0]["code"])


@pytest.mark.parametrize(
    ("media_type", "config_type", "index_type"),
    [
        (mt.DOCKER_MANIFEST_V2, mt.DOCKER_CONFIG, mt.DOCKER_MANIFEST_LIST),
        (mt.OCI_MANIFEST, mt.OCI_CONFIG, mt.OCI_INDEX),
    ],
)
def test_manifest_kinds_round_trip_byte_exact(
    client: httpx.Client, media_type: str, config_type: str, index_type: str
) -> None:
    config, layer = b'{"architecture":"amd64","os":"linux"}', random_blob(100)
    push_blob(client, "lib/app", config)
    push_blob(client, "lib/app", layer)
    # Odd whitespace and key order: the bytes must come back exactly.
    manifest = image_manifest(config, [layer], media_type=media_type, config_type=config_type) + b"\n  "
    response = push_manifest(client, "lib/app", "v1", manifest, media_type)
    assert response.status_code == 201, response.text
    index = index_manifest([manifest], media_type=index_type)
    response = push_manifest(client, "lib/app", "latest", index, index_type)
    assert response.status_code == 201, response.text
    for reference, body, kind in (("v1", manifest, media_type), ("latest", index, index_type)):
        for ref in (reference, digest_of(body)):
            got = client.get(f"/v2/lib/app/manifests/{ref}")
            assert got.status_code == 200
            assert got.content == body
            assert got.headers["content-type"] == kind
            assert got.headers["docker-content-digest"] == digest_of(body)
            head = client.head(f"/v2/lib/app/manifests/{ref}")
            assert head.status_code == 200 and head.content == b""
            assert head.headers["content-length"] == str(len(body))
    # The manifest is also reachable as a blob of the repository, as in distribution.
    assert client.get(f"/v2/lib/app/blobs/{digest_of(manifest)}").content == manifest


def test_missing_blobs_and_children_are_manifest_blob_unknown(client: httpx.Client) -> None:
    config, layer = b"{}", random_blob(10)
    push_blob(client, "r", config)
    manifest = image_manifest(config, [layer])
    response = push_manifest(client, "r", "t", manifest, mt.OCI_MANIFEST)
    assert response.status_code == 400
    assert _error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    assert digest_of(layer) in response.json()["errors"][0]["detail"]
    index = index_manifest([manifest])
    response = push_manifest(client, "r", "idx", index, mt.OCI_INDEX)
    assert response.status_code == 400 and _error_code(response) == "MANIFEST_BLOB_UNKNOWN"
    # A blob in another repository does not count.
    push_blob(client, "other", layer)
    assert push_manifest(client, "r", "t", manifest, mt.OCI_MANIFEST).status_code == 400
    assert client.get("/v2/r/manifests/t").status_code == 404


def test_foreign_layers_need_not_be_present(client: httpx.Client) -> None:
    config = b"{}"
    push_blob(client, "r", config)
    body = json.loads(image_manifest(config, [], media_type=mt.DOCKER_MANIFEST_V2, config_type=mt.DOCKER_CONFIG))
    body["layers"] = [
        {
            "mediaType": mt.DOCKER_FOREIGN_LAYER,
            "digest": digest_of(b"windows"),
            "size": 7,
            "urls": ["https://example.invalid/layer"],
        }
    ]
    response = push_manifest(client, "r", "win", json.dumps(body).encode(), mt.DOCKER_MANIFEST_V2)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"{not json", mt.OCI_MANIFEST),
        (b"[]", mt.OCI_MANIFEST),
        (b'{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json"}', mt.OCI_MANIFEST),
        (b'{"schemaVersion": 3, "config": {}, "layers": []}', mt.OCI_MANIFEST),
        (image_manifest(b"{}", []), "text/plain"),
        (image_manifest(b"{}", []), mt.DOCKER_MANIFEST_V2),
        (image_manifest(b"{}", []).replace(b"sha256:", b"sha256:zz"), mt.OCI_MANIFEST),
        (
            json.dumps(
                {
                    "schemaVersion": 1,
                    "name": "r",
                    "tag": "t",
                    "architecture": "amd64",
                    "fsLayers": [{"blobSum": digest_of(b"x")}],
                    "history": [{"v1Compatibility": "{}"}],
                }
            ).encode(),
            mt.DOCKER_SCHEMA1,
        ),
    ],
    ids=["malformed", "array", "no-config", "schema3", "text-plain", "type-mismatch", "bad-digest", "schema1"],
)
def test_invalid_manifests_are_manifest_invalid(client: httpx.Client, body: bytes, content_type: str) -> None:
    push_blob(client, "r", b"{}")
    response = push_manifest(client, "r", "bad", body, content_type)
    assert response.status_code == 400, response.text
    assert _error_code(response) == "MANIFEST_INVALID"
    assert response.json()["errors"][0]["message"]
    assert client.get("/v2/r/manifests/bad").status_code == 404
    assert client.get("/v2/").status_code == 200


def test_put_by_digest_must_match_the_body(client: httpx.Client) -> None:
    push_blob(client, "r", b"{}")
    manifest = image_manifest(b"{}", [])
    response = push_manifest(client, "r", digest_of(b"something else"), manifest, mt.OCI_MANIFEST)
    assert response.status_code == 400 and _error_code(response) == "DIGEST_INVALID"
    response = push_manifest(client, "r", digest_of(manifest), manifest, mt.OCI_MANIFEST)
    assert response.status_code == 201
    assert client.get("/v2/r/tags/list").json()["tags"] == []


def test_manifest_size_limit(tmp_path: Path) -> None:
    with (
        run_serve(tmp_path / "root", max_manifest_bytes=5 * 1024 * 1024) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        push_blob(client, "r", b"{}")
        # Just over 4 MB is accepted (the spec's floor) ...
        annotations = {"big": "x" * (4 * 1024 * 1024 + 10)}
        big = image_manifest(b"{}", [], annotations=annotations)
        assert push_manifest(client, "r", "big", big, mt.OCI_MANIFEST).status_code == 201
        assert client.get("/v2/r/manifests/big").content == big
        # ... and above the configured limit it is 413, declared or streamed.
        bigger = image_manifest(b"{}", [], annotations={"big": "x" * (5 * 1024 * 1024)})
        response = push_manifest(client, "r", "bigger", bigger, mt.OCI_MANIFEST)
        assert response.status_code == 413
        assert _error_code(response) == "SIZE_INVALID"

        def chunks() -> Iterator[bytes]:
            yield bigger[: len(bigger) // 2]
            yield bigger[len(bigger) // 2 :]

        response = client.put(
            "/v2/r/manifests/bigger",
            content=chunks(),
            headers={"Content-Type": mt.OCI_MANIFEST},
        )
        assert response.status_code == 413
        assert client.get("/v2/r/manifests/bigger").status_code == 404


def test_delete_by_digest_removes_tags_and_referrer_entry(client: httpx.Client) -> None:
    push_blob(client, "r", b"{}")
    subject = image_manifest(b"{}", [])
    assert push_manifest(client, "r", "s", subject, mt.OCI_MANIFEST).status_code == 201
    descriptor = {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(subject), "size": len(subject)}
    referrer = image_manifest(b"{}", [], subject=descriptor, artifact_type="application/sig")
    assert push_manifest(client, "r", "sig", referrer, mt.OCI_MANIFEST).status_code == 201
    assert len(client.get(f"/v2/r/referrers/{digest_of(subject)}").json()["manifests"]) == 1
    assert client.delete(f"/v2/r/manifests/{digest_of(referrer)}").status_code == 202
    assert client.get(f"/v2/r/referrers/{digest_of(subject)}").json()["manifests"] == []
    assert client.get("/v2/r/tags/list").json()["tags"] == ["s"]
    response = client.delete("/v2/r/manifests/nosuchtag")
    assert response.status_code == 404 and _error_code(response) == "MANIFEST_UNKNOWN"


def test_unknown_repository_is_name_unknown(client: httpx.Client) -> None:
    response = client.get("/v2/never/pushed/manifests/latest")
    assert response.status_code == 404 and _error_code(response) == "NAME_UNKNOWN"
    response = client.get("/v2/never/pushed/tags/list")
    assert response.status_code == 404 and _error_code(response) == "NAME_UNKNOWN"
    response = client.get(f"/v2/never/pushed/referrers/{digest_of(b'x')}")
    assert response.status_code == 200 and response.json()["manifests"] == []


def test_a_directory_on_the_way_to_a_repository_is_no_repository(client: httpx.Client) -> None:
    # As distribution does, and as the catalog counts: deep/a/b/c exists, deep and deep/a do not.
    config, layer = b"{}", random_blob(1000)
    push_blob(client, "deep/a/b/c", config)
    push_blob(client, "deep/a/b/c", layer)
    assert push_manifest(client, "deep/a/b/c", "1", image_manifest(config, [layer]), mt.OCI_MANIFEST).status_code == 201
    assert client.get("/v2/deep/a/b/c/tags/list").json()["tags"] == ["1"]
    for parent in ("deep", "deep/a", "deep/a/b"):
        response = client.get(f"/v2/{parent}/tags/list")
        assert response.status_code == 404 and _error_code(response) == "NAME_UNKNOWN", parent
        response = client.get(f"/v2/{parent}/manifests/1")
        assert response.status_code == 404 and _error_code(response) == "NAME_UNKNOWN", parent
    assert "deep" not in client.get("/v2/_catalog").json()["repositories"]


@pytest.mark.parametrize(
    ("accept", "status"),
    [
        (None, 200),
        ("*/*", 200),
        ("application/json", 200),
        (mt.OCI_MANIFEST, 200),
        (f"{mt.DOCKER_MANIFEST_V2}, {mt.OCI_MANIFEST};q=0.5", 200),
        (mt.MANIFEST_ACCEPT, 200),
        (mt.DOCKER_MANIFEST_V2, 404),
        (f"{mt.DOCKER_SCHEMA1_SIGNED}, {mt.OCI_INDEX}", 404),
    ],
)
def test_accept_header(client: httpx.Client, accept: str | None, status: int) -> None:
    push_blob(client, "r", b"{}")
    manifest = image_manifest(b"{}", [])
    assert push_manifest(client, "r", "t", manifest, mt.OCI_MANIFEST).status_code == 201
    headers = {"Accept": accept} if accept is not None else {}
    for method in ("GET", "HEAD"):
        response = client.request(method, "/v2/r/manifests/t", headers=headers)
        assert response.status_code == status
    if status == 404:
        assert client.get("/v2/r/manifests/t", headers=headers).json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"


def test_manifests_are_parsed_and_hashed_off_the_event_loop(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from regtool.server.handlers import manifests

    threads: list[str] = []
    real_parse = manifests.parse_manifest

    def parse(raw: bytes, content_type: str | None = None) -> object:
        threads.append(threading.current_thread().name)
        return real_parse(raw, content_type)

    monkeypatch.setattr(manifests, "parse_manifest", parse)
    push_blob(client, "r", b"{}")
    manifest = image_manifest(b"{}", [])
    assert push_manifest(client, "r", "t", manifest, mt.OCI_MANIFEST).status_code == 201
    assert push_manifest(client, "r", digest_of(manifest), manifest, mt.OCI_MANIFEST).status_code == 201
    # The event loop runs in the embedded server's "serve-<port>" thread; handlers' blocking work goes elsewhere.
    assert len(threads) == 2 and not any(name.startswith("serve-") for name in threads)
