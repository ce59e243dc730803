"""The v1 API of ``regtool serve``, checked the way docker-registry's own tests checked it (protocols.md §1.4).

Each test talks HTTP to a real serve on 127.0.0.1 (tests.support.serve).
"""

from __future__ import annotations

import hashlib
import json
import random
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.serve import RunningServe, run_serve

UA = "docker/0.7.2-dev go/go1.2 os/ostest arch/archtest"


@pytest.fixture
def http(serve: RunningServe) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve.url, headers={"User-Agent": UA}) as client:
        yield client


def gen_id() -> str:
    return secrets.token_hex(8)  # docker-registry's tests use 16-hex ids


def image_json(image_id: str, parent: str | None = None) -> bytes:
    data: dict[str, object] = {"id": image_id, "created": "2014-01-01T00:00:00Z"}
    if parent:
        data["parent"] = parent
    return json.dumps(data).encode()


def payload(json_bytes: bytes, layer: bytes) -> str:
    return "sha256:" + hashlib.sha256(json_bytes + b"\n" + layer).hexdigest()


def upload_image(http: httpx.Client, image_id: str, parent: str | None, layer: bytes) -> bytes:
    """base.py upload_image, with every intermediate check it makes."""
    raw = image_json(image_id, parent)
    assert http.put(f"/v1/images/{image_id}/json", content=raw).status_code == 200
    early = http.get(f"/v1/images/{image_id}/json")
    assert early.status_code == 400
    assert early.json() == {"error": "Image is being uploaded, retry later"}
    assert http.put(f"/v1/images/{image_id}/layer", content=layer).status_code == 200
    checksum = {"X-Docker-Checksum-Payload": payload(raw, layer)}
    assert http.put(f"/v1/images/{image_id}/checksum", headers=checksum).status_code == 200
    again = http.put(f"/v1/images/{image_id}/checksum", headers=checksum)
    assert again.status_code == 409
    assert again.json() == {"error": "Cannot set this image checksum"}
    assert http.put(f"/v1/images/{gen_id()}/checksum", headers=checksum).status_code == 404
    done = http.get(f"/v1/images/{image_id}/json")
    assert done.status_code == 200
    assert done.content == raw
    assert done.headers["X-Docker-Size"] == str(len(layer))
    assert done.headers["X-Docker-Checksum-Payload"] == payload(raw, layer)
    assert done.headers["X-Docker-Payload-Checksum"] == payload(raw, layer)
    return raw


def test_ping(http: httpx.Client) -> None:
    for path in ("/_ping", "/v1/_ping"):
        response = http.get(path)
        assert response.status_code == 200
        assert response.json() == {}
        assert response.headers["X-Docker-Registry-Version"] == "0.9.1"
        assert response.headers["X-Docker-Registry-Standalone"] == "true"


def test_upload_image_and_ancestry(http: httpx.Client) -> None:
    parent, child = gen_id(), gen_id()
    upload_image(http, parent, None, b"parent layer bytes")
    upload_image(http, child, parent, b"child layer bytes")
    assert http.get(f"/v1/images/{child}/ancestry").json() == [child, parent]
    assert http.get(f"/v1/images/{parent}/ancestry").json() == [parent]
    assert http.get(f"/v1/images/{child}/layer").content == b"child layer bytes"


def test_image_json_errors(http: httpx.Client) -> None:
    image_id = gen_id()
    assert http.get(f"/v1/images/{gen_id()}/json").status_code == 404
    bad = http.get("/v1/images/NOT-AN-ID/json")
    assert (bad.status_code, bad.json()) == (404, {"error": "Invalid image ID"})
    for body, message in [
        (b"{not json", "Invalid JSON"),
        (b'{"created": "x"}', "Missing key `id' in JSON"),
        (image_json(gen_id()), "JSON data contains invalid id"),
        (image_json(image_id, gen_id()), "Image depends on a non existing parent"),
    ]:
        response = http.put(f"/v1/images/{image_id}/json", content=body)
        assert (response.status_code, response.json()) == (400, {"error": message})
    upload_image(http, image_id, None, b"x")
    again = http.put(f"/v1/images/{image_id}/json", content=image_json(image_id))
    assert (again.status_code, again.json()) == (409, {"error": "Image already exists"})
    layer_again = http.put(f"/v1/images/{image_id}/layer", content=b"y")
    assert layer_again.status_code == 409
    assert http.put(f"/v1/images/{gen_id()}/layer", content=b"y").status_code == 404


