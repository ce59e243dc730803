from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.manifest import Descriptor, ImageConfig, ManifestError, Platform, parse_manifest

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def raw(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=3).encode()


def image_doc(media_type: str | None = mt.OCI_MANIFEST, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schemaVersion": 2,
        "config": {"mediaType": mt.OCI_CONFIG, "size": 10, "digest": D1},
        "layers": [
            {"mediaType": mt.OCI_LAYER_GZIP, "size": 20, "digest": D2},
            {"mediaType": mt.DOCKER_FOREIGN_LAYER, "size": 30, "digest": D3, "urls": ["https://x/l"]},
        ],
        **extra,
    }
    if media_type is not None:
        doc["mediaType"] = media_type
    return doc


def test_image_manifest_keeps_its_bytes() -> None:
    data = raw(image_doc(annotations={"a": "b"}))
    m = parse_manifest(data, mt.OCI_MANIFEST)
    assert m.raw == data
    assert m.digest == Digest.of(data)
    assert m.size == len(data)
    assert (m.kind, m.media_type, m.is_index) == ("image", mt.OCI_MANIFEST, False)
    assert m.config == Descriptor(mt.OCI_CONFIG, Digest.parse(D1), 10)
    assert [layer.size for layer in m.layers] == [20, 30]
    assert m.layers[1].urls == ("https://x/l",)
    assert m.annotations == {"a": "b"}
    # foreign layers (with urls) need not be in the registry
    assert m.referenced_blobs() == (Digest.parse(D1), Digest.parse(D2))
    assert m.effective_artifact_type() == mt.OCI_CONFIG
    assert m.descriptor() == Descriptor(mt.OCI_MANIFEST, m.digest, len(data))


def test_media_type_sources() -> None:
    # Content-Type parameters and generic types are ignored; a body without mediaType is guessed by shape.
    assert parse_manifest(raw(image_doc(None)), f"{mt.DOCKER_MANIFEST_V2}; charset=utf-8").media_type == (
        mt.DOCKER_MANIFEST_V2
    )
    assert parse_manifest(raw(image_doc(None)), "application/json").media_type == mt.OCI_MANIFEST
    assert parse_manifest(raw(image_doc(None))).media_type == mt.OCI_MANIFEST
    index = {"schemaVersion": 2, "manifests": []}
    assert parse_manifest(raw(index)).media_type == mt.OCI_INDEX


def test_content_type_disagreeing_with_body() -> None:
    with pytest.raises(ManifestError, match="disagrees with Content-Type"):
        parse_manifest(raw(image_doc(mt.OCI_MANIFEST)), mt.DOCKER_MANIFEST_V2)


def test_index_with_platforms() -> None:
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.DOCKER_MANIFEST_LIST,
        "manifests": [
            {
                "mediaType": mt.DOCKER_MANIFEST_V2,
                "size": 5,
                "digest": D1,
                "platform": {"architecture": "arm", "os": "linux", "variant": "v7", "os.features": ["x"]},
            },
            {
                "mediaType": mt.DOCKER_MANIFEST_V2,
                "size": 6,
                "digest": D2,
                "platform": {"architecture": "amd64", "os": "windows", "os.version": "10.0"},
            },
        ],
    }
    m = parse_manifest(raw(doc))
    assert m.is_index
    assert m.kind == "index"
    platforms = [d.platform for d in m.manifests]
    assert platforms == [
        Platform("arm", "linux", "v7", None, ("x",)),
        Platform("amd64", "windows", None, "10.0"),
    ]
    assert str(platforms[0]) == "linux/arm/v7"
    assert m.referenced_blobs() == ()
    assert m.effective_artifact_type() is None
    # to_json gives back what was parsed
    assert [d.to_json() for d in m.manifests] == doc["manifests"]


def test_subject_and_artifact_type() -> None:
    doc = image_doc(artifactType="application/x.sig", subject={"mediaType": mt.OCI_MANIFEST, "size": 1, "digest": D3})
    m = parse_manifest(raw(doc))
    assert m.subject is not None
    assert m.subject.digest == Digest.parse(D3)
    assert m.effective_artifact_type() == "application/x.sig"


def test_schema1() -> None:
    doc = {
        "schemaVersion": 1,
        "name": "a",
        "tag": "b",
        "fsLayers": [{"blobSum": D1}, {"blobSum": D2}, {"blobSum": D1}],
        "history": [],
        "signatures": [{}],
    }
    m = parse_manifest(raw(doc))
    assert (m.kind, m.media_type) == ("schema1", mt.DOCKER_SCHEMA1_SIGNED)
    assert m.referenced_blobs() == (Digest.parse(D1), Digest.parse(D2))
    del doc["signatures"]
    assert parse_manifest(raw(doc)).media_type == mt.DOCKER_SCHEMA1


