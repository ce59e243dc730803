"""The development conformance suite's checks around the workflows (distribution-spec main, conformance/run.go):
TestPing, TestEmpty (tag list and referrers of a repository that holds nothing) and TestManifestErrors (missing
manifests by digest and by tag, a manifest PUT and GET at a reference that is not a digest)."""

from __future__ import annotations

import hashlib
import json
import os
import secrets

import httpx

from tests.conformance.blobapis import Blob, post_put
from tests.conformance.data import OCI_INDEX, OCI_MANIFEST
from tests.conformance.steps import NAMESPACE, error_code, step

REPO = NAMESPACE


def test_ping(client: httpx.Client) -> None:
    response = client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["docker-distribution-api-version"] == "registry/2.0"


def test_an_empty_repository(client: httpx.Client) -> None:
    with step("tag list"):
        response = client.get(f"/v2/{REPO}/tags/list")
        assert response.status_code == 404
        assert error_code(response) == "NAME_UNKNOWN"
    with step("referrers"):
        subject = "sha256:" + hashlib.sha256(secrets.token_bytes(16)).hexdigest()
        response = client.get(f"/v2/{REPO}/referrers/{subject}")
        assert response.status_code == 200
        assert response.headers["content-type"] == OCI_INDEX
        assert response.json()["manifests"] == []


def test_manifest_errors(client: httpx.Client) -> None:
    # As the suite runs it, after content was pushed: the repository exists, the manifests do not.
    config, layer = (
        Blob(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'),
        Blob(os.urandom(1024)),
    )
    for blob in (config, layer):
        post_put(client, REPO, blob)
    with step("missing-manifest / by-digest"):
        digest = "sha256:" + hashlib.sha256(os.urandom(1024)).hexdigest()
        response = client.get(f"/v2/{REPO}/manifests/{digest}", headers={"Accept": OCI_MANIFEST})
        assert response.status_code == 404
        assert error_code(response) == "MANIFEST_UNKNOWN"
    with step("missing-manifest / by-tag"):
        response = client.get(f"/v2/{REPO}/manifests/missing-{secrets.token_hex(10)}")
        assert response.status_code == 404
        assert error_code(response) == "MANIFEST_UNKNOWN"
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config.digest,
                "size": len(config.data),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.digest, "size": len(layer.data)}
            ],
        }
    ).encode()
    with step("invalid-digest-format / manifest-put"):
        response = client.put(
            f"/v2/{REPO}/manifests/sha256:baddigeststring", headers={"Content-Type": OCI_MANIFEST}, content=manifest
        )
        assert response.status_code == 400
        assert error_code(response) == "DIGEST_INVALID"
    with step("invalid-digest-format / manifest-get"):
        response = client.get(f"/v2/{REPO}/manifests/sha256:baddigeststring")
        assert response.status_code == 400
        assert error_code(response) == "DIGEST_INVALID"
    # Nothing was stored by the refused PUT.
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    assert client.get(f"/v2/{REPO}/manifests/{digest}").status_code == 404
