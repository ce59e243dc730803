"""Pull (01_pull_test.go): setup, pull blobs, pull manifests, error codes, teardown, spec by spec."""

from __future__ import annotations

import httpx

from tests.conformance.data import INVALID_MANIFEST, NONEXISTENT_MANIFEST, OCI_MANIFEST, TEST_TAG, SuiteData
from tests.conformance.steps import NAMESPACE, error_code, is_success, relative_location, step

NAME = NAMESPACE


def _put_blob(client: httpx.Client, blob: bytes, digest: str) -> httpx.Response:
    started = client.post(f"/v2/{NAME}/blobs/uploads/")
    return client.put(
        relative_location(started),
        params={"digest": digest},
        headers={"Content-Type": "application/octet-stream", "Content-Length": str(len(blob))},
        content=blob,
    )


def test_pull_workflow(client: httpx.Client) -> None:
    data = SuiteData.build()
    configs, manifests, layer = data.configs, data.manifests, data.layer
    accept = {"Accept": OCI_MANIFEST}

    with step("Setup: Populate registry with test blob"):
        for config in configs[:2]:
            assert is_success(_put_blob(client, config.content, config.digest).status_code)
    with step("Setup: Populate registry with test layer"):
        assert is_success(_put_blob(client, layer.content, layer.digest).status_code)
    with step("Setup: Populate registry with test manifest"):
        for reference, manifest in ((TEST_TAG, manifests[0]), (manifests[1].digest, manifests[1])):
            response = client.put(
                f"/v2/{NAME}/manifests/{reference}", headers={"Content-Type": OCI_MANIFEST}, content=manifest.content
            )
            assert is_success(response.status_code), response.text

    with step("Pull blobs: HEAD request to nonexistent blob should result in 404 response"):
        assert client.head(f"/v2/{NAME}/blobs/{data.dummy_digest}").status_code == 404
    with step("Pull blobs: HEAD request to existing blob should yield 200"):
        response = client.head(f"/v2/{NAME}/blobs/{configs[0].digest}")
        assert response.status_code == 200
        # Redirected to object storage, the registry's own answer is the 307 (the store's has no such header).
        first = response.history[0] if response.history else response
        assert first.headers["docker-content-digest"] == configs[0].digest
    with step("Pull blobs: GET nonexistent blob should result in 404 response"):
        assert client.get(f"/v2/{NAME}/blobs/{data.dummy_digest}").status_code == 404
    with step("Pull blobs: GET request to existing blob URL should yield 200"):
        response = client.get(f"/v2/{NAME}/blobs/{configs[0].digest}")
        assert response.status_code == 200
        assert response.content == configs[0].content

    with step("Pull manifests: HEAD request to nonexistent manifest should return 404"):
        assert client.head(f"/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}").status_code == 404
    for i in (0, 1):
        with step(f"Pull manifests: HEAD request to manifest[{i}] path (digest) should yield 200 response"):
            response = client.head(f"/v2/{NAME}/manifests/{manifests[i].digest}", headers=accept)
            assert response.status_code == 200
            assert response.headers["docker-content-digest"] == manifests[i].digest
    with step("Pull manifests: HEAD request to manifest path (tag) should yield 200 response"):
        response = client.head(f"/v2/{NAME}/manifests/{TEST_TAG}", headers=accept)
        assert response.status_code == 200
        assert response.headers["docker-content-digest"] == manifests[0].digest
    with step("Pull manifests: GET nonexistent manifest should return 404"):
        response = client.get(f"/v2/{NAME}/manifests/{NONEXISTENT_MANIFEST}")
        assert response.status_code == 404
        assert error_code(response) == "MANIFEST_UNKNOWN"
    for i in (0, 1):
        with step(f"Pull manifests: GET request to manifest[{i}] path (digest) should yield 200 response"):
            response = client.get(f"/v2/{NAME}/manifests/{manifests[i].digest}", headers=accept)
            assert response.status_code == 200
            assert response.content == manifests[i].content
    with step("Pull manifests: GET request to manifest path (tag) should yield 200 response"):
        response = client.get(f"/v2/{NAME}/manifests/{TEST_TAG}", headers=accept)
        assert response.status_code == 200
        assert response.content == manifests[0].content

    with step("Error codes: 400 response body should contain OCI-conforming JSON message"):
        response = client.request(
            "GET",
            f"/v2/{NAME}/manifests/sha256:totallywrong",
            headers={"Content-Type": OCI_MANIFEST},
            content=INVALID_MANIFEST,
        )
        assert response.status_code in (400, 404)
        if response.status_code == 400:
            assert error_code(response) == "DIGEST_INVALID"

    # The suite deletes manifests before blobs unless told otherwise; with deletes on, each must succeed.
    with step("Teardown: Delete manifest[0] created in setup"):
        assert client.delete(f"/v2/{NAME}/manifests/{manifests[0].digest}").status_code == 202
    with step("Teardown: Delete manifest[1] created in setup"):
        assert client.delete(f"/v2/{NAME}/manifests/{manifests[1].digest}").status_code == 202
    for i in (0, 1):
        with step(f"Teardown: Delete config[{i}] blob created in setup"):
            assert client.delete(f"/v2/{NAME}/blobs/{configs[i].digest}").status_code == 202
    with step("Teardown: Delete layer blob created in setup"):
        assert client.delete(f"/v2/{NAME}/blobs/{layer.digest}").status_code == 202
    assert client.get(f"/v2/{NAME}/manifests/{TEST_TAG}").status_code == 404
