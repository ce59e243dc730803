"""A registry filled by regtool pushes with every case the collector must tell apart, and what each mode keeps.

``app``: ``app:1`` (A) and ``app:2`` (B) share a layer; C was ``app:2`` before B replaced it (untagged); sigA,
sigC and sigD are referrers of A, C and D, and D itself was deleted by digest (sigD's subject is dead); one
blob was uploaded and never used. ``multi:1`` is an index of two images. ``gone``'s only image lost its tag.
D and gone's image use the layer A and B share too: it stays when they go.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.manifest import parse_manifest
from tests.cli.support import in_process
from tests.server.helpers import image_manifest, push_blob, push_manifest
from tests.support.images import BuiltImage, write_image, write_index

__all__ = ["Scene", "fill"]


@dataclass
class Scene:
    host: str
    tags: dict[str, Digest] = field(default_factory=dict)  # "repo:tag" -> manifest digest
    blobs: dict[Digest, bytes] = field(default_factory=dict)  # every blob pushed (manifests too)
    live_default: set[Digest] = field(default_factory=set)  # blobs kept without --delete-untagged
    live_untagged: set[Digest] = field(default_factory=set)  # blobs kept with --delete-untagged
    referrers: dict[str, Digest] = field(default_factory=dict)  # "sigA" -> its digest
    untagged: dict[str, BuiltImage] = field(default_factory=dict)  # "app" -> C, "gone" -> gone's image

    def freed(self, live: set[Digest]) -> int:
        return sum(len(data) for digest, data in self.blobs.items() if digest not in live)


def _image_blobs(image: BuiltImage) -> dict[Digest, bytes]:
    return {**image.blobs, image.manifest.digest: image.manifest.raw}


def _push(host: str, tmp: Path, name: str, ref: str, layers: list[dict[str, bytes]]) -> BuiltImage:
    image = write_image(tmp / name, "t", layers)
    done = in_process("push", f"{tmp / name}:t", f"{host}/{ref}")
    assert done.returncode == 0, done.stderr
    return image


def _push_referrer(client: httpx.Client, repo: str, subject: BuiltImage, label: str) -> dict[Digest, bytes]:
    config = json.dumps({"signed": label}).encode()
    layer = f"signature of {label}".encode()
    for blob in (config, layer):
        push_blob(client, repo, blob)
    descriptor = subject.manifest.descriptor().to_json()
    raw = image_manifest(config, [layer], subject=descriptor, artifact_type="application/vnd.example.sig")
    digest = Digest.of(raw)
    assert push_manifest(client, repo, str(digest), raw, mt.OCI_MANIFEST).status_code == 201
    return {Digest.of(config): config, Digest.of(layer): layer, digest: raw}


def fill(url: str, host: str, tmp: Path) -> Scene:
    scene = Scene(host)
    shared = {"base/os-release": b"shared base layer " * 50}
    a = _push(host, tmp, "a", "app:1", [shared, {"a.txt": b"only in A"}])
    c = _push(host, tmp, "c", "app:2", [{"c.txt": b"only in C"}])
    b = _push(host, tmp, "b", "app:2", [shared, {"b.txt": b"only in B"}])
    d = _push(host, tmp, "d", "app:d", [shared, {"d.txt": b"only in D"}])
    g = _push(host, tmp, "g", "gone:1", [shared, {"g.txt": b"only in gone"}])
    index = write_index(tmp / "multi", "t")
    pushed = in_process("push", f"{tmp / 'multi'}:t", f"{host}/multi:1")
    assert pushed.returncode == 0, pushed.stderr
    with httpx.Client(base_url=url) as client:
        sig_a = _push_referrer(client, "app", a, "A")
        sig_c = _push_referrer(client, "app", c, "C")
        sig_d = _push_referrer(client, "app", d, "D")
        orphan = b"uploaded, never used " * 40
        push_blob(client, "app", orphan)
        assert client.delete(f"/v2/app/manifests/{d.manifest.digest}").status_code == 202
        assert client.delete("/v2/gone/manifests/1").status_code == 202
    for image in (a, b, c, d, g):
        scene.blobs.update(_image_blobs(image))
    for child in index.children:
        scene.blobs.update(_image_blobs(child))
    scene.blobs[index.manifest.digest] = index.manifest.raw
    for blobs in (sig_a, sig_c, sig_d):
        scene.blobs.update(blobs)
    scene.blobs[Digest.of(orphan)] = orphan
    scene.untagged = {"app": c, "gone": g}
    scene.tags = {"app:1": a.manifest.digest, "app:2": b.manifest.digest, "multi:1": index.manifest.digest}
    scene.referrers = {name: _manifest_digest(blobs) for name, blobs in (("A", sig_a), ("C", sig_c), ("D", sig_d))}
    tagged = set(_image_blobs(a)) | set(_image_blobs(b)) | set(sig_a) | {index.manifest.digest}
    for child in index.children:
        tagged |= set(_image_blobs(child))
    scene.live_untagged = tagged
    scene.live_default = tagged | set(_image_blobs(c)) | set(sig_c) | set(_image_blobs(g))
    return scene


def _manifest_digest(blobs: dict[Digest, bytes]) -> Digest:
    for digest, data in blobs.items():
        try:
            if parse_manifest(data, mt.OCI_MANIFEST).subject is not None:
                return digest
        except ValueError:
            continue
    raise AssertionError("no referrer among the blobs")
