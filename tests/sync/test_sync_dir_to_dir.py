"""``regtool sync DIR DIR``: a subset of an air-gap bundle cut into another directory: filters, platform trimming,
referrers, prune, a no-op re-run that writes nothing, a resumed partial, and a corrupt source blob refused with
nothing of it left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

from regtool.client.sync.layout_referrers import layout_referrers
from regtool.digest import Digest
from regtool.image.oci_layout import OciLayout
from tests.cli.support import assert_user_error, in_process
from tests.support.images import BuiltImage, write_image, write_index
from tests.support.serve import run_serve
from tests.sync.test_referrers import SIGNATURE, attach, push_referrer

VERSIONS = ("1.0.0", "1.2.0", "2.0.0", "latest")


def bundle(root: Path) -> dict[str, BuiltImage]:
    """``root/team/app`` with four tags and a three-platform index ``multi``, ``root/lib/base`` with one tag."""
    images = {
        tag: write_image(root / "team/app", tag, [{"base.txt": b"shared base"}, {"app.txt": f"app {tag}".encode()}])
        for tag in VERSIONS
    }
    images["base"] = write_image(root / "lib/base", "1.0.0", [{"base.txt": b"shared base"}])
    write_index(root / "team/app", "multi", [("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")])
    return images


def sync(*args: str) -> dict[str, Any]:
    proc = in_process("sync", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def blobs_verified(layout: OciLayout) -> list[Digest]:
    """Every committed blob of ``layout``, each checked against its name."""
    found = list(layout.blobs.digests())
    for digest in found:
        assert Digest.of(layout.blobs.path(digest).read_bytes(), digest.algorithm) == digest
    return found


def no_partials(root: Path) -> None:
    assert [p for p in root.rglob("*") if p.name.endswith(".partial") or p.name == ".regtool-staging"] == []


def test_filters_choose_what_is_cut_and_a_rerun_writes_nothing(tmp_path: Path) -> None:
    source, cut = tmp_path / "bundle", tmp_path / "cut"
    images = bundle(source)
    first = sync(str(source), str(cut), "--repos", "team/.*", "--semver", ">=1.1", "--exclude", r"2\..*")
    assert first["copied"] == 1 and first["failed"] == 0
    layout = OciLayout.open(cut / "team/app")
    assert layout.ref_names() == ["1.2.0"]
    assert not (cut / "lib/base").exists()
    assert layout.resolve("1.2.0").digest == images["1.2.0"].manifest.digest
    # The image whole, byte for byte, and nothing else.
    assert set(blobs_verified(layout)) == {images["1.2.0"].manifest.digest, *images["1.2.0"].blobs}
    no_partials(cut)

    every = sync(str(source), str(cut), "--tags", r"[0-9.]+|latest")
    assert every["copied"] == 4 and every["skipped"] == 1
    for tag in VERSIONS:
        assert layout.resolve(tag).digest == images[tag].manifest.digest
    assert OciLayout.open(cut / "lib/base").resolve("1.0.0").digest == images["base"].manifest.digest
    blobs_verified(layout)

    index_before = (cut / "team/app/index.json").stat()
    listing_before = sorted(p.relative_to(cut) for p in cut.rglob("*"))
    again = sync(str(source), str(cut), "--tags", r"[0-9.]+|latest")
    assert again["skipped"] == 5 and again["copied"] == 0 and again["bytes"] == 0
    after = (cut / "team/app/index.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (index_before.st_ino, index_before.st_mtime_ns)
    assert sorted(p.relative_to(cut) for p in cut.rglob("*")) == listing_before


def test_a_platform_subset_is_trimmed_between_directories(tmp_path: Path) -> None:
    source, cut = tmp_path / "bundle", tmp_path / "cut"
    multi = write_index(source / "team/app", "multi", [("linux", "amd64"), ("linux", "arm64"), ("linux", "s390x")])
    refused = in_process("sync", str(source), str(cut), "--platform", "linux/arm64", "--preserve-digests")
    assert_user_error(refused, 2, "--preserve-digests", str(multi.manifest.digest))
    assert OciLayout.open(cut / "team/app").entries() == []

    proc = in_process("sync", str(source), str(cut), "--platform", "linux/amd64,linux/s390x")
    assert proc.returncode == 0, proc.stderr
    layout = OciLayout.open(cut / "team/app")
    (entry,) = layout.entries()
    assert entry.digest != multi.manifest.digest
    assert f"digest {multi.manifest.digest} becomes {entry.digest}" in proc.stdout
    index = layout.manifest(entry)
    assert [str(e.platform) for e in index.manifests] == ["linux/amd64", "linux/s390x"]
    kept = [c for c in multi.children if str(c.platform) != "linux/arm64"]
    dropped = next(c for c in multi.children if str(c.platform) == "linux/arm64")
    held = set(blobs_verified(layout))
    assert held == {entry.digest, *(c.manifest.digest for c in kept), *(d for c in kept for d in c.blobs)}
    assert dropped.manifest.digest not in held

    again = in_process("sync", str(source), str(cut), "--platform", "linux/amd64,linux/s390x")
    assert "1 image(s): 1 skipped" in again.stdout


def test_referrers_follow_and_prune_drops_what_the_bundle_lost(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    with run_serve(tmp_path / "registry", enable_v1=False) as server:
        attached = attach(server.url, "team/signed", tag_schema=False)
        assert in_process("sync", f"{server.host}/team/signed", str(first)).returncode == 0
        wanted = {attached.signature, attached.sbom, attached.sbom_signature, attached.cosign}
        source_layout = OciLayout.open(first / "team/signed")
        assert {r.manifest.digest for r in layout_referrers(source_layout, attached.subject, None)} == wanted

        out = sync(str(first), str(second))
        assert out["results"][0]["referrers"] == 4
        layout = OciLayout.open(second / "team/signed")
        found = layout_referrers(layout, attached.subject, None)
        assert {r.manifest.digest for r in found} == wanted
        assert {r.tag for r in found if r.tag} == {f"sha256-{attached.subject.encoded}.sig"}
        blobs_verified(layout)
        # --artifact-type chooses among them: the SBOM only.
        sboms = sync(str(first), str(tmp_path / "sboms"), "--artifact-type", "application/spdx+json")
        assert sboms["results"][0]["referrers"] == 1

        # A referrer attached later by the API alone reaches the bundle, then the cut, where a recheck lists it
        # first (between directories a recheck reads files only: no request).
        with httpx.Client(base_url=server.url, timeout=30) as client:
            late = push_referrer(client, "team/signed", SIGNATURE, b"late", attached.image.manifest.descriptor())
        assert sync(f"{server.host}/team/signed", str(first), "--referrers-recheck")["referrers"] == 1
        dry = sync(str(first), str(second), "--referrers-recheck", "--dry-run")
        assert [m.split()[0] for m in dry["results"][0]["referrers_missing"]] == [str(late.digest)]
        rechecked = sync(str(first), str(second), "--referrers-recheck")
        assert rechecked["referrers"] == 1 and rechecked["recheck_requests"] == 0
        assert late.digest in {r.manifest.digest for r in layout_referrers(layout, attached.subject, None)}

    # The bundle loses a tag: prune drops its ref from the cut, after a dry run that shows it.
    source_layout.add_manifest(source_layout.resolve("1.0"), ref_name="old")
    assert sync(str(first), str(second))["copied"] == 1
    source_layout.remove_ref("old")
    dry = in_process("sync", str(first), str(second), "--prune", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert [line.split()[3] for line in dry.stdout.splitlines() if line.startswith("would-prune")] == [
        f"{second / 'team/signed'}:old"
    ]
    assert "old" in layout.ref_names()
    pruned = sync(str(first), str(second), "--prune")
    assert pruned["pruned"] == 1 and pruned["skipped"] == 1
    assert "old" not in layout.ref_names() and "1.0" in layout.ref_names()
    # Referrers are never pruned: they follow their subject.
    assert {r.manifest.digest for r in layout_referrers(layout, attached.subject, None)} == {*wanted, late.digest}


def test_a_partial_left_by_an_interrupted_copy_is_continued(tmp_path: Path) -> None:
    source, cut = tmp_path / "bundle", tmp_path / "cut"
    image = write_image(source / "team/app", "1.0", [{"big.bin": os.urandom(3 << 20)}])
    layer = image.manifest.layers[0]
    data = image.blobs[layer.digest]
    staging = cut / "team/app/.regtool-staging"
    OciLayout.open(cut / "team/app", create=True)
    staging.mkdir(parents=True)
    (staging / f"{layer.digest.algorithm}-{layer.digest.encoded}.partial").write_bytes(data[: 1 << 20])

    out = sync(str(source), str(cut))
    total = sum(len(b) for b in image.blobs.values())
    # The layer's first MiB came from the partial: only the rest was copied.
    assert out["bytes"] == total - (1 << 20)
    layout = OciLayout.open(cut / "team/app")
    assert layout.resolve("1.0").digest == image.manifest.digest
    assert layout.blobs.path(layer.digest).read_bytes() == data
    no_partials(cut)


def test_a_corrupt_source_blob_is_refused_and_nothing_of_it_is_left(tmp_path: Path) -> None:
    source, cut = tmp_path / "bundle", tmp_path / "cut"
    good = write_image(source / "team/app", "1.0", [{"a.txt": b"good"}])
    bad = write_image(source / "team/app", "2.0", [{"b.txt": b"will be corrupted" * 1000}])
    layer = bad.manifest.layers[0].digest
    path = source / "team/app/blobs" / layer.algorithm / layer.encoded
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    path.write_bytes(bytes(damaged))

    proc = in_process("sync", str(source), str(cut), "--tags", "2.0")
    line = assert_user_error(proc, 5, str(source / "team/app"), str(layer), "digest mismatch")
    assert "Traceback" not in proc.stderr and line.count("\n") == 0
    layout = OciLayout.open(cut / "team/app")
    assert layout.ref_names() == []
    assert not layout.blobs.has(layer)
    no_partials(cut)

    # --keep-going: the good tag is cut, the bad one named, exit code 5.
    going = in_process("sync", str(source), str(cut), "--keep-going")
    assert going.returncode == 5, going.stderr
    assert f"{source / 'team/app'}:2.0" in going.stderr
    assert layout.ref_names() == ["1.0"]
    assert layout.resolve("1.0").digest == good.manifest.digest
    assert not layout.blobs.has(layer)
    no_partials(cut)
