"""Pull defects: what a failed pull leaves behind, a damaged local partial, and an unwritable destination."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from regtool import mediatypes as mt
from regtool.image.blobstore import STAGING_DIR
from regtool.image.oci_layout import OciLayout
from tests.cli.support import Reply, assert_user_error, in_process, regtool, scripted_server
from tests.support.images import image_manifest, write_random_image
from tests.support.serve import run_serve

V2_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


def _tampered_routes(stall_other: bool) -> tuple[dict[str, Reply], str]:
    image = image_manifest([{"a.txt": b"original content\n" * 50}, {"b.txt": b"other layer\n" * 5000}])
    bad, other = image.layers
    routes = {
        "/v2/": Reply(200, b"{}", V2_HEADERS),
        "/v2/team/app/manifests/1.0": Reply(200, image.manifest.raw, {**V2_HEADERS, "Content-Type": mt.OCI_MANIFEST}),
        f"/v2/team/app/blobs/{image.config_digest}": Reply(200, image.config, V2_HEADERS),
        # Without a stalled other blob, the bad one is held back a little, so every other blob is complete (and
        # nothing of it partial) by the time the bad one fails.
        f"/v2/team/app/blobs/{image.layer_digests[0]}": Reply(
            200, bytes([bad[0] ^ 0xFF]) + bad[1:], V2_HEADERS, stall=0.0 if stall_other else 0.5
        ),
        f"/v2/team/app/blobs/{image.layer_digests[1]}": Reply(
            200, other, V2_HEADERS, stall=3.0 if stall_other else 0.0
        ),
    }
    return routes, image.layer_digests[0].encoded[:12]


def test_an_integrity_failure_into_a_new_dest_leaves_nothing(tmp_path: Path) -> None:
    routes, short = _tampered_routes(stall_other=False)
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", "-q", cwd=tmp_path)
    assert_user_error(proc, 5, short)
    assert not (tmp_path / "out").exists()


def test_partials_of_other_blobs_stay_and_the_error_says_so(tmp_path: Path) -> None:
    routes, short = _tampered_routes(stall_other=True)
    with scripted_server(routes, Reply(404, b"", V2_HEADERS)) as server:
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "--protocol", "v2", "-q", cwd=tmp_path)
    line = assert_user_error(proc, 5, short)
    out = tmp_path / "out"
    if out.exists():
        # Only the staging area: no oci-layout, no empty index.json, no blob of this run.
        assert [p.name for p in out.iterdir()] == [STAGING_DIR]
        assert "kept" in line and "resume" in line
    else:
        assert "kept" not in line


def test_a_damaged_local_partial_is_fetched_again_from_zero(tmp_path: Path) -> None:
    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=1 << 20)
    layer = manifest.layers[0]
    with run_serve(tmp_path / "registry") as server:
        pushed = regtool("push", "src:1.0", f"{server.host}/team/app:1.0", "-q", cwd=tmp_path)
        assert pushed.returncode == 0, pushed.stderr
        # What an interrupted pull left, but with its bytes damaged on disk since.
        dest = OciLayout.open(tmp_path / "out", create=True)
        good = (tmp_path / "src" / "blobs" / "sha256" / layer.digest.encoded).read_bytes()
        partial = bytearray(good[:300_000])
        partial[1000] ^= 0xFF
        staging = dest.path / STAGING_DIR
        staging.mkdir()
        (staging / f"sha256-{layer.digest.encoded}.partial").write_bytes(bytes(partial))
        proc = regtool("pull", f"{server.host}/team/app:1.0", "out", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert dest.blobs.path(layer.digest).read_bytes() == good
    assert '"event":"retry"' in proc.stderr.replace(" ", "")


def test_an_unwritable_docker_archive_dest_names_the_dest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root writes anywhere and a test cannot mount a read-only file system: the layout's creation fails as it
    would there (EROFS on the work directory beside DEST)."""
    from regtool.client.v2 import pull as v2pull

    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=1000)
    assert manifest.layers
    real_open = v2pull.OciLayout.open

    def read_only(path: Path, create: bool = False, *, durable: bool = True) -> OciLayout:
        if create:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, create, durable=durable)

    with run_serve(tmp_path / "registry") as server:
        pushed = in_process("push", f"{tmp_path / 'src'}:1.0", f"{server.host}/team/app:1.0", "-q")
        assert pushed.returncode == 0, pushed.stderr
        monkeypatch.setattr(v2pull.OciLayout, "open", staticmethod(read_only))
        dest = tmp_path / "app.tar"
        proc = in_process("pull", f"{server.host}/team/app:1.0", str(dest), "--format", "docker-archive", "-q")
    line = assert_user_error(proc, 2, str(dest), "Read-only file system")
    assert "regtool-pull" not in line
