"""Small helpers for driving a registry over raw HTTP in the server tests."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

import httpx

from regtool import mediatypes as mt

__all__ = ["digest_of", "image_manifest", "index_manifest", "push_blob", "push_manifest", "random_blob"]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def random_blob(size: int = 1024) -> bytes:
    return os.urandom(size)


def push_blob(client: httpx.Client, name: str, data: bytes) -> str:
    """Monolithic POST + PUT; returns the digest."""
    digest = digest_of(data)
    started = client.post(f"/v2/{name}/blobs/uploads/")
    assert started.status_code == 202, started.text
    closed = client.put(started.headers["location"], params={"digest": digest}, content=data)
    assert closed.status_code == 201, closed.text
    return digest


def image_manifest(
    config: bytes,
    layers: list[bytes],
    *,
    media_type: str = mt.OCI_MANIFEST,
    config_type: str = mt.OCI_CONFIG,
    subject: dict[str, Any] | None = None,
    artifact_type: str | None = None,
    annotations: dict[str, str] | None = None,
) -> bytes:
    layer_type = mt.OCI_LAYER_GZIP if media_type == mt.OCI_MANIFEST else mt.DOCKER_LAYER
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": config_type, "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": layer_type, "digest": digest_of(layer), "size": len(layer)} for layer in layers],
    }
    if subject is not None:
        body["subject"] = subject
    if artifact_type is not None:
        body["artifactType"] = artifact_type
    if annotations is not None:
        body["annotations"] = annotations
    return json.dumps(body, indent=2).encode()


def index_manifest(
    manifests: list[bytes], *, media_type: str = mt.OCI_INDEX, subject: dict[str, Any] | None = None
) -> bytes:
    child_type = mt.OCI_MANIFEST if media_type == mt.OCI_INDEX else mt.DOCKER_MANIFEST_V2
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            {
                "mediaType": child_type,
                "digest": digest_of(m),
                "size": len(m),
                "platform": {"architecture": "amd64", "os": "linux"},
            }
            for m in manifests
        ],
    }
    if subject is not None:
        body["subject"] = subject
    return json.dumps(body).encode()


def push_manifest(client: httpx.Client, name: str, reference: str, body: bytes, media_type: str) -> httpx.Response:
    return client.put(f"/v2/{name}/manifests/{reference}", content=body, headers={"Content-Type": media_type})