@pytest.mark.parametrize(
    ("data", "content_type", "message"),
    [
        (b"not json", None, "not valid JSON"),
        (b"\xff\xfe\x00", None, "not valid JSON"),
        (b"[]", None, "not a JSON object"),
        (b"[" * 100_000, None, "nested too deeply"),
        (raw({"schemaVersion": 2}), None, "cannot tell the manifest's media type"),
        (raw({"schemaVersion": 2, "mediaType": 5}), None, "mediaType is not a string"),
        (raw(image_doc(schemaVersion=3)), None, "unsupported schemaVersion 3"),
        (raw(image_doc(mt.OCI_MANIFEST, config=None)), None, "config is not an object"),
        (raw({k: v for k, v in image_doc().items() if k != "config"}), None, "image manifest has no config"),
        (raw(image_doc(layers={})), None, "no layers list"),
        (raw(image_doc(annotations=["x"])), None, "annotations is not an object"),
        (raw({"schemaVersion": 2, "mediaType": mt.OCI_INDEX, "manifests": {}}), None, "no manifests list"),
        (raw({"schemaVersion": 2, "mediaType": "application/x"}), None, "unknown manifest media type"),
        (raw({"schemaVersion": 2, "mediaType": mt.DOCKER_SCHEMA1}), None, "must have schemaVersion 1"),
        (raw({"schemaVersion": 1, "fsLayers": []}), None, "has no fsLayers"),
        (raw({"schemaVersion": 1, "fsLayers": [{"blobSum": "x"}]}), None, r"fsLayers\[0\] has no valid blobSum"),
        (raw({"schemaVersion": 1, "fsLayers": ["x"]}), None, r"fsLayers\[0\] has no valid blobSum"),
    ],
)
def test_invalid_manifests(data: bytes, content_type: str | None, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        parse_manifest(data, content_type)


@pytest.mark.parametrize(
    ("descriptor", "message"),
    [
        ([], "is not an object"),
        ({"size": 1, "digest": D1}, "has no mediaType"),
        ({"mediaType": "x", "size": 1}, "has no digest"),
        ({"mediaType": "x", "size": 1, "digest": "sha256:abc"}, "invalid sha256 digest"),
        ({"mediaType": "x", "size": -1, "digest": D1}, "has no valid size"),
        ({"mediaType": "x", "size": True, "digest": D1}, "has no valid size"),
        ({"mediaType": "x", "size": 1.5, "digest": D1}, "has no valid size"),
        ({"mediaType": "x", "size": 1, "digest": D1, "urls": "u"}, "malformed urls or annotations"),
        ({"mediaType": "x", "size": 1, "digest": D1, "platform": {"os": "linux"}}, "needs string 'architecture'"),
    ],
)
def test_invalid_descriptors(descriptor: Any, message: str) -> None:
    with pytest.raises(ManifestError, match=message):
        Descriptor.from_json(descriptor, where="layers[0]")


def test_image_config() -> None:
    doc = {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["A=1"]},
        "rootfs": {"type": "layers", "diff_ids": [D1, D2]},
        "history": [{"created_by": "x"}, "junk"],
    }
    data = json.dumps(doc).encode()
    config = ImageConfig.parse(data)
    assert config.raw == data
    assert (config.architecture, config.os, config.variant, config.created) == (
        "arm64",
        "linux",
        "v8",
        "2024-01-01T00:00:00Z",
    )
    assert config.diff_ids == (D1, D2)
    assert config.config == {"Env": ["A=1"]}
    assert config.history == ({"created_by": "x"},)
    empty = ImageConfig.parse(b'{"rootfs": [], "config": 5, "history": {}, "os": 1}')
    assert (empty.diff_ids, empty.config, empty.history, empty.os) == ((), {}, (), None)
    with pytest.raises(ManifestError):
        ImageConfig.parse(b"[]")


# -- properties: any input gives a Manifest or a ManifestError, never another exception ----------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(
    ["schemaVersion", "mediaType", "config", "layers", "manifests", "subject", "annotations", "fsLayers",
     "artifactType", "platform", "digest", "size", "urls", "blobSum", "signatures"]
)  # fmt: skip
values = st.one_of(
    json_values,
    st.sampled_from([1, 2, D1, "sha256:zz", -1, *sorted(mt.MANIFEST_TYPES)]),
)
shaped = st.recursive(
    st.dictionaries(keys, values, max_size=6),
    lambda children: st.dictionaries(keys, st.one_of(values, children, st.lists(children, max_size=3)), max_size=6),
    max_leaves=25,
)
content_types = st.one_of(st.none(), st.sampled_from(sorted(mt.MANIFEST_TYPES)), st.text(max_size=30))


def check(data: bytes, content_type: str | None) -> None:
    try:
        m = parse_manifest(data, content_type)
    except ManifestError:
        return
    assert m.raw == data
    assert m.digest == Digest.of(data)
    m.referenced_blobs()
    for d in (*m.layers, *m.manifests):
        Descriptor.from_json(d.to_json())


@given(st.binary(max_size=300), content_types)
def test_parse_any_bytes(data: bytes, content_type: str | None) -> None:
    check(data, content_type)


@given(json_values, content_types)
def test_parse_any_json(value: Any, content_type: str | None) -> None:
    check(json.dumps(value).encode(), content_type)


@given(shaped, content_types)
def test_parse_manifest_shaped_json(value: dict[str, Any], content_type: str | None) -> None:
    check(json.dumps(value).encode(), content_type)


@given(shaped)
def test_image_config_never_crashes(value: dict[str, Any]) -> None:
    ImageConfig.parse(json.dumps(value).encode())
