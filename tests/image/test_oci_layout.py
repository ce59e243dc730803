from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError, IntegrityError, NotFoundError
from regtool.image.oci_layout import IMAGE_NAME_ANNOTATION, REF_NAME_ANNOTATION, OciLayout
from tests.conftest import require_binary
from tests.image.builders import make_image, make_layout, store_image


def test_create_writes_the_spec_files(tmp_path: Path) -> None:
    layout = OciLayout.open(tmp_path / "out", create=True)
    assert json.loads((tmp_path / "out" / "oci-layout").read_bytes()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((tmp_path / "out" / "index.json").read_bytes())
    assert index == {"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": []}
    assert (tmp_path / "out" / "blobs" / "sha256").is_dir()
    assert layout.entries() == []
    assert layout.blobs.root == tmp_path / "out"


def test_open_existing_and_reopen_with_create_keeps_it(tmp_path: Path) -> None:
    image = make_image()
    make_layout(tmp_path, image)
    again = OciLayout.open(tmp_path, create=True)
    assert [d.digest for d in again.entries()] == [image.manifest.digest]
    assert OciLayout.open(tmp_path).resolve("latest").digest == image.manifest.digest


def test_partly_filled_layout_reports_what_it_has(tmp_path: Path) -> None:
    image = make_image(3)
    layout = OciLayout.open(tmp_path, create=True)
    layout.blobs.put_bytes(None, image.layers[0])
    again = OciLayout.open(tmp_path, create=True)
    assert [again.blobs.has(d.digest) for d in image.manifest.layers] == [True, False, False]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: None, "no oci-layout file"),
        (lambda p: (p / "oci-layout").write_text("{nope"), "oci-layout: not valid JSON"),
        (lambda p: (p / "oci-layout").write_text('{"imageLayoutVersion": "2.0.0"}'), "unsupported imageLayoutVersion"),
        (lambda p: (p / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}'), "no index.json"),
    ],
)
def test_bad_layouts_are_named(tmp_path: Path, setup: object, message: str) -> None:
    setup(tmp_path)  # type: ignore[operator]
    with pytest.raises(ImageFormatError, match=message) as info:
        OciLayout.open(tmp_path)
    assert str(tmp_path) in str(info.value)


@pytest.mark.parametrize(
    ("index", "message"),
    [
        (b"[]", "not an image index"),
        (b"{", "not valid JSON"),
        (b'{"schemaVersion": 2}', "no manifests list"),
        (b'{"schemaVersion": 2, "manifests": [{"mediaType": "x", "size": 1, "digest": "md5:00"}]}', "manifests"),
    ],
)
def test_bad_index_json(tmp_path: Path, index: bytes, message: str) -> None:
    OciLayout.open(tmp_path, create=True)
    (tmp_path / "index.json").write_bytes(index)
    with pytest.raises(ImageFormatError, match=message):
        OciLayout.open(tmp_path)


def test_missing_directory_and_file_and_non_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ImageFormatError, match="no such directory"):
        OciLayout.open(tmp_path / "absent")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ImageFormatError, match="it is a file"):
        OciLayout.open(tmp_path / "file", create=True)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(ImageFormatError, match=r"not empty \(notes.txt\)"):
        OciLayout.open(tmp_path / "busy", create=True)


def test_retagging_replaces_the_entry(tmp_path: Path) -> None:
    one, two = make_image(seed="one"), make_image(seed="two")
    layout = make_layout(tmp_path, one, "v1")
    store_image(layout, two, "v2")
    store_image(layout, two, "v1")  # v1 now points at image two
    index = json.loads((tmp_path / "index.json").read_bytes())
    assert [(e["annotations"][REF_NAME_ANNOTATION], e["digest"]) for e in index["manifests"]] == [
        ("v2", str(two.manifest.digest)),
        ("v1", str(two.manifest.digest)),
    ]
    assert index["manifests"][1]["annotations"][IMAGE_NAME_ANNOTATION] == "example.com/test:v1"
    assert index["manifests"][1]["mediaType"] == mt.OCI_MANIFEST
    assert index["manifests"][1]["size"] == len(two.manifest.raw)
    assert layout.ref_names() == ["v2", "v1"]
    assert layout.resolve("v1").digest == two.manifest.digest


def test_untagged_entries_are_not_duplicated(tmp_path: Path) -> None:
    image = make_image()
    layout = make_layout(tmp_path, image, None)
    layout.add_manifest(image.manifest.descriptor())
    assert len(layout.entries()) == 1
    assert layout.resolve(None).digest == image.manifest.digest


def test_add_manifest_needs_the_blob(tmp_path: Path) -> None:
    layout = OciLayout.open(tmp_path, create=True)
    with pytest.raises(ImageFormatError, match="not in blobs"):
        layout.add_manifest(make_image().manifest.descriptor(), "x")


def test_resolve(tmp_path: Path) -> None:
    one, two = make_image(seed="one"), make_image(seed="two")
    layout = OciLayout.open(tmp_path, create=True)
    with pytest.raises(NotFoundError, match="has no images"):
        layout.resolve(None)
    store_image(layout, one, "a")
    assert layout.resolve(None).digest == one.manifest.digest
    store_image(layout, two, "b")
    with pytest.raises(ImageFormatError, match="holds 2 images; pick one of: a, b"):
        layout.resolve(None)
    assert layout.resolve("b").digest == two.manifest.digest
    assert layout.resolve(str(one.manifest.digest)).digest == one.manifest.digest
    with pytest.raises(NotFoundError, match=r"no image 'c' in OCI layout .* \(it has: a, b\)"):
        layout.resolve("c")


