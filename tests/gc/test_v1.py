"""v1 images pushed through serve's v1 API: those no v1 tag reaches go (their directories, then their blobs),
those a tag's ancestry reaches or written within the grace period stay, and a v1 push re-using an unreachable
image in the middle of a collection keeps it."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from regtool.digest import Digest
from regtool.server.gc import GcOptions, collect_garbage
from regtool.server.gc.collector import Phase
from regtool.server.gc.inventory import stored_blobs
from regtool.server.storage.registry import Registry
from tests.cli.support import in_process
from tests.gc.conftest import serve_on
from tests.support.serve import RunningServe, run_serve
from tests.v1.images import compress, layer_tar

GRACE = 1.0  # see test_reuse.py: SeaweedFS keeps whole seconds


@dataclass(frozen=True)
class V1Image:
    id: str
    layer: bytes

    @property
    def digest(self) -> Digest:
        return Digest.of(self.layer)


def push_image(client: httpx.Client, layer: bytes, parent: V1Image | None = None) -> V1Image:
    """One image through the v1 API as the engine pushes it: its JSON, its layer, the payload checksum."""
    image_id = secrets.token_hex(32)
    fields: dict[str, str] = {"id": image_id, "created": "2014-01-01T00:00:00Z"}
    if parent is not None:
        fields["parent"] = parent.id
    raw = json.dumps(fields).encode()
    assert client.put(f"/v1/images/{image_id}/json", content=raw).status_code == 200
    assert client.put(f"/v1/images/{image_id}/layer", content=layer).status_code == 200
    checksum = "sha256:" + hashlib.sha256(raw + b"\n" + layer).hexdigest()
    done = client.put(f"/v1/images/{image_id}/checksum", headers={"X-Docker-Checksum-Payload": checksum})
    assert done.status_code == 200, done.text
    return V1Image(image_id, layer)


def tag(client: httpx.Client, repository: str, name: str, image: V1Image, *parents: V1Image) -> None:
    """Tag ``image`` as the engine's push ends: the repository's image list, then the tag."""
    listed = [{"id": i.id} for i in (image, *parents)]
    assert client.put(f"/v1/repositories/{repository}/", json=listed).status_code == 200
    tagged = client.put(f"/v1/repositories/{repository}/tags/{name}", content=json.dumps(image.id))
    assert tagged.status_code == 200, tagged.text


def assert_served(client: httpx.Client, *images: V1Image) -> None:
    for image in images:
        assert client.get(f"/v1/images/{image.id}/layer").content == image.layer


def assert_gone(client: httpx.Client, *images: V1Image) -> None:
    for image in images:
        assert client.get(f"/v1/images/{image.id}/json").status_code == 404


def blobs_of(server: RunningServe) -> set[Digest]:
    registry = server.app.state.context.registry
    assert isinstance(registry, Registry)
    return {digest for digest, _ in stored_blobs(registry.driver)}


def test_images_no_v1_tag_reaches_go_after_their_tag(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as client:
        base = push_image(client, compress(layer_tar(0), "gzip"))
        # xz: the v2 API shows this layer as its decompressed tar, a blob of its own that must go with it.
        dropped = push_image(client, compress(layer_tar(1), "xz"), base)
        kept = push_image(client, compress(layer_tar(2), "gzip"), base)
        tag(client, "team/app", "1", dropped, base)
        tag(client, "team/keep", "1", kept, base)
        decompressed = Digest.of(layer_tar(1))
        assert decompressed in blobs_of(server)
        assert client.delete("/v1/repositories/team/app/tags/1").status_code == 200

        done = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--delete-untagged", "--json")
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert [r["what"] for r in report["removed"] if r["kind"] == "v1-image"] == [dropped.id]
        removed_blobs = {Digest.parse(r["what"]) for r in report["removed"] if r["kind"] == "blob"}
        assert {dropped.digest, decompressed} <= removed_blobs
        assert not {dropped.digest, decompressed} & blobs_of(server)
        assert_gone(client, dropped)
        # The other tag's ancestry keeps the shared parent: the image pulls over v1 and over v2.
        assert_served(client, base, kept)
        assert client.get(f"/v1/images/{kept.id}/ancestry").json() == [kept.id, base.id]
        for protocol in ("v1", "v2"):
            pulled = in_process("pull", "--protocol", protocol, f"{server.host}/team/keep:1", str(tmp_path / protocol))
            assert pulled.returncode == 0, pulled.stderr

        again = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--delete-untagged")
        assert (again.returncode, again.stdout) == (0, "nothing to remove\n")


def test_untagged_images_stay_for_the_grace_period(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    with run_serve(root) as server, httpx.Client(base_url=server.url) as client:
        parent = push_image(client, compress(layer_tar(3), "gzip"))
        child = push_image(client, compress(layer_tar(4), "gzip"), parent)  # pushed, its tag not yet written
        kept = in_process("serve", "gc", "--root", str(root), "--dry-run", "--json")
        assert kept.returncode == 0, kept.stderr
        assert json.loads(kept.stdout)["removed"] == []

        dry = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        would = {(r["kind"], r["what"]) for r in json.loads(dry.stdout)["removed"]}
        assert {("v1-image", parent.id), ("v1-image", child.id)} <= would
        assert {("blob", str(parent.digest)), ("blob", str(child.digest))} <= would
        assert_served(client, parent, child)

        done = in_process("serve", "gc", "--root", str(root), "--delay", "0")
        assert done.returncode == 0, done.stderr
        assert f"removed v1 image {parent.id}\n" in done.stdout
        assert f"removed v1 image {child.id}\n" in done.stdout
        assert_gone(client, parent, child)
        assert not {parent.digest, child.digest} & blobs_of(server)


# On s3 the v1 layer is read back through an object reader that cannot seek: the v2 mirror of a v1 tag sniffs
# its compression without seeking back.
@pytest.fixture(params=["filesystem", "inmemory", "s3"])
def v1_serve(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningServe]:
    with serve_on(request.param, request, tmp_path) as server:
        yield server


@pytest.mark.parametrize("reuse", ["child", "tag"])
def test_an_image_reused_after_the_mark_stays(v1_serve: RunningServe, reuse: str) -> None:
    with httpx.Client(base_url=v1_serve.url) as client:
        old = push_image(client, compress(layer_tar(5), "gzip"))
        # Tagged once, then untagged: what the v2 API needs of it is kept beside it, and a later tag of a child
        # writes nothing into its directory.
        tag(client, "team/app", "1", old)
        assert client.delete("/v1/repositories/team/app/tags/1").status_code == 200
        time.sleep(GRACE + 0.1)
        pushed: list[V1Image] = []

        def push_on(phase: Phase) -> None:
            # The v1 images are marked with the links, and their directories go right after them.
            if phase == "links":
                if reuse == "child":
                    pushed.append(push_image(client, compress(layer_tar(6), "gzip"), old))
                    tag(client, "team/app", "2", pushed[0], old)
                else:
                    tag(client, "team/app", "old", old)

        registry = v1_serve.app.state.context.registry
        report = collect_garbage(registry, GcOptions(delay=GRACE), on_phase=push_on)
        assert [r for r in report.removed if r.kind in ("v1-image", "blob")] == []
        assert_served(client, old, *pushed)
        top = pushed[0].id if pushed else old.id
        assert client.get(f"/v1/images/{top}/ancestry").json() == [*(p.id for p in pushed), old.id]
        assert old.digest in blobs_of(v1_serve)
