"""v1 chain <-> OCI config conversion (protocols.md §6.2) and layer sniffing."""

from __future__ import annotations

import hashlib
import io
import json

import pytest

from regtool import mediatypes as mt
from regtool.digest import Digest
from regtool.errors import ImageFormatError
from regtool.image.compression import Compression
from regtool.image.convert import (
    V1Image,
    chain_ids,
    config_from_v1,
    diff_id_of,
    layer_media_type,
    order_chain,
    parse_v1_json,
    payload_checksum,
    v1_chain_from_config,
)
from tests.v1.images import compress, layer_tar

ROOT = "a" * 64
MID = "b" * 64
TOP = "c" * 64


def v1_json(image_id: str, parent: str | None, cmd: list[str], **extra: object) -> bytes:
    body: dict[str, object] = {
        "id": image_id,
        "created": f"2014-0{len(cmd)}-01T00:00:00Z",
        "container_config": {"Cmd": cmd},
        "architecture": "x86_64",
        "Size": 123,
        **extra,
    }
    if parent:
        body["parent"] = parent
    return json.dumps(body).encode()


def test_config_from_v1_follows_make_config_from_v1_config() -> None:
    chain = [
        v1_json(ROOT, None, ["/bin/sh", "-c", "#(nop) ADD file"]),
        v1_json(MID, ROOT, ["/bin/sh", "-c", "apt-get install x"], author="me", comment="c"),
        v1_json(TOP, MID, ["/bin/sh", "-c", "#(nop) CMD sh"], config={"Cmd": ["sh"]}, throwaway=True),
    ]
    diff_ids = ["sha256:" + c * 64 for c in "123"]
    raw = config_from_v1(chain, diff_ids)
    config = json.loads(raw)
    for key in ("id", "parent", "Size", "throwaway", "layer_id", "parent_id"):
        assert key not in config
    assert config["architecture"] == "amd64"
    assert config["os"] == "linux"
    assert config["config"] == {"Cmd": ["sh"]}
    assert config["rootfs"] == {"type": "layers", "diff_ids": diff_ids}
    assert config["history"] == [
        {"created": "2014-03-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) ADD file"},
        {
            "created": "2014-03-01T00:00:00Z",
            "author": "me",
            "created_by": "/bin/sh -c apt-get install x",
            "comment": "c",
        },
        {"created": "2014-03-01T00:00:00Z", "created_by": "/bin/sh -c #(nop) CMD sh"},
    ]
    assert config_from_v1(chain, diff_ids) == raw  # deterministic bytes


def test_config_from_v1_rejects_mismatched_lengths_and_bad_json() -> None:
    with pytest.raises(ImageFormatError, match="2 images but 1 diff_ids"):
        config_from_v1([v1_json(ROOT, None, []), v1_json(MID, ROOT, [])], ["sha256:" + "1" * 64])
    with pytest.raises(ImageFormatError, match="not valid JSON"):
        config_from_v1([b"{nope"], ["sha256:" + "1" * 64])
    with pytest.raises(ImageFormatError, match="empty"):
        config_from_v1([], [])


