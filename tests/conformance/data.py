"""The official suite's test content (distribution-spec v1.1.1, conformance/setup.go), built the same way.

Manifests are indented JSON with the suite's extra descriptor fields (``data`` holding the config itself,
``newUnspecifiedField``), so a registry that refuses unknown fields or re-serialises the body fails here too.
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import secrets
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SuiteData", "TestBlob", "digest_of"]

# Go's iota: pull=1, push=2, discovery=4, management=8, so numWorkflows is 1 << 4.
NUM_WORKFLOWS = 16
TEST_TAG = "tagtest0"
EMPTY_LAYER_TAG = "emptylayer"
NONEXISTENT_MANIFEST = ".INVALID_MANIFEST_NAME"
INVALID_MANIFEST = b"blablabla"
ANNOTATION_KEY = "org.opencontainers.conformance.test"
ARTIFACT_TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
ARTIFACT_TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
ARTIFACT_TYPE_INDEX = "application/vnd.food.stand"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
ERROR_CODES = frozenset(
    {
        "BLOB_UNKNOWN",
        "BLOB_UPLOAD_INVALID",
        "BLOB_UPLOAD_UNKNOWN",
        "DIGEST_INVALID",
        "MANIFEST_BLOB_UNKNOWN",
        "MANIFEST_INVALID",
        "MANIFEST_UNKNOWN",
        "MANIFEST_UNVERIFIED",
        "NAME_INVALID",
        "NAME_UNKNOWN",
        "SIZE_INVALID",
        "TAG_INVALID",
        "UNAUTHORIZED",
        "DENIED",
        "UNSUPPORTED",
    }
)
# The suite's one layer: a small gzipped tar, as base64.
_LAYER_BASE64 = (
    "H4sIAAAAAAAAA+3OQQrCMBCF4a49xXgBSUnaHMCTRBptQRNpp6i3t0UEV7oqIv7fYgbmzeJpHHSjVy0"
    "WZCa1c/MufWVe94N3RWlrZ72x3k/30nhbFWKWLPU0Dhp6keJ8im//PuU/6pZH2WVtYx8b0Sz7LjWSR5VLG6YRBumSzOlGtjkd+qD"
    "jMWiX07Befbs7AAAAAAAAAAAAAAAAAPyzO34MnqoAKAAA"
)
_LETTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-"


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: Any) -> bytes:
    # Go's json.MarshalIndent(v, "", "\t"): tab-indented, no HTML escaping needed for this content.
    return json.dumps(value, indent="\t").encode()


def descriptor(media_type: str, content: bytes, **extra: Any) -> dict[str, Any]:
    # Go marshals the suite's nil []byte field as null; a registry must keep fields it does not know.
    body: dict[str, Any] = {"mediaType": media_type, "digest": digest_of(content), "size": len(content)}
    body.update(extra)
    body.setdefault("newUnspecifiedField", None)
    return body


@dataclass(frozen=True)
class TestBlob:
    content: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.content)

    @property
    def length(self) -> str:
        return str(len(self.content))


@dataclass(frozen=True)
class SuiteData:
    """Everything setup.go builds: per-workflow configs and manifests, the layer, the referrers' artifacts."""

    configs: list[TestBlob]
    layer: TestBlob
    manifests: list[TestBlob]
    empty_layer_manifest: TestBlob
    blob_a: TestBlob
    blob_b: TestBlob
    ref_blob_a: TestBlob
    ref_blob_b: TestBlob
    empty_json: TestBlob
    refs_a_config: TestBlob
    refs_b_config: TestBlob
    refs_a_layer: TestBlob
    refs_b_layer: TestBlob
    refs_c_layer: TestBlob
    refs_index: TestBlob
    annotations: dict[str, str] = field(default_factory=dict)
    dummy_digest: str = digest_of(b"hello world")

    @property
    def chunk1(self) -> bytes:
        return self.blob_b.content[: len(self.blob_b.content) // 2 + 1]

    @property
    def chunk2(self) -> bytes:
        return self.blob_b.content[len(self.blob_b.content) // 2 + 1 :]

    @property
    def chunk1_range(self) -> str:
        return f"0-{len(self.chunk1) - 1}"

    @property
    def chunk2_range(self) -> str:
        return f"{len(self.chunk1)}-{len(self.blob_b.content) - 1}"

    @classmethod
    def build(cls, seed: int | None = None) -> SuiteData:
        seed = secrets.randbits(32) if seed is None else seed
        configs = []
        for _ in range(NUM_WORKFLOWS):
            author = "".join(secrets.choice(_LETTERS) for _ in range(16))
            image = {
                "author": author,
                "architecture": "amd64",
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": []},
            }
            configs.append(TestBlob(_json(image)))
        layer = TestBlob(base64.b64decode(_LAYER_BASE64))
        hello = base64.b64encode(b"hello world").decode()

        def config_descriptor(config: TestBlob) -> dict[str, Any]:
            return descriptor(
                OCI_CONFIG, config.content, data=base64.b64encode(config.content).decode(), newUnspecifiedField=hello
            )

        manifests = [
            TestBlob(
                _json(
                    {
                        "schemaVersion": 2,
                        "mediaType": OCI_MANIFEST,
                        "config": config_descriptor(config),
                        "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer.content)],
                    }
                )
            )
            for config in configs
        ]
        # No mediaType: the registry must take the Content-Type of the PUT.
        empty_layer = TestBlob(_json({"schemaVersion": 2, "config": config_descriptor(configs[1]), "layers": []}))
        blob_a = TestBlob(random.Random(seed + 1).randbytes(42))
        blob_b = TestBlob(random.Random(seed + 2).randbytes(42))
        empty_json = TestBlob(b"{}")
        ref_a = TestBlob(b"NHL Peanut Butter on my NHL bagel")
        ref_b = TestBlob(b"NBA Strawberry Jam on my NBA croissant")
        subject_4 = descriptor(OCI_MANIFEST, manifests[4].content)
        subject_3 = descriptor(OCI_MANIFEST, manifests[3].content)
        annotations: dict[str, str] = {}

        def artifact(body: dict[str, Any], note: str | None) -> TestBlob:
            body = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, **body}
            if note is not None:
                body["annotations"] = {ANNOTATION_KEY: note}
            blob = TestBlob(_json(body))
            if note is not None:
                annotations[blob.digest] = note
            return blob

        empty_desc = descriptor(OCI_EMPTY, empty_json.content)
        refs_a_config = artifact(
            {"config": descriptor(ARTIFACT_TYPE_A, ref_a.content), "layers": [empty_desc], "subject": subject_4},
            "test config a",
        )
        refs_b_config = artifact(
            {"config": descriptor(ARTIFACT_TYPE_B, ref_b.content), "layers": [empty_desc], "subject": subject_4},
            "test config b",
        )
        refs_a_layer = artifact(
            {
                "artifactType": ARTIFACT_TYPE_A,
                "config": empty_desc,
                "layers": [descriptor(ARTIFACT_TYPE_A, ref_a.content)],
                "subject": subject_4,
            },
            "test layer a",
        )
        refs_b_layer = artifact(
            {
                "artifactType": ARTIFACT_TYPE_B,
                "config": empty_desc,
                "layers": [descriptor(ARTIFACT_TYPE_B, ref_b.content)],
                "subject": subject_4,
            },
            "test layer b",
        )
        refs_c_layer = artifact(
            {
                "artifactType": ARTIFACT_TYPE_B,
                "config": empty_desc,
                "layers": [descriptor(ARTIFACT_TYPE_B, ref_b.content)],
                "subject": subject_3,
            },
            None,
        )
        index_body = {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "artifactType": ARTIFACT_TYPE_INDEX,
            "manifests": [
                descriptor(OCI_MANIFEST, refs_a_config.content),
                descriptor(OCI_MANIFEST, refs_a_layer.content),
            ],
            "subject": subject_4,
            "annotations": {ANNOTATION_KEY: "test index"},
        }
        refs_index = TestBlob(_json(index_body))
        annotations[refs_index.digest] = "test index"
        return cls(
            configs=configs,
            layer=layer,
            manifests=manifests,
            empty_layer_manifest=empty_layer,
            blob_a=blob_a,
            blob_b=blob_b,
            ref_blob_a=ref_a,
            ref_blob_b=ref_b,
            empty_json=empty_json,
            refs_a_config=refs_a_config,
            refs_b_config=refs_b_config,
            refs_a_layer=refs_a_layer,
            refs_b_layer=refs_b_layer,
            refs_c_layer=refs_c_layer,
            refs_index=refs_index,
            annotations=annotations,
        )
