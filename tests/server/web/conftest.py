"""Fixtures for the web view's tests: a registry root filled over the real API, and users with an ACL.

``populated`` is a filesystem root written once per test by an open ``regtool serve`` (plain v2 pushes); tests
then serve that root with the options they need (auth, read-only, a prefix)::

    team/app:1.0, team/app:latest   one image (entrypoint, env, labels, history, two layers), with referrers:
                                    a cosign signature, an SPDX SBOM, and an in-toto attestation of that SBOM
    team/multi:v2                   an OCI index over linux/amd64 and linux/arm64
    alice/secret:1, bob/tool:1      one image each (for the ACL: bob may pull only bob/* and team/*)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.server.auth.htpasswd import hash_password
from tests.server.helpers import push_blob, push_manifest
from tests.support.images import BuiltImage, image_manifest
from tests.support.serve import RunningServe, run_serve

SIGNATURE_TYPE = "application/vnd.dev.cosign.artifact.sig.v1+json"
SBOM_TYPE = "application/spdx+json"
ATTESTATION_TYPE = "application/vnd.in-toto+json"
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}
ACL = "alice  *  pull,push,delete\nbob  bob/*  pull,push,delete\nbob  team/*  pull\n"


@dataclass(frozen=True)
class Populated:
    """The filled root and what is in it."""

    root: Path
    app: BuiltImage
    app_digest: str
    multi_digest: str
    signature_digest: str
    sbom_digest: str
    attestation_digest: str
    htpasswd: Path
    acl: Path


def push_image(client: httpx.Client, name: str, tag: str, image: BuiltImage) -> str:
    for data in image.blobs.values():
        push_blob(client, name, data)
    response = push_manifest(client, name, tag, image.manifest.raw, image.manifest.media_type)
    assert response.status_code == 201, response.text
    return str(response.headers["docker-content-digest"])


def push_artifact(
    client: httpx.Client,
    name: str,
    artifact_type: str,
    payload: bytes,
    subject: tuple[str, int, str],
    annotations: dict[str, str] | None = None,
) -> tuple[str, int]:
    """An OCI 1.1 artifact manifest (empty config, one blob) whose ``subject`` is (digest, size, media type).

    Returns the artifact's digest and size, to make it the subject of another.
    """
    push_blob(client, name, mt.EMPTY_JSON)
    layer_digest = push_blob(client, name, payload)
    body = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": {"mediaType": mt.OCI_EMPTY, "digest": mt.EMPTY_JSON_DIGEST, "size": 2},
        "layers": [{"mediaType": artifact_type, "digest": layer_digest, "size": len(payload)}],
        "subject": {"mediaType": subject[2], "digest": subject[0], "size": subject[1]},
        "annotations": annotations or {"org.opencontainers.image.created": "2024-01-01T00:00:00Z"},
    }
    raw = json.dumps(body).encode()
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    response = push_manifest(client, name, digest, raw, mt.OCI_MANIFEST)
    assert response.status_code == 201, response.text
    return digest, len(raw)


def populate(root: Path) -> Populated:
    app = image_manifest(
        [{"bin/app": b"#!/bin/sh\necho hi\n"}, {"etc/app.conf": b"answer=42\n" * 50}],
        entrypoint=("/bin/app", "--serve"),
        env=("PATH=/usr/bin:/bin", "APP_MODE=production"),
        labels={"org.opencontainers.image.title": "app", "maintainer": "team@example.com"},
    )
    amd64 = image_manifest([{"amd64.txt": b"amd64"}], arch="amd64")
    arm64 = image_manifest([{"arm64.txt": b"arm64"}], arch="arm64", variant="v8")
    with run_serve(root) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        app_digest = push_image(client, "team/app", "1.0", app)
        response = push_manifest(client, "team/app", "latest", app.manifest.raw, app.manifest.media_type)
        assert response.status_code == 201
        subject = (app_digest, app.manifest.size, app.manifest.media_type)
        signature, _ = push_artifact(client, "team/app", SIGNATURE_TYPE, b"signature-bytes", subject)
        sbom, sbom_size = push_artifact(client, "team/app", SBOM_TYPE, b'{"spdxVersion": "SPDX-2.3"}', subject)
        statement = b'{"_type": "https://in-toto.io/Statement/v1"}'
        attestation, _ = push_artifact(
            client, "team/app", ATTESTATION_TYPE, statement, (sbom, sbom_size, mt.OCI_MANIFEST)
        )
        for child in (amd64, arm64):
            push_image(client, "team/multi", str(child.platform).replace("/", "-"), child)
        index = {
            "schemaVersion": 2,
            "mediaType": mt.OCI_INDEX,
            "manifests": [child.manifest.descriptor(platform=child.platform).to_json() for child in (amd64, arm64)],
        }
        response = push_manifest(client, "team/multi", "v2", json.dumps(index).encode(), mt.OCI_INDEX)
        assert response.status_code == 201, response.text
        multi_digest = str(response.headers["docker-content-digest"])
        # The per-platform tags were only a way in: the index is what the repository shows.
        for child in (amd64, arm64):
            assert client.delete(f"/v2/team/multi/manifests/{str(child.platform).replace('/', '-')}").status_code == 202
        push_image(client, "alice/secret", "1", image_manifest([{"secret.txt": b"alice only"}]))
        push_image(client, "bob/tool", "1", image_manifest([{"tool.txt": b"bob's tool"}]))
    htpasswd = root.parent / "users.htpasswd"
    htpasswd.write_text("".join(f"{u}:{hash_password(p, rounds=4)}\n" for u, p in PASSWORDS.items()))
    acl = root.parent / "acl"
    acl.write_text(ACL)
    return Populated(root, app, app_digest, multi_digest, signature, sbom, attestation, htpasswd, acl)


@pytest.fixture
def populated(tmp_path: Path) -> Populated:
    return populate(tmp_path / "registry")


@pytest.fixture
def open_serve(populated: Populated) -> Iterator[RunningServe]:
    """The populated registry, without authentication."""
    with run_serve(populated.root) as server:
        yield server


@pytest.fixture
def acl_serve(populated: Populated) -> Iterator[RunningServe]:
    """The populated registry under htpasswd Basic auth with the ACL (bob: bob/* and pull on team/*)."""
    with run_serve(populated.root, htpasswd=populated.htpasswd, auth_acl=populated.acl) as server:
        yield server