def test_manifest_reads_and_checks(tmp_path: Path) -> None:
    image = make_image()
    layout = make_layout(tmp_path, image)
    manifest = layout.manifest(layout.resolve("latest"))
    assert manifest.raw == image.manifest.raw
    assert layout.read_blob(image.manifest.config.digest) == image.config  # type: ignore[union-attr]
    path = layout.blobs.path(image.manifest.digest)
    path.write_bytes(image.manifest.raw.replace(b'"size"', b'"size" ', 1))
    with pytest.raises(IntegrityError, match="digest mismatch"):
        layout.manifest(image.manifest.digest)


def test_concurrent_tagging_keeps_every_tag(tmp_path: Path) -> None:
    import threading

    image = make_image()
    layout = make_layout(tmp_path, image, "t0")
    threads = [
        threading.Thread(target=layout.add_manifest, args=(image.manifest.descriptor(), f"t{i}")) for i in range(1, 9)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(layout.ref_names()) == sorted(f"t{i}" for i in range(9))


def test_index_of_an_index(tmp_path: Path) -> None:
    amd, arm = make_image(architecture="amd64"), make_image(architecture="arm64")
    layout = OciLayout.open(tmp_path, create=True)
    for image in (amd, arm):
        store_image(layout, image, None)
    children = [
        {**img.manifest.descriptor().to_json(), "platform": {"architecture": arch, "os": "linux"}}
        for img, arch in ((amd, "amd64"), (arm, "arm64"))
    ]
    raw = json.dumps({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": children}).encode()
    digest = layout.blobs.put_bytes(None, raw)
    from regtool.manifest import Descriptor

    layout.add_manifest(Descriptor(mt.OCI_INDEX, digest, len(raw)), "multi")
    index = layout.manifest(layout.resolve("multi"))
    assert index.is_index
    assert [m.platform.architecture for m in index.manifests if m.platform] == ["amd64", "arm64"]
    assert layout.resolve("multi").digest == Digest.of(raw)


@pytest.mark.interop
def test_skopeo_inspects_the_layout(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    image = make_image(3)
    make_layout(tmp_path / "lay", image, "1.0")
    out = subprocess.run(
        [skopeo, "inspect", f"oci:{tmp_path / 'lay'}:1.0"], capture_output=True, check=True, timeout=60
    )
    info = json.loads(out.stdout)
    assert info["Digest"] == str(image.manifest.digest)
    assert info["Layers"] == [str(d.digest) for d in image.manifest.layers]
    raw = subprocess.run(
        [skopeo, "inspect", "--raw", f"oci:{tmp_path / 'lay'}:1.0"], capture_output=True, check=True, timeout=60
    )
    assert raw.stdout == image.manifest.raw


def test_layout_holds_only_the_spec_files_after_tidy(tmp_path: Path) -> None:
    layout = make_layout(tmp_path, make_image())
    assert (tmp_path / ".regtool-staging").is_dir()
    layout.blobs.tidy()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blobs", "index.json", "oci-layout"]


def test_tidy_keeps_a_staging_dir_with_partials(tmp_path: Path) -> None:
    layout = OciLayout.open(tmp_path, create=True)
    writer = layout.blobs.open_writer(Digest.of(b"abc"), 3)
    writer.write(b"a")
    writer.abort(keep_partial=True)
    layout.blobs.tidy()
    assert len(list((tmp_path / ".regtool-staging").iterdir())) == 1


def test_resolve_by_full_image_name(tmp_path: Path) -> None:
    image = make_image()
    layout = make_layout(tmp_path, image, "1.0")
    assert layout.resolve("example.com/test:1.0").digest == image.manifest.digest


@pytest.mark.interop
def test_layouts_shared_with_skopeo(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    image = make_image(2)
    lay = tmp_path / "lay"
    make_layout(lay, image, "1.0")
    # skopeo adds a tag to a layout regtool wrote ...
    subprocess.run(
        [skopeo, "copy", "-q", f"oci:{lay}:1.0", f"oci:{lay}:2.0"], capture_output=True, check=True, timeout=60
    )
    layout = OciLayout.open(lay)
    assert layout.resolve("1.0").digest == image.manifest.digest
    assert layout.resolve("2.0").digest == image.manifest.digest
    # ... and regtool re-tags in a layout skopeo rewrote, keeping skopeo's entry
    other = make_image(1, seed="other")
    store_image(layout, other, "2.0")
    assert layout.ref_names() == ["1.0", "2.0"]
    out = subprocess.run([skopeo, "inspect", f"oci:{lay}:2.0"], capture_output=True, check=True, timeout=60)
    assert json.loads(out.stdout)["Digest"] == str(other.manifest.digest)


@given(st.binary(max_size=200) | st.just(b"[" * 100_000) | st.just(b'{"schemaVersion": 2, "manifests": [' * 5000))
@settings(max_examples=50)
def test_any_index_json_is_a_layout_or_a_format_error(index: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
        (Path(tmp) / "index.json").write_bytes(index)
        try:
            layout = OciLayout.open(Path(tmp))
        except ImageFormatError:
            return
        layout.entries()


def test_a_second_pull_making_the_same_new_layout_keeps_the_first_ones_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two first pulls into one new directory: the second found no layout, then the first made it and named its
    # image. The second's making of the layout must not write an empty index over it.
    path = tmp_path / "out"
    image = make_image(1)
    first = OciLayout.open(path, create=True)
    store_image(first, image)
    first.add_manifest(image.manifest.descriptor(), ref_name="1")
    named = first.ref_names()
    assert "1" in named
    # The second, past its checks (an absent directory, then no index.json), makes the layout now.
    real_exists = Path.exists
    monkeypatch.setattr(Path, "exists", lambda self: False if self == path / "index.json" else real_exists(self))
    OciLayout(path)._create()
    monkeypatch.undo()
    assert OciLayout.open(path).ref_names() == named
