"""Deletes turned off (distribution's storage.delete.enabled: false): 405 UNSUPPORTED, and nothing removed."""

from __future__ import annotations

import httpx

from regtool import mediatypes as mt
from tests.server.helpers import digest_of, image_manifest, push_blob, push_manifest, random_blob
from tests.support.serve import run_serve


def test_deletes_are_refused_and_change_nothing() -> None:
    with run_serve(None, delete_enabled=False) as server, httpx.Client(base_url=server.url) as client:
        config, layer = random_blob(64), random_blob(256)
        push_blob(client, "app", config)
        push_blob(client, "app", layer)
        manifest = image_manifest(config, [layer])
        assert push_manifest(client, "app", "v1", manifest, mt.OCI_MANIFEST).status_code == 201
        for target in (
            f"/v2/app/manifests/{digest_of(manifest)}",
            "/v2/app/manifests/v1",
            f"/v2/app/blobs/{digest_of(layer)}",
        ):
            response = client.delete(target)
            assert response.status_code == 405, target
            assert response.json()["errors"][0]["code"] == "UNSUPPORTED"
        assert client.get("/v2/app/manifests/v1").content == manifest
        assert client.get(f"/v2/app/blobs/{digest_of(layer)}").content == layer


def test_an_invalid_tag_is_unknown_to_a_lookup_and_invalid_to_a_push() -> None:
    with run_serve(None) as server, httpx.Client(base_url=server.url) as client:
        for method in ("GET", "HEAD", "DELETE"):
            response = client.request(method, "/v2/app/manifests/.INVALID_MANIFEST_NAME")
            assert response.status_code == 404, method
            if method != "HEAD":
                assert response.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
        response = push_manifest(client, "app", ".INVALID", image_manifest(b"{}", []), mt.OCI_MANIFEST)
        assert response.status_code == 400
        assert response.json()["errors"][0]["code"] == "TAG_INVALID"


def test_v1_deletes_are_refused_too() -> None:
    with run_serve(None, delete_enabled=False) as server, httpx.Client(base_url=server.url) as client:
        for target in ("/v1/repositories/library/app/tags/latest", "/v1/repositories/library/app/"):
            response = client.delete(target)
            assert response.status_code == 405, target
            assert "deletes are disabled" in response.text
