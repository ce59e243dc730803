"""Mutated manifests and garbage requests: always a 2xx or a 4xx with an error code, never a 500."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import httpx

from regtool import mediatypes as mt
from tests.server.helpers import image_manifest, index_manifest, push_blob, random_blob

ODD_VALUES: list[Any] = [None, 0, -1, 1.5, 10**40, True, "", "x", "sha256:zz", [], {}, [None], {"a": None}, "é" * 50]


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += _paths(child, (*prefix, key))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            found += _paths(child, (*prefix, i))
    return found


def _set(document: Any, path: tuple[Any, ...], value: Any) -> Any:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return document


def test_mutated_manifests_never_cause_a_500(client: httpx.Client) -> None:
    config, layer = b"{}", random_blob(32)
    push_blob(client, "fuzz", config)
    push_blob(client, "fuzz", layer)
    subject = {"mediaType": mt.OCI_MANIFEST, "digest": "sha256:" + "a" * 64, "size": 10}
    image = json.loads(image_manifest(config, [layer], subject=subject, annotations={"k": "v"}))
    image["layers"][0]["urls"] = ["https://example.invalid/x"]
    image["layers"][0]["annotations"] = {"a": "b"}
    index = json.loads(index_manifest([json.dumps(image).encode()]))
    for document, media_type in ((image, mt.OCI_MANIFEST), (index, mt.OCI_INDEX)):
        for path in _paths(document):
            for value in ODD_VALUES:
                body = json.dumps(_set(document, path, value)).encode()
                response = client.put("/v2/fuzz/manifests/t", content=body, headers={"Content-Type": media_type})
                assert response.status_code in (201, 400), (path, value, response.text)
                if response.status_code == 400:
                    assert response.json()["errors"][0]["code"] in {
                        "MANIFEST_INVALID",
                        "MANIFEST_BLOB_UNKNOWN",
                    }, (path, value)


def test_garbage_requests_never_cause_a_500(client: httpx.Client) -> None:
    rng = random.Random(7)
    location = client.post("/v2/fuzz/blobs/uploads/").headers["location"]
    headers_pool = [
        {"Content-Range": "x-y"},
        {"Content-Range": "99999999999999999999-1"},
        {"Range": "bytes=99999999999999999999-"},
        {"Content-Type": "\x01"},
        {"Content-Type": "application/vnd.oci.image.index.v1+json; charset=utf-8"},
        {},
    ]
    targets = [
        location,
        "/v2/fuzz/manifests/t",
        "/v2/fuzz/blobs/sha256:" + "0" * 64,
        "/v2/fuzz/blobs/uploads/",
        "/v2/fuzz/tags/list?n=%FF",
        "/v2/_catalog?last=%00",
        "/v2/fuzz/referrers/sha256:" + "0" * 64 + "?artifactType=%FF",
    ]
    for _ in range(150):
        method = rng.choice(["GET", "HEAD", "PUT", "PATCH", "POST", "DELETE"])
        body = rng.choice([b"", b"{}", b"\xff\xfe", random_blob(100)])
        response = client.request(method, rng.choice(targets), content=body, headers=rng.choice(headers_pool))
        assert response.status_code < 500, (method, response.request.url, response.text)
    assert client.get("/v2/").status_code == 200
