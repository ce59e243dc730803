"""Push defects found by a user trying regtool, each against a real ``regtool serve``.

- a corrupted source blob is refused by the client (exit 5) before anything of it is committed, v2 and v1;
- two pushes of the same image at once share no upload session, and a session that is gone means a fresh one;
- ``--chunk-size`` has a floor, and a registry's ``OCI-Chunk-Min-Length`` raises it;
- a 401 says how to log in.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.manifest import Manifest
from tests.cli.support import assert_user_error, regtool
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, run_serve

LAYER_SIZE = 1 << 20


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RunningServe]:
    with run_serve(tmp_path / "registry") as running:
        yield running


def _flip(path: Path, position: int) -> None:
    data = bytearray(path.read_bytes())
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def _image(tmp_path: Path, count: int = 1) -> tuple[Path, Manifest]:
    manifest = write_random_image(tmp_path / "c1", "1.0", count=count, size=LAYER_SIZE)
    return tmp_path / "c1", manifest


def _stored(server: RunningServe, repository: str, manifest: Manifest) -> dict[str, int]:
    """Status codes of the tag and of each blob in the registry."""
    assert manifest.config is not None
    with httpx.Client(base_url=server.url) as http:
        found = {"tag": http.head(f"/v2/{repository}/manifests/1.0").status_code}
        for desc in (manifest.config, *manifest.layers):
            found[str(desc.digest)] = http.head(f"/v2/{repository}/blobs/{desc.digest}").status_code
    return found


# -- a corrupted source blob ----------------------------------------------------------------------------------


# v1 has no chunked uploads.
@pytest.mark.parametrize(("protocol", "chunk"), [("v2", None), ("v2", "64KiB"), ("v1", None)])
def test_a_corrupt_layer_is_refused_before_it_is_committed(
    tmp_path: Path, server: RunningServe, protocol: str, chunk: str | None
) -> None:
    layout, manifest = _image(tmp_path)
    layer = manifest.layers[0]
    _flip(layout / "blobs" / "sha256" / layer.digest.encoded, layer.size // 2)
    extra = ("--chunk-size", chunk) if chunk else ()
    proc = regtool(
        "push",
        "c1:1.0",
        f"{server.host}/corrupt/c1:1.0",
        "--protocol",
        protocol,
        "-q",
        *extra,
        cwd=tmp_path,
        env={"REGTOOL_STATE_DIR": str(tmp_path / "state")},
    )
    assert_user_error(proc, 5, layer.digest.encoded[:12], "c1")
    if protocol == "v2":
        stored = _stored(server, "corrupt/c1", manifest)
        assert stored["tag"] == 404
        assert stored[str(layer.digest)] == 404
        # The client stopped it: a PUT ?digest= of the bad blob either never went out or was cut off mid-body
        # (499, the client went away); none reached the registry whole, to be refused (400) or stored.
        events = server.requests.events()
        assert all(e.status == 499 for e in events if e.method == "PUT" and layer.digest.encoded in e.query)
        assert not any("/manifests/" in e.path for e in server.requests.events() if e.method == "PUT")
    else:
        with httpx.Client(base_url=server.url) as http:
            assert http.get("/v1/repositories/corrupt/c1/tags").status_code in {404, 200}
            tags = http.get("/v1/repositories/corrupt/c1/tags")
            assert tags.status_code == 404 or "1.0" not in tags.json()


def test_a_corrupt_config_is_an_integrity_error(tmp_path: Path, server: RunningServe) -> None:
    layout, manifest = _image(tmp_path)
    assert manifest.config is not None
    path = layout / "blobs" / "sha256" / manifest.config.digest.encoded
    path.write_bytes(path.read_bytes().replace(b"amd64", b"arm64"))
    proc = regtool("push", "c1:1.0", f"{server.host}/corrupt/cfg:1.0", "--protocol", "v2", "-q", cwd=tmp_path)
    assert_user_error(proc, 5, manifest.config.digest.encoded[:12])
    assert _stored(server, "corrupt/cfg", manifest)["tag"] == 404


def test_a_corrupt_layer_in_a_docker_archive_is_an_integrity_error(tmp_path: Path, server: RunningServe) -> None:
    _image(tmp_path)
    pulled = regtool("push", "c1:1.0", f"{server.host}/src/app:1.0", "-q", cwd=tmp_path)
    assert pulled.returncode == 0, pulled.stderr
    got = regtool("pull", f"{server.host}/src/app:1.0", "app.tar", "--format", "docker-archive", "-q", cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    archive = tmp_path / "app.tar"
    _flip(archive, archive.stat().st_size // 2)
    proc = regtool("push", "app.tar", f"{server.host}/corrupt/tar:1.0", "-q", cwd=tmp_path)
    assert_user_error(proc, 5, "app.tar")
    with httpx.Client(base_url=server.url) as http:
        assert http.head("/v2/corrupt/tar/manifests/1.0").status_code == 404


def test_a_registry_digest_invalid_is_an_integrity_error(tmp_path: Path, server: RunningServe) -> None:
    """What the registry says about bad bytes maps to exit 5 too (here the client is bypassed: a raw PUT)."""
    from regtool.client.v2.api import error_for_response
    from regtool.errors import IntegrityError

    with httpx.Client(base_url=server.url) as http:
        started = http.post("/v2/raw/blob/blobs/uploads/")
        location = started.headers["Location"]
        wrong = "sha256:" + "0" * 64
        response = http.put(location, params={"digest": wrong}, content=b"hello")
    assert response.status_code == 400
    error = error_for_response(response, "upload", response.content)
    assert isinstance(error, IntegrityError), error
    assert error.exit_code == 5
    assert "DIGEST_INVALID" in str(error)


def test_json_of_a_corrupt_push_is_one_error_event(tmp_path: Path, server: RunningServe) -> None:
    layout, manifest = _image(tmp_path)
    _flip(layout / "blobs" / "sha256" / manifest.layers[0].digest.encoded, 10)
    proc = regtool("push", "c1:1.0", f"{server.host}/corrupt/json:1.0", "--json", cwd=tmp_path)
    assert proc.returncode == 5, proc.stderr
    errors = [json.loads(line) for line in proc.stderr.splitlines() if '"error"' in line]
    assert [e["exit_code"] for e in errors if e.get("event") == "error"] == [5]


# -- a damaged docker-archive -----------------------------------------------------------------------------------


def _archive(tmp_path: Path) -> Path:
    from regtool.image.docker_archive import write_docker_archive
    from regtool.image.oci_layout import OciLayout

    layout, manifest = _image(tmp_path, count=2)
    assert manifest.config is not None
    opened = OciLayout.open(layout)
    config = opened.read_blob(manifest.config.digest)
    return write_docker_archive(opened, manifest, config, ["x/app:1"], tmp_path / "app.tar")


@pytest.mark.parametrize("cut", [600, 1030, 1_100_000, -2000])
def test_a_truncated_docker_archive_is_a_format_error(tmp_path: Path, cut: int) -> None:
    from regtool.errors import ImageFormatError
    from regtool.image.docker_archive import read_docker_archive

    data = _archive(tmp_path).read_bytes()
    truncated = tmp_path / "t.tar"
    truncated.write_bytes(data[:cut])
    with pytest.raises(ImageFormatError, match=r"t\.tar"):
        read_docker_archive(truncated).close()


def test_a_truncated_compressed_docker_archive_is_a_format_error(tmp_path: Path) -> None:
    import gzip

    from regtool.errors import ImageFormatError
    from regtool.image.docker_archive import read_docker_archive

    packed = gzip.compress(_archive(tmp_path).read_bytes(), compresslevel=1)
    for cut in (100, len(packed) // 2, len(packed) - 100):
        truncated = tmp_path / "t.tar.gz"
        truncated.write_bytes(packed[:cut])
        with pytest.raises(ImageFormatError, match=r"t\.tar\.gz"):
            read_docker_archive(truncated).close()


def test_push_of_a_truncated_docker_archive_is_one_error_line(tmp_path: Path, server: RunningServe) -> None:
    (tmp_path / "t.tar").write_bytes(_archive(tmp_path).read_bytes()[:1_100_000])
    proc = regtool("push", "t.tar", f"{server.host}/x/trunc:1", "-q", cwd=tmp_path)
    assert_user_error(proc, 2, "t.tar", "truncated")


# -- chunk sizes ------------------------------------------------------------------------------------------------


def test_a_tiny_chunk_size_is_a_usage_error(tmp_path: Path, server: RunningServe) -> None:
    _image(tmp_path)
    proc = regtool("push", "c1:1.0", f"{server.host}/x/chunks:1", "--chunk-size", "1", "-q", cwd=tmp_path)
    assert_user_error(proc, 2, "--chunk-size 1", "64KiB")
    assert not [e for e in server.requests.events() if e.method in {"POST", "PATCH", "PUT"}]


@pytest.mark.anyio
async def test_the_registrys_chunk_min_length_raises_the_chunk_size(tmp_path: Path) -> None:
    """regtool serve sets no OCI-Chunk-Min-Length: a scripted registry that does (and takes chunks of it)."""
    from regtool.client import Client
    from regtool.reference import Reference
    from tests.client.fakeregistry import Reply, fake_registry

    layout, manifest = _image(tmp_path)
    minimum = 400_000
    received: dict[str, list[int]] = {}
    stored: dict[str, bytes] = {}
    data: dict[str, bytearray] = {}
    sessions = iter(range(1_000))
    with fake_registry() as fake:

        def post(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            name = f"s{next(sessions)}"
            for verb in ("PATCH", "PUT"):
                fake.routes[(verb, f"/v2/team/app/blobs/uploads/{name}")] = session
            location = f"/v2/team/app/blobs/uploads/{name}"
            return Reply(202, {"Location": location, "OCI-Chunk-Min-Length": str(minimum)})

        def session(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            name = path.partition("?")[0].rpartition("/")[2]
            if method == "PATCH":
                received.setdefault(name, []).append(len(body))
                data.setdefault(name, bytearray()).extend(body)
                return Reply(
                    202, {"Location": f"/v2/team/app/blobs/uploads/{name}", "Range": f"0-{len(data[name]) - 1}"}
                )
            digest = path.partition("digest=")[2].replace("%3A", ":")
            stored[digest] = bytes(data.pop(name, b"")) + body
            return Reply(201, {"Docker-Content-Digest": digest})

        fake.routes[("POST", "/v2/team/app/blobs/uploads/")] = post
        fake.routes[("PUT", "/v2/team/app/manifests/1.0")] = lambda *_: Reply(201, {})
        async with Client(retries=0, jobs=1) as client:
            await client.push(f"{layout}:1.0", Reference.parse(f"{fake.host}/team/app:1.0"), chunk_size=64 << 10)
    layer = manifest.layers[0]
    (chunks,) = [sizes for sizes in received.values() if sum(sizes) == layer.size]
    assert chunks[:-1] == [minimum] * (len(chunks) - 1)
    assert len(chunks) == -(-layer.size // minimum)
    assert stored[str(layer.digest)] == (layout / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