def test_a_parent_cycle_is_refused(http: httpx.Client) -> None:
    # An image in progress may have its JSON put again, but not naming its own descendant, or itself, as parent.
    root, child = gen_id(), gen_id()
    assert http.put(f"/v1/images/{root}/json", content=image_json(root)).status_code == 200
    assert http.put(f"/v1/images/{child}/json", content=image_json(child, root)).status_code == 200
    for parent in (child, root):
        refused = http.put(f"/v1/images/{root}/json", content=image_json(root, parent))
        assert (refused.status_code, refused.json()) == (
            400,
            {"error": "Invalid parent: the image would be its own ancestor"},
        )


def test_a_repository_name_outside_latin_1_is_no_500(http: httpx.Client) -> None:
    for method, path in (
        ("PUT", "/v1/repositories/ns/caf\u00e9\u20ac/"),
        ("GET", "/v1/repositories/ns/caf\u00e9\u20ac/images"),
    ):
        response = http.request(method, path, content=b"[]" if method == "PUT" else None)
        assert response.status_code < 500, (method, response.status_code, response.text)


def test_json_put_again_while_the_layer_arrives_fails_the_layer(serve: RunningServe, http: httpx.Client) -> None:
    # The layer's checksum covers the JSON read when the layer began; JSON replaced meanwhile was never covered.
    image_id = gen_id()
    first, second = image_json(image_id), json.dumps({"id": image_id, "config": {"Env": ["EVIL=1"]}}).encode()
    assert http.put(f"/v1/images/{image_id}/json", content=first).status_code == 200
    layer = b"layer bytes " * 100
    answer: dict[str, httpx.Response] = {}

    def slow() -> Iterator[bytes]:
        yield layer[:10]
        time.sleep(1.0)
        yield layer[10:]

    def put_layer() -> None:
        answer["layer"] = httpx.put(f"{serve.url}/v1/images/{image_id}/layer", content=slow(), timeout=30)

    sending = threading.Thread(target=put_layer)
    sending.start()
    time.sleep(0.4)
    assert http.put(f"/v1/images/{image_id}/json", content=second).status_code == 200
    sending.join()
    assert answer["layer"].status_code == 409
    refused = http.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": payload(first, layer)})
    assert refused.status_code == 400
    assert http.get(f"/v1/images/{image_id}/json").status_code != 200  # never complete with JSON nobody vouched for


def test_a_nested_repository_named_as_the_outer_ones_files_is_refused(http: httpx.Client) -> None:
    # ns/app keeps its privacy flag, image list and tag JSON where ns/app/private, ns/app/index_images and
    # ns/app/json_<tag> would live: such a name would overwrite or delete ns/app's files.
    assert http.put("/v1/repositories/ns/app/", content=b"[]").status_code in (200, 201)
    for nested in ("private", "index_images", "json_latest"):
        refused = http.put(f"/v1/repositories/ns/app/{nested}/", content=b"[]")
        assert refused.status_code == 400, nested
        assert "collide" in refused.json()["error"]
    assert http.put("/v1/repositories/ns/app/other/", content=b"[]").status_code in (200, 201)
    assert http.get("/v1/repositories/ns/app/images").status_code == 200


def test_checksum_is_verified(http: httpx.Client) -> None:
    image_id = gen_id()
    raw = image_json(image_id)
    http.put(f"/v1/images/{image_id}/json", content=raw)
    early = http.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": payload(raw, b"")})
    assert (early.status_code, early.json()) == (400, {"error": "Checksum not found"})
    http.put(f"/v1/images/{image_id}/layer", content=b"layer")
    missing = http.put(f"/v1/images/{image_id}/checksum")
    assert (missing.status_code, missing.json()) == (400, {"error": "Missing Image's checksum"})
    wrong = http.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": payload(raw, b"other")})
    assert (wrong.status_code, wrong.json()) == (400, {"error": "Checksum mismatch"})
    assert http.get(f"/v1/images/{image_id}/layer").status_code == 400
    right = http.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": payload(raw, b"layer")})
    assert right.status_code == 200


