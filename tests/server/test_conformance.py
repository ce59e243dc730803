"""The OCI distribution-spec conformance suite (v1.1.1; protocols.md §5.1), ported to pytest against a real serve.

One test per workflow context; inside, ``step(...)`` carries the suite's step names, and the accepted status codes
are the suite's. Runs once per storage driver (see conftest.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from regtool.protocol import mediatypes as mt
from regtool.protocol.errcodes import ErrorCode
from tests.server.helpers import digest_of, image_manifest, index_manifest, push_blob, push_manifest, random_blob

NS = "myorg/myrepo"
CROSS_NS = "conformance-1c5f8a0e"
VALID_CODES = {code.code for code in ErrorCode}


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    """Name the conformance step in any failure raised inside."""
    try:
        yield
    except AssertionError as exc:
        raise AssertionError(f"step {name!r}: {exc}") from exc


def _config(n: int) -> bytes:
    return json.dumps(
        {"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}, "n": n}
    ).encode()


@dataclass(frozen=True)
class PullSetup:
    config: bytes
    layer: bytes
    manifest0: bytes
    manifest1: bytes
    tag: str


@pytest.fixture
def pull_setup(client: httpx.Client) -> PullSetup:
    """Setup of 01_pull_test.go: two configs, a layer, two manifests, one tag."""
    configs = [_config(0), _config(1)]
    layer = random_blob(2048)
    with step("Populate registry with test blob"):
        for config in configs:
            push_blob(client, NS, config)
    with step("Populate registry with test layer"):
        push_blob(client, NS, layer)
    manifests = [image_manifest(config, [layer]) for config in configs]
    with step("Populate registry with test manifest"):
        for i, manifest in enumerate(manifests):
            response = push_manifest(
                client, NS, "tagtest0" if i == 0 else digest_of(manifest), manifest, mt.OCI_MANIFEST
            )
            assert response.status_code == 201
    return PullSetup(configs[0], layer, manifests[0], manifests[1], "tagtest0")


def test_pull_blobs(client: httpx.Client, pull_setup: PullSetup) -> None:
    layer = pull_setup.layer
    missing = digest_of(b"not pushed")
    with step("HEAD request to nonexistent blob should result in 404 response"):
        assert client.head(f"/v2/{NS}/blobs/{missing}").status_code == 404
    with step("HEAD request to existing blob should yield 200"):
        response = client.head(f"/v2/{NS}/blobs/{digest_of(layer)}")
        assert response.status_code == 200
        assert response.headers["content-length"] == str(len(layer))
        assert response.headers["docker-content-digest"] == digest_of(layer)
    with step("GET nonexistent blob should result in 404 response"):
        assert client.get(f"/v2/{NS}/blobs/{missing}").status_code == 404
    with step("GET request to existing blob URL should yield 200"):
        response = client.get(f"/v2/{NS}/blobs/{digest_of(layer)}")
        assert response.status_code == 200
        assert response.content == layer


def test_pull_manifests(client: httpx.Client, pull_setup: PullSetup) -> None:
    m0, m1 = pull_setup.manifest0, pull_setup.manifest1
    with step("HEAD request to nonexistent manifest should return 404"):
        assert client.head(f"/v2/{NS}/manifests/{digest_of(b'nope')}").status_code == 404
    with step("HEAD request to manifest[0] path (digest) should yield 200 response"):
        response = client.head(f"/v2/{NS}/manifests/{digest_of(m0)}")
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == digest_of(m0)
        assert response.headers["content-length"] == str(len(m0))
    with step("HEAD request to manifest[1] path (digest) should yield 200 response"):
        assert client.head(f"/v2/{NS}/manifests/{digest_of(m1)}").status_code == 200
    with step("HEAD request to manifest path (tag) should yield 200 response"):
        assert client.head(f"/v2/{NS}/manifests/{pull_setup.tag}").status_code == 200
    with step("GET nonexistent manifest should return 404"):
        assert client.get(f"/v2/{NS}/manifests/{digest_of(b'nope')}").status_code == 404
    with step("GET request to manifest[0] path (digest) should yield 200 response"):
        response = client.get(f"/v2/{NS}/manifests/{digest_of(m0)}", headers={"Accept": mt.OCI_MANIFEST})
        assert response.status_code == 200
        assert response.content == m0
        assert response.headers["content-type"] == mt.OCI_MANIFEST
    with step("GET request to manifest[1] path (digest) should yield 200 response"):
        assert client.get(f"/v2/{NS}/manifests/{digest_of(m1)}").content == m1
    with step("GET request to manifest path (tag) should yield 200 response"):
        response = client.get(f"/v2/{NS}/manifests/{pull_setup.tag}")
        assert response.status_code == 200
        assert response.content == m0
        assert response.headers["docker-content-digest"] == digest_of(m0)


def test_pull_error_codes(client: httpx.Client, pull_setup: PullSetup) -> None:
    with step("400 response body should contain OCI-conforming JSON message"):
        response = client.get(f"/v2/{NS}/manifests/sha256:totallywrong")
        assert response.status_code in (400, 404)
        if response.status_code == 400:
            errors = response.json()["errors"]
            assert errors[0]["code"] in VALID_CODES
            assert errors[0]["code"] == "DIGEST_INVALID"
            assert errors[0]["message"]


def test_pull_teardown(client: httpx.Client, pull_setup: PullSetup) -> None:
    m0, m1, config, layer = pull_setup.manifest0, pull_setup.manifest1, pull_setup.config, pull_setup.layer
    with step("Delete manifest created in tests"):
        for manifest in (m0, m1):
            assert client.delete(f"/v2/{NS}/manifests/{digest_of(manifest)}").status_code in (202, 404, 405)
    with step("Delete config blob created in tests"):
        assert client.delete(f"/v2/{NS}/blobs/{digest_of(config)}").status_code in (202, 404, 405)
    with step("Delete layer blob created in tests"):
        assert client.delete(f"/v2/{NS}/blobs/{digest_of(layer)}").status_code in (202, 404, 405)


def test_push_blob_upload_streamed(client: httpx.Client) -> None:
    blob = random_blob(100_000)
    location = client.post(f"/v2/{NS}/blobs/uploads/").headers["location"]
    with step("PATCH request with blob in body should yield 202 response"):
        response = client.patch(location, content=blob, headers={"Content-Type": "application/octet-stream"})
        assert response.status_code == 202
        assert response.headers["location"]
        assert response.headers["range"] == f"0-{len(blob) - 1}"
    with step("PUT request to session URL with digest should yield 201 response"):
        response = client.put(
            response.headers["location"], params={"digest": digest_of(blob)}, headers={"Content-Length": "0"}
        )
        assert response.status_code == 201
        assert response.headers["location"] == f"/v2/{NS}/blobs/{digest_of(blob)}"
    assert client.get(f"/v2/{NS}/blobs/{digest_of(blob)}").content == blob


def test_push_blob_upload_monolithic(client: httpx.Client) -> None:
    config, layer = _config(7), random_blob(4096)
    with step("GET nonexistent blob should result in 404 response"):
        assert client.get(f"/v2/{NS}/blobs/{digest_of(config)}").status_code == 404
    with step("POST request with digest and blob should yield a 201 or 202"):
        response = client.post(
            f"/v2/{NS}/blobs/uploads/",
            params={"digest": digest_of(config)},
            content=config,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code in (201, 202)
        assert response.headers["location"]
        posted = response.status_code
    with step("GET request to blob URL from prior request should yield 200 or 404 based on response code"):
        response = client.get(f"/v2/{NS}/blobs/{digest_of(config)}")
        assert response.status_code == (200 if posted == 201 else 404)
        assert posted == 201 and response.content == config
    with step("POST request should yield a session ID"):
        response = client.post(f"/v2/{NS}/blobs/uploads/")
        assert response.status_code == 202
        assert response.headers["location"].startswith(f"/v2/{NS}/blobs/uploads/")
        assert response.headers["docker-upload-uuid"]
        assert response.headers["range"] == "0-0"
        location = response.headers["location"]
    with step("PUT upload of a blob should yield a 201 Response"):
        response = client.put(
            location,
            params={"digest": digest_of(config)},
            content=config,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 201
        assert response.headers["location"] == f"/v2/{NS}/blobs/{digest_of(config)}"
        assert response.headers["docker-content-digest"] == digest_of(config)
    with step("GET request to existing blob should yield 200 response"):
        assert client.get(f"/v2/{NS}/blobs/{digest_of(config)}").status_code == 200
    with step("PUT upload of a layer blob should yield a 201 Response"):
        location = client.post(f"/v2/{NS}/blobs/uploads/").headers["location"]
        response = client.put(location, params={"digest": digest_of(layer)}, content=layer)
        assert response.status_code == 201
    with step("GET request to existing layer should yield 200 response"):
        response = client.get(f"/v2/{NS}/blobs/{digest_of(layer)}")
        assert response.status_code == 200
        assert response.content == layer


def test_push_blob_upload_chunked(client: httpx.Client) -> None:
    blob = random_blob(3000)
    chunk1, chunk2 = blob[:1000], blob[1000:]
    response = client.post(f"/v2/{NS}/blobs/uploads/", headers={"Content-Length": "0"})
    assert response.status_code == 202
    location = response.headers["location"]
    with step("Out-of-order blob upload should return 416"):
        response = client.patch(
            location,
            content=chunk2,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"1000-{len(blob) - 1}"},
        )
        assert response.status_code == 416
    with step("PATCH request with first chunk should return 202"):
        response = client.patch(
            location, content=chunk1, headers={"Content-Type": "application/octet-stream", "Content-Range": "0-999"}
        )
        assert response.status_code == 202
        assert response.headers["range"] == "0-999"
        location = response.headers["location"]
    with step("Retry previous blob chunk should return 416"):
        response = client.patch(
            location, content=chunk1, headers={"Content-Type": "application/octet-stream", "Content-Range": "0-999"}
        )
        assert response.status_code == 416
    with step("Get on stale blob upload should return 204 with a range and location"):
        response = client.get(location)
        assert response.status_code == 204
        assert response.headers["location"]
        assert response.headers["range"] == "0-999"
    with step("PATCH request with final chunk should return 202"):
        response = client.patch(
            location,
            content=chunk2,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"1000-{len(blob) - 1}"},
        )
        assert response.status_code == 202
        assert response.headers["range"] == f"0-{len(blob) - 1}"
    with step("PUT request with digest should return 201"):
        response = client.put(location, params={"digest": digest_of(blob)}, headers={"Content-Length": "0"})
        assert response.status_code == 201
        assert response.headers["location"] == f"/v2/{NS}/blobs/{digest_of(blob)}"
    assert client.get(f"/v2/{NS}/blobs/{digest_of(blob)}").content == blob


def test_push_cross_repository_blob_mount(client: httpx.Client) -> None:
    blob = random_blob(512)
    push_blob(client, NS, blob)
    with step("Cross-mounting of a blob without the from argument should yield session id"):
        response = client.post(f"/v2/{CROSS_NS}/blobs/uploads/", params={"mount": digest_of(random_blob(16))})
        assert response.status_code == 202
        assert response.headers["location"].startswith(f"/v2/{CROSS_NS}/blobs/uploads/")
    with step("POST request to mount another repository's blob should return 201 or 202"):
        assert client.get(f"/v2/{CROSS_NS}/blobs/{digest_of(blob)}").status_code == 404
        response = client.post(f"/v2/{CROSS_NS}/blobs/uploads/", params={"mount": digest_of(blob), "from": NS})
        assert response.status_code == 201
        assert response.headers["location"] == f"/v2/{CROSS_NS}/blobs/{digest_of(blob)}"
        assert client.get(response.headers["location"]).content == blob
    with step("Cross-mounting of nonexistent blob should yield session id"):
        response = client.post(
            f"/v2/{CROSS_NS}/blobs/uploads/", params={"mount": digest_of(random_blob(16)), "from": NS}
        )
        assert response.status_code == 202
        assert response.headers["location"].startswith(f"/v2/{CROSS_NS}/blobs/uploads/")


def test_push_manifest_upload(client: httpx.Client) -> None:
    config, layer = _config(3), random_blob(300)
    push_blob(client, NS, config)
    push_blob(client, NS, layer)
    manifest = image_manifest(config, [layer])
    with step("GET nonexistent manifest should return 404"):
        assert client.get(f"/v2/{NS}/manifests/{digest_of(manifest)}").status_code == 404
    with step("PUT should accept a manifest upload"):
        for tag in ("test0", "test1", "test2", "test3"):
            response = push_manifest(client, NS, tag, manifest, mt.OCI_MANIFEST)
            assert response.status_code == 201
            assert response.headers["location"] == f"/v2/{NS}/manifests/{digest_of(manifest)}"
            assert response.headers["docker-content-digest"] == digest_of(manifest)
    with step("Registry should accept a manifest upload with no layers"):
        empty_layers = image_manifest(config, [])
        response = push_manifest(client, NS, "emptylayer", empty_layers, mt.OCI_MANIFEST)
        assert response.status_code == 201
    with step("GET request to manifest URL (digest) should yield 200 response"):
        response = client.get(f"/v2/{NS}/manifests/{digest_of(manifest)}", headers={"Accept": mt.OCI_MANIFEST})
        assert response.status_code == 200
        assert response.content == manifest


def _referrers_setup(client: httpx.Client) -> tuple[bytes, list[bytes]]:
    """References setup of 03_discovery_test.go: a subject and 5 referrers (2 of artifact type A)."""
    config, layer = mt.EMPTY_JSON, random_blob(64)
    push_blob(client, NS, config)
    push_blob(client, NS, layer)
    subject = image_manifest(config, [layer], config_type=mt.OCI_EMPTY)
    assert push_manifest(client, NS, "subject", subject, mt.OCI_MANIFEST).status_code == 201
    subject_descriptor = {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(subject), "size": len(subject)}
    referrers = []
    for i, artifact_type in enumerate(["application/a", "application/a", "application/b", None, None]):
        referrer = image_manifest(
            config,
            [layer],
            config_type="application/config-c" if artifact_type is None else mt.OCI_EMPTY,
            subject=subject_descriptor,
            artifact_type=artifact_type,
            annotations={"org.example.n": str(i)},
        )
        response = push_manifest(client, NS, digest_of(referrer), referrer, mt.OCI_MANIFEST)
        assert response.status_code == 201
        assert response.headers["oci-subject"] == digest_of(subject)
        referrers.append(referrer)
    return subject, referrers


def test_content_discovery_listing_tags(client: httpx.Client) -> None:
    config = _config(9)
    push_blob(client, NS, config)
    manifest = image_manifest(config, [])
    tags = [f"tag{i}" for i in range(6)]
    with step("Populate registry with test tags"):
        for tag in tags:
            assert push_manifest(client, NS, tag, manifest, mt.OCI_MANIFEST).status_code == 201
    with step("GET request to list tags should yield 200 response"):
        response = client.get(f"/v2/{NS}/tags/list")
        assert response.status_code == 200
        assert response.json() == {"name": NS, "tags": sorted(tags)}
    with step("GET number of tags should be limited by `n` query parameter"):
        response = client.get(f"/v2/{NS}/tags/list", params={"n": 3})
        assert response.status_code == 200
        assert response.json()["tags"] == sorted(tags)[:3]
        assert response.headers["link"] == f'</v2/{NS}/tags/list?n=3&last=tag2>; rel="next"'
    with step("GET start of tag is set by `last` query parameter"):
        response = client.get(f"/v2/{NS}/tags/list", params={"n": 3, "last": "tag2"})
        assert response.status_code == 200
        assert response.json()["tags"] == ["tag3", "tag4", "tag5"]
        assert "link" not in response.headers


def test_content_discovery_listing_references(client: httpx.Client) -> None:
    subject, referrers = _referrers_setup(client)
    with step("GET request to nonexistent blob should result in empty 200 response"):
        response = client.get(f"/v2/{NS}/referrers/{digest_of(b'nothing refers to me')}")
        assert response.status_code == 200
        assert response.headers["content-type"] == mt.OCI_INDEX
        assert response.json()["manifests"] == []
    with step("GET request to existing blob should yield 200"):
        response = client.get(f"/v2/{NS}/referrers/{digest_of(subject)}")
        assert response.status_code == 200
        assert response.headers["content-type"] == mt.OCI_INDEX
        index = response.json()
        assert index["schemaVersion"] == 2 and index["mediaType"] == mt.OCI_INDEX
        assert len(index["manifests"]) == 5
        by_digest = {d["digest"]: d for d in index["manifests"]}
        for i, referrer in enumerate(referrers):
            descriptor = by_digest[digest_of(referrer)]
            assert descriptor["size"] == len(referrer)
            assert descriptor["mediaType"] == mt.OCI_MANIFEST
            assert descriptor["annotations"] == {"org.example.n": str(i)}
        assert by_digest[digest_of(referrers[3])]["artifactType"] == "application/config-c"
    with step("GET request to existing blob with filter should yield 200"):
        response = client.get(f"/v2/{NS}/referrers/{digest_of(subject)}", params={"artifactType": "application/a"})
        assert response.status_code == 200
        assert response.headers["oci-filters-applied"] == "artifactType"
        assert sorted(d["digest"] for d in response.json()["manifests"]) == sorted(digest_of(r) for r in referrers[:2])
    with step("GET request to missing manifest should yield 200"):
        missing_subject = {"mediaType": mt.OCI_MANIFEST, "digest": digest_of(b"absent"), "size": 6}
        index = index_manifest([], subject=missing_subject)
        response = push_manifest(client, NS, digest_of(index), index, mt.OCI_INDEX)
        assert response.status_code == 201
        assert response.headers["oci-subject"] == digest_of(b"absent")
        response = client.get(f"/v2/{NS}/referrers/{digest_of(b'absent')}")
        assert response.status_code == 200
        manifests = response.json()["manifests"]
        assert [d["digest"] for d in manifests] == [digest_of(index)]
        assert "artifactType" not in manifests[0]


def test_content_management_manifest_delete(client: httpx.Client) -> None:
    config, layer = _config(11), random_blob(128)
    with step("Populate registry with test config blob"):
        push_blob(client, NS, config)
    with step("Populate registry with test layer"):
        push_blob(client, NS, layer)
    manifest = image_manifest(config, [layer])
    with step("Populate registry with test tag"):
        assert push_manifest(client, NS, "tagtest0", manifest, mt.OCI_MANIFEST).status_code == 201
        assert push_manifest(client, NS, "tagtest1", manifest, mt.OCI_MANIFEST).status_code == 201
    with step("Check how many tags there are before anything gets deleted"):
        before = client.get(f"/v2/{NS}/tags/list").json()["tags"]
        assert before == ["tagtest0", "tagtest1"]
    with step("DELETE request to manifest tag should return 202, unless tag deletion is disallowed (400/405)"):
        assert client.delete(f"/v2/{NS}/manifests/tagtest0").status_code == 202
        assert client.get(f"/v2/{NS}/manifests/tagtest0").status_code == 404
        assert client.get(f"/v2/{NS}/manifests/{digest_of(manifest)}").status_code == 200
    with step("DELETE request to manifest (digest) should yield 202 response unless already deleted"):
        assert client.delete(f"/v2/{NS}/manifests/{digest_of(manifest)}").status_code == 202
    with step("GET request to deleted manifest URL should yield 404 response, unless delete is disallowed"):
        response = client.get(f"/v2/{NS}/manifests/{digest_of(manifest)}")
        assert response.status_code == 404
        assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        assert client.delete(f"/v2/{NS}/manifests/{digest_of(manifest)}").status_code == 404
    with step("GET request to tags list should reflect manifest deletion"):
        response = client.get(f"/v2/{NS}/tags/list")
        assert response.status_code == 200
        assert response.json()["tags"] == []


def test_content_management_blob_delete(client: httpx.Client) -> None:
    config, layer = _config(12), random_blob(128)
    push_blob(client, NS, config)
    push_blob(client, NS, layer)
    with step("DELETE request to blob URL should yield 202 response"):
        for blob in (config, layer):
            assert client.delete(f"/v2/{NS}/blobs/{digest_of(blob)}").status_code == 202
    with step("GET request to deleted blob URL should yield 404 response"):
        for blob in (config, layer):
            response = client.get(f"/v2/{NS}/blobs/{digest_of(blob)}")
            assert response.status_code == 404
            assert response.json()["errors"][0]["code"] == "BLOB_UNKNOWN"
        assert client.delete(f"/v2/{NS}/blobs/{digest_of(layer)}").status_code == 404