def oci_config(layers: int = 3, env: str = "A=1") -> bytes:
    diff_ids = [str(Digest.of(layer_tar(i, 64))) for i in range(layers)]
    history = [{"created": "2024-01-01T00:00:00Z", "created_by": f"RUN step {i}"} for i in range(layers)]
    history.insert(1, {"created": "2024-01-01T00:00:00Z", "created_by": "ENV X=1", "empty_layer": True})
    return json.dumps(
        {
            "architecture": "arm64",
            "os": "linux",
            "created": "2024-02-01T00:00:00Z",
            "config": {"Env": [env], "Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": history,
        }
    ).encode()


def test_v1_chain_from_config_is_deterministic_and_linked() -> None:
    chain = v1_chain_from_config(oci_config())
    assert len(chain) == 3
    assert chain == v1_chain_from_config(oci_config())
    assert chain[0].parent is None
    for child, parent in zip(chain[1:], chain, strict=False):
        assert child.parent == parent.id
    for image in chain:
        assert parse_v1_json(image.json) == image
        assert len(image.id) == 64
    top = json.loads(chain[-1].json)
    assert top["config"] == {"Env": ["A=1"], "Cmd": ["sh"]}
    assert "rootfs" not in top and "history" not in top
    lower = json.loads(chain[1].json)
    # The empty-layer history entry is skipped: layer 1 gets "RUN step 1".
    assert lower["container_config"] == {"Cmd": ["RUN step 1"]}
    assert lower["architecture"] == "arm64"
    # A different config gives a different top id but the same lower ids (same layers, same history).
    other = v1_chain_from_config(oci_config(env="A=2"))
    assert [i.id for i in other[:2]] == [i.id for i in chain[:2]]
    assert other[2].id != chain[2].id


def test_v1_round_trip_keeps_diff_ids_config_and_history() -> None:
    original = json.loads(oci_config())
    chain = v1_chain_from_config(oci_config())
    back = json.loads(config_from_v1([i.json for i in chain], original["rootfs"]["diff_ids"]))
    assert back["rootfs"] == original["rootfs"]
    assert back["config"] == original["config"]
    assert back["architecture"] == "arm64"
    assert [h.get("created_by") for h in back["history"]] == ["RUN step 0", "RUN step 1", "RUN step 2"]


def test_v1_chain_needs_layers() -> None:
    with pytest.raises(ImageFormatError, match="diff_ids"):
        v1_chain_from_config(b'{"rootfs": {"type": "layers", "diff_ids": []}}')


def test_chain_ids() -> None:
    a, b = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    assert chain_ids([a, b]) == [a, "sha256:" + hashlib.sha256(f"{a} {b}".encode()).hexdigest()]


def test_parse_v1_json_validation() -> None:
    assert parse_v1_json(v1_json(MID, ROOT, [])) == V1Image(MID, ROOT, v1_json(MID, ROOT, []))
    assert parse_v1_json(b'{"id": "0123456789abcdef"}').parent is None
    for bad, message in [
        (b"[]", "not a JSON object"),
        (b"{", "not valid JSON"),
        (b'{"id": "XYZ"}', "invalid 'id'"),
        (b'{"id": "' + ROOT.encode() + b'", "parent": "../etc"}', "invalid 'parent'"),
    ]:
        with pytest.raises(ImageFormatError, match=message):
            parse_v1_json(bad)


def test_order_chain() -> None:
    images = [parse_v1_json(v1_json(i, p, [])) for i, p in [(TOP, MID), (ROOT, None), (MID, ROOT)]]
    assert [i.id for i in order_chain(images, TOP)] == [ROOT, MID, TOP]
    with pytest.raises(ImageFormatError, match="missing"):
        order_chain(images[:2], TOP)
    loop = [V1Image(ROOT, MID, b"{}"), V1Image(MID, ROOT, b"{}")]
    with pytest.raises(ImageFormatError, match="cycle"):
        order_chain(loop, ROOT)


def test_payload_checksum_is_sha256_of_json_newline_layer() -> None:
    assert (
        payload_checksum(b'{"id":"x"}', [b"ab", b"cd"]).hexdigest() == hashlib.sha256(b'{"id":"x"}\nabcd').hexdigest()
    )


@pytest.mark.parametrize(
    ("kind", "compression"),
    [("plain", Compression.NONE), ("gzip", Compression.GZIP), ("xz", Compression.XZ), ("bzip2", Compression.BZIP2)],
)
def test_diff_id_of_sniffs_the_compression(kind: str, compression: Compression) -> None:
    tar = layer_tar(1, 5000)
    info = diff_id_of(io.BytesIO(compress(tar, kind)))
    assert info.compression is compression
    assert info.diff_id == Digest.of(tar)
    assert info.diff_size == len(tar)


def test_diff_id_of_refuses_corrupt_and_zstd() -> None:
    broken = compress(layer_tar(1, 5000), "gzip")[:-20]
    with pytest.raises(ImageFormatError, match="gzip"):
        diff_id_of(io.BytesIO(broken))
    with pytest.raises(ImageFormatError, match="zstd"):
        diff_id_of(io.BytesIO(b"\x28\xb5\x2f\xfd" + bytes(100)))


def test_layer_media_types() -> None:
    assert layer_media_type(Compression.GZIP) == mt.OCI_LAYER_GZIP
    assert layer_media_type(Compression.NONE) == mt.OCI_LAYER
    assert layer_media_type(Compression.XZ) is None