def test_layer_ranges_follow_rfc_9110(http: httpx.Client) -> None:
    image_id = gen_id()
    layer = bytes(range(256)) * 40
    upload_image(http, image_id, None, layer)
    full = http.get(f"/v1/images/{image_id}/layer")
    assert (full.status_code, full.content, full.headers["Accept-Ranges"]) == (200, layer, "bytes")
    for header, first, last in [("bytes=0-0", 0, 0), ("bytes=10-99", 10, 99), ("bytes=5000-", 5000, len(layer) - 1)]:
        part = http.get(f"/v1/images/{image_id}/layer", headers={"Range": header})
        assert part.status_code == 206
        assert part.content == layer[first : last + 1]
        assert part.headers["Content-Range"] == f"bytes {first}-{last}/{len(layer)}"
    suffix = http.get(f"/v1/images/{image_id}/layer", headers={"Range": "bytes=-100"})
    assert (suffix.status_code, suffix.content) == (206, layer[-100:])
    clipped = http.get(f"/v1/images/{image_id}/layer", headers={"Range": "bytes=10000-99999"})
    assert (clipped.status_code, clipped.content) == (206, layer[10000:])
    for header in (f"bytes={len(layer)}-", "bytes=9-3", "lines=1-2"):
        refused = http.get(f"/v1/images/{image_id}/layer", headers={"Range": header})
        assert refused.status_code == 416
        assert refused.headers["Content-Range"] == f"bytes */{len(layer)}"
        assert "error" in refused.json()


def test_empty_layer_ranges(http: httpx.Client) -> None:
    image_id = gen_id()
    upload_image(http, image_id, None, b"")
    assert http.get(f"/v1/images/{image_id}/layer").content == b""
    assert http.get(f"/v1/images/{image_id}/layer", headers={"Range": "bytes=0-"}).status_code == 416


def test_tags(http: httpx.Client) -> None:
    image_id = gen_id()
    upload_image(http, image_id, None, b"layer")
    repo = f"test/repo_{gen_id()}"
    for tag in ("latest", "test"):
        response = http.put(f"/v1/repositories/{repo}/tags/{tag}", content=json.dumps(image_id))
        assert (response.status_code, response.json()) == (200, True)
    assert http.get(f"/v1/repositories/{repo}/tags/latest").json() == image_id
    metadata = http.get(f"/v1/repositories/{repo}/tags/latest/json").json()
    assert (metadata["docker_version"], metadata["docker_go_version"]) == ("0.7.2-dev", "go1.2")
    assert (metadata["arch"], metadata["os"]) == ("archtest", "ostest")
    assert http.get(f"/v1/repositories/{repo}/json").json()["arch"] == "archtest"
    assert http.get(f"/v1/repositories/{repo}/tags").json() == {"latest": image_id, "test": image_id}
    deleted = http.delete(f"/v1/repositories/{repo}/tags/latest")
    assert deleted.status_code == 200
    gone = http.get(f"/v1/repositories/{repo}/tags/latest")
    assert (gone.status_code, gone.json()) == (404, {"error": "Tag not found"})
    again = http.delete(f"/v1/repositories/{repo}/tags/latest")
    assert (again.status_code, again.json()) == (404, {"error": "Tag not found: latest"})
    assert http.delete(f"/v1/repositories/{repo}/").status_code == 200
    missing = http.get(f"/v1/repositories/{repo}/tags")
    assert (missing.status_code, missing.json()) == (404, {"error": "Repository not found"})
    assert http.delete(f"/v1/repositories/{repo}/").status_code == 404


def test_tag_names_and_bodies(http: httpx.Client) -> None:
    image_id = gen_id()
    upload_image(http, image_id, None, b"layer")
    repo = "test/tagnames"
    for tag in ("$invalid", ".invalid", "-invalid"):
        assert http.put(f"/v1/repositories/{repo}/tags/{tag}", content=json.dumps(image_id)).status_code == 400
    assert http.put(f"/v1/repositories/{repo}/tags/_valid", content=json.dumps(image_id)).status_code == 200
    assert http.get(f"/v1/repositories/{repo}/tags").json() == {"_valid": image_id}
    not_string = http.put(f"/v1/repositories/{repo}/tags/x", content=b"[1]")
    assert (not_string.status_code, not_string.json()) == (400, {"error": "Invalid data"})
    assert http.put(f"/v1/repositories/{repo}/tags/x", content=json.dumps(gen_id())).status_code == 404


