"""A pull into an OCI layout keeps what is not its own: another pull's image, another repository's tag, the
directory the user made; it repairs a damaged blob; and a destination it cannot write is one error naming it,
with nothing half made left behind. Against a real ``regtool serve``; the full disk is a real limit
(``RLIMIT_FSIZE``) on a real ``regtool pull``."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import ImageFormatError, IntegrityError
from regtool.image.oci_layout import OciLayout
from regtool.reference import Reference
from tests.support.faultproxy import Fault, run_fault_proxy
from tests.support.images import write_random_image
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


async def _push(serve: RunningServe, tmp_path: Path, name: str, tag: str, size: int = 300_000) -> str:  # noqa: F811
    layout = tmp_path / f"src-{name.replace('/', '-')}-{tag}"
    write_random_image(layout, tag, count=2, size=size)
    async with Client() as client:
        pushed = await client.push(f"{layout}:{tag}", Reference.parse(f"{serve.host}/{name}:{tag}"))
    return str(pushed.digest)


def _tags(dest: Path) -> list[tuple[str | None, str | None]]:
    entries = json.loads((dest / "index.json").read_text())["manifests"]
    return [
        (e["annotations"].get("org.opencontainers.image.ref.name"), e["annotations"].get("io.containerd.image.name"))
        for e in entries
    ]


async def test_the_same_tag_of_another_repository_is_kept_beside_the_first(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    app = await _push(serve, tmp_path, "team/app", "1.0")
    db = await _push(serve, tmp_path, "team/db", "1.0")
    dest = tmp_path / "images"
    async with Client() as client:
        await client.pull(Reference.parse(f"{serve.host}/team/app:1.0"), dest)
        await client.pull(Reference.parse(f"{serve.host}/team/db:1.0"), dest)
    layout = OciLayout.open(dest)
    assert _tags(dest) == [("1.0", f"{serve.host}/team/app:1.0"), ("1.0", f"{serve.host}/team/db:1.0")]
    assert str(layout.resolve(f"{serve.host}/team/app:1.0").digest) == app
    assert str(layout.resolve(f"{serve.host}/team/db:1.0").digest) == db
    with pytest.raises(ImageFormatError, match=r"holds 2 images tagged '1.0'; pick one of: .*team/app:1.0, .*db:1.0"):
        layout.resolve("1.0")


async def test_pulling_a_tag_again_after_it_moved_replaces_its_entry(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _push(serve, tmp_path, "team/app", "1.0")
    dest = tmp_path / "images"
    async with Client() as client:
        await client.pull(Reference.parse(f"{serve.host}/team/app:1.0"), dest)
        moved = await _push(serve, tmp_path / "again", "team/app", "1.0")
        await client.pull(Reference.parse(f"{serve.host}/team/app:1.0"), dest)
    assert _tags(dest) == [("1.0", f"{serve.host}/team/app:1.0")]
    assert str(OciLayout.open(dest).resolve("1.0").digest) == moved


async def test_a_layout_of_several_images_names_the_untagged_by_full_digest(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    digest = await _push(serve, tmp_path, "team/app", "1")
    await _push(serve, tmp_path / "two", "team/app", "2")
    dest = tmp_path / "images"
    async with Client() as client:
        await client.pull(Reference.parse(f"{serve.host}/team/app@{digest}"), dest)
        await client.pull(Reference.parse(f"{serve.host}/team/app:2"), dest)
    layout = OciLayout.open(dest)
    with pytest.raises(ImageFormatError, match=f"pick one of: {digest}, 2$"):
        layout.resolve()
    assert str(layout.resolve(digest).digest) == digest


async def test_a_damaged_blob_is_replaced_by_the_verified_one(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _push(serve, tmp_path, "team/app", "1", size=2_000_000)
    dest = tmp_path / "images"
    ref = Reference.parse(f"{serve.host}/team/app:1")
    async with Client() as client:
        await client.pull(ref, dest)
        layout = OciLayout.open(dest)
        layer = layout.manifest(layout.resolve("1")).layers[0]
        path = dest / "blobs" / "sha256" / layer.digest.encoded
        with path.open("r+b") as cut:
            cut.truncate(1000)
        await client.pull(ref, dest)
    data = path.read_bytes()
    assert len(data) == layer.size
    assert "sha256:" + hashlib.sha256(data).hexdigest() == str(layer.digest)


async def test_a_failed_pull_into_a_directory_the_user_made_leaves_the_directory(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _push(serve, tmp_path, "team/app", "1", size=2_000_000)
    dest = tmp_path / "images"
    dest.mkdir(mode=0o750)
    with run_fault_proxy(serve.port) as proxy:
        proxy.add(Fault.flip(at=100_000, path=r"/blobs/sha256:", times=10))
        async with Client(retries=0) as client:
            with pytest.raises(IntegrityError):
                await client.pull(Reference.parse(f"{proxy.host}/team/app:1"), dest)
    assert dest.is_dir()
    assert [p.name for p in dest.iterdir() if p.name != ".regtool-staging"] == []


async def test_undoing_a_failed_pull_leaves_an_image_another_pull_put_in_the_layout_meanwhile(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    # The failed pull found the directory new; by the time it failed, another pull had finished into it.
    digest = await _push(serve, tmp_path, "team/app", "2")
    dest = tmp_path / "images"
    async with Client() as client:
        await client.pull(Reference.parse(f"{serve.host}/team/app:2"), dest)
    assert OciLayout.open(dest).take_back_new(existed=False) == 0
    assert str(OciLayout.open(dest).resolve("2").digest) == digest
    assert (dest / "blobs" / "sha256" / digest.split(":")[1]).is_file()


def _pull_within_file_size(limit: int, ref: str, dest: Path) -> subprocess.CompletedProcess[str]:
    """``regtool pull`` whose files may not grow beyond ``limit`` bytes: a write past it fails with EFBIG, as a
    full disk fails with ENOSPC."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "regtool", "pull", "-q", ref, str(dest)],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("REGTOOL_")},
        preexec_fn=limited,
        check=False,
    )


async def test_a_destination_that_fills_up_is_one_error_naming_it(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _push(serve, tmp_path, "team/app", "1", size=2_000_000)
    dest = tmp_path / "images"
    done = _pull_within_file_size(1 << 20, f"{serve.host}/team/app:1", dest)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write to {dest}: File too large")
    assert len(done.stderr.strip().splitlines()) == 1
    # A new layout is taken back but for the partials kept for a resume.
    assert sorted(p.name for p in dest.iterdir()) == [".regtool-staging"]


async def test_a_layout_that_cannot_be_made_whole_is_not_left_half_made(
    serve: RunningServe,  # noqa: F811
    tmp_path: Path,
) -> None:
    await _push(serve, tmp_path, "team/app", "1")
    dest = tmp_path / "images"
    done = _pull_within_file_size(0, f"{serve.host}/team/app:1", dest)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: cannot write to {dest}: File too large")
    assert not dest.exists()