def test_odd_repository_names_stay_inside_storage(serve: RunningServe, http: httpx.Client) -> None:
    image_id = gen_id()
    upload_image(http, image_id, None, b"layer")
    for repo in ("test/%25%24_-name", "foo", "a/..", "../../../etc", "ns/%2e%2e"):
        put = http.put(f"/v1/repositories/{repo}/tags/t", content=json.dumps(image_id))
        assert put.status_code in (200, 400, 404), repo
        if put.status_code == 200:
            assert http.get(f"/v1/repositories/{repo}/tags/t").json() == image_id
    assert http.get("/v1/repositories/library/foo/tags").json() == {"t": image_id}
    assert serve.root is not None
    for path in serve.root.rglob("*"):
        assert path.resolve().is_relative_to(serve.root.resolve())
    assert not (serve.root.parent / "etc").exists()


def test_index_endpoints(http: httpx.Client) -> None:
    assert http.get("/v1/users").status_code == 200
    assert http.post("/v1/users/", json={"username": "u"}).status_code == 201
    assert http.put("/v1/users/u/", json={}).status_code == 204
    index = [{"id": gen_id(), "Tag": "latest"}, {"id": gen_id()}]
    put = http.put("/v1/repositories/test/idx/", json=index, headers={"X-Docker-Token": "true"})
    assert put.status_code == 200
    assert put.headers["X-Docker-Token"].startswith("Token signature=")
    assert 'repository="test/idx",access=write' in put.headers["X-Docker-Token"]
    assert put.headers["X-Docker-Endpoints"] == http.base_url.netloc.decode()
    assert http.put("/v1/repositories/test/idx/images", json=[]).status_code == 204
    images = http.get("/v1/repositories/test/idx/images", headers={"X-Docker-Token": "true"})
    assert images.status_code == 200
    assert [entry["id"] for entry in images.json()] == [entry["id"] for entry in index]
    assert "access=read" in images.headers["X-Docker-Token"]
    assert http.delete("/v1/repositories/test/idx/images").status_code == 204
    assert http.put("/v1/repositories/test/idx/auth").status_code == 200
    assert http.get("/v1/repositories/test/none/images").status_code == 404
    bad = http.put("/v1/repositories/test/idx/", content=b"{")
    assert (bad.status_code, bad.json()) == (400, {"error": "Error Decoding JSON"})
    assert http.put("/v1/repositories/test/idx/", json={"a": 1}).json() == {"error": "Invalid data"}
    search = http.get("/v1/search", params={"q": "idx"})
    assert search.status_code == 200
    assert search.json()["results"] == [{"name": "test/idx", "description": ""}]


def test_disabled_apis_answer_404(tmp_path: Path) -> None:
    with run_serve(tmp_path / "a", enable_v1=False) as no_v1, httpx.Client(base_url=no_v1.url) as http:
        assert http.get("/v1/_ping").status_code == 404
        assert http.get("/_ping").status_code == 404
        assert http.get("/v2/").status_code == 200
    with run_serve(tmp_path / "b", enable_v2=False) as no_v2, httpx.Client(base_url=no_v2.url) as http:
        assert http.get("/v1/_ping").status_code == 200
        v2 = http.get("/v2/")
        assert v2.status_code == 404
        assert "Docker-Distribution-API-Version" not in v2.headers


def test_read_only_refuses_writes(tmp_path: Path) -> None:
    with run_serve(tmp_path / "ro", read_only=True) as server, httpx.Client(base_url=server.url) as http:
        image_id = gen_id()
        refused = http.put(f"/v1/images/{image_id}/json", content=image_json(image_id))
        assert refused.status_code == 405
        assert refused.json() == {"error": "registry is read-only"}


def test_layer_is_shared_with_the_v2_blob_store(serve: RunningServe, http: httpx.Client) -> None:
    image_id = gen_id()
    layer = b"shared layer bytes"
    upload_image(http, image_id, None, layer)
    digest = hashlib.sha256(layer).hexdigest()
    assert serve.root is not None
    assert (serve.root / "blobs" / "sha256" / digest[:2] / digest / "data").read_bytes() == layer
    assert not list((serve.root / "v1").rglob("_uploads/*"))


def test_names_too_long_to_store_are_400_not_500(http: httpx.Client) -> None:
    image_id = gen_id()
    upload_image(http, image_id, None, b"layer")
    # Short enough as names, but their escaped storage form would not fit a file name or the path limit.
    for repo in ("ns/" + "%25" * 100, "ns/" + "\u20ac" * 30, "ns/" + "/".join(["\u20ac" * 20] * 6)):
        for method, path, body in (
            ("PUT", f"/v1/repositories/{repo}/", b"[]"),
            ("GET", f"/v1/repositories/{repo}/tags", b""),
            ("PUT", f"/v1/repositories/{repo}/tags/t", json.dumps(image_id).encode()),
        ):
            response = http.request(method, path, content=body)
            assert (response.status_code, response.json()) == (400, {"error": "Invalid repository name"}), repo
    longest = "ns/" + "\u20ac" * 28  # 28 x "=E2=82=AC" + "_" = 253 characters: still one file name
    assert http.put(f"/v1/repositories/{longest}/tags/t", content=json.dumps(image_id)).status_code == 200
    assert http.get(f"/v1/repositories/{longest}/tags").json() == {"t": image_id}


def test_deeply_nested_json_bodies_are_400_not_500(http: httpx.Client) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    image_id = gen_id()
    for path, message in (
        (f"/v1/images/{image_id}/json", "Invalid JSON"),
        ("/v1/repositories/ns/deep/", "Error Decoding JSON"),
        ("/v1/repositories/ns/deep/images", "Error Decoding JSON"),
        ("/v1/repositories/ns/deep/tags/t", "Invalid data"),
        ("/v1/repositories/ns/deep/properties", "Error Decoding JSON"),
    ):
        response = http.put(path, content=deep)
        assert (response.status_code, response.json()) == (400, {"error": message}), path
    assert http.get("/v1/_ping").status_code == 200


def test_head_of_properties_reads_and_never_writes(http: httpx.Client) -> None:
    assert http.put("/v1/repositories/ns/props/", json=[]).status_code == 200
    private = json.dumps({"access": "private"}).encode()
    assert http.request("HEAD", "/v1/repositories/ns/props/properties", content=private).status_code == 200
    assert http.get("/v1/repositories/ns/props/properties").json() == {"access": "public"}
    assert http.put("/v1/repositories/ns/props/properties", content=private).status_code == 200
    assert http.get("/v1/repositories/ns/props/properties").json() == {"access": "private"}


def test_garbage_requests_never_cause_a_500(http: httpx.Client) -> None:
    rng = random.Random(11)
    done, pending = gen_id(), gen_id()
    upload_image(http, done, None, b"layer")
    assert http.put(f"/v1/images/{pending}/json", content=image_json(pending, done)).status_code == 200
    bodies = [b"", b"{}", b"[]", b"null", b"\xff\xfe", b'"x"', b"[1]", b'[{"id": 5}]', b'{"access": 5}', b"1e999"]
    bodies += [json.dumps(done).encode(), image_json(pending, pending), b"[" * 5000 + b"]" * 5000]
    targets = [f"/v1/images/{image}/{what}" for image in (done, pending) for what in ("json", "layer", "checksum")]
    targets += [f"/v1/repositories/ns/r/{what}" for what in ("", "images", "tags", "tags/t", "tags/t/json", "json")]
    targets += ["/v1/repositories/ns/r/properties", "/v1/repositories/r/auth", "/v1/search?q=%FF", "/v1/users/u/"]
    headers = [{}, {"X-Docker-Checksum-Payload": "sha256:x"}, {"Range": "bytes=0-"}, {"If-Modified-Since": "?"}]
    headers += [{"User-Agent": "docker/ go os/a/b arch"}, {"X-Docker-Token": "true"}]
    for _ in range(200):
        method = rng.choice(["GET", "HEAD", "PUT", "POST", "DELETE"])
        response = http.request(method, rng.choice(targets), content=rng.choice(bodies), headers=rng.choice(headers))
        assert response.status_code < 500, (method, response.request.url, response.text)
    assert http.get(f"/v1/images/{done}/layer").content == b"layer"
