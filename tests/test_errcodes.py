from __future__ import annotations

import json

import pytest

from regtool.protocol.errcodes import (
    ErrorCode,
    RegistryErrorItem,
    decode_v1_error,
    decode_v2_errors,
    encode_v1_error,
    encode_v2_errors,
)


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (ErrorCode.BLOB_UNKNOWN, 404),
        (ErrorCode.BLOB_UPLOAD_INVALID, 400),
        (ErrorCode.BLOB_UPLOAD_UNKNOWN, 404),
        (ErrorCode.DIGEST_INVALID, 400),
        (ErrorCode.MANIFEST_BLOB_UNKNOWN, 400),
        (ErrorCode.MANIFEST_INVALID, 400),
        (ErrorCode.MANIFEST_UNKNOWN, 404),
        (ErrorCode.NAME_INVALID, 400),
        (ErrorCode.NAME_UNKNOWN, 404),
        (ErrorCode.SIZE_INVALID, 400),
        (ErrorCode.UNAUTHORIZED, 401),
        (ErrorCode.DENIED, 403),
        (ErrorCode.UNSUPPORTED, 405),
        (ErrorCode.TOOMANYREQUESTS, 429),
        (ErrorCode.RANGE_INVALID, 416),
        (ErrorCode.UNAVAILABLE, 503),
    ],
)
def test_status_of_each_code(code: ErrorCode, status: int) -> None:
    # spec.md "Error Codes" and distribution's registry/api/errcode
    assert code.status == status
    assert code.code == code.name
    assert code.default_message


def test_manifest_too_large_uses_the_size_invalid_code() -> None:
    assert (ErrorCode.MANIFEST_TOO_LARGE.code, ErrorCode.MANIFEST_TOO_LARGE.status) == ("SIZE_INVALID", 413)
    assert len({ErrorCode.MANIFEST_TOO_LARGE, ErrorCode.SIZE_INVALID}) == 2


def test_v2_round_trip() -> None:
    items = [
        RegistryErrorItem("BLOB_UNKNOWN", "blob unknown to registry", {"digest": "sha256:x"}),
        RegistryErrorItem("DENIED", "no"),
    ]
    body = encode_v2_errors(items)
    assert json.loads(body) == {
        "errors": [
            {"code": "BLOB_UNKNOWN", "message": "blob unknown to registry", "detail": {"digest": "sha256:x"}},
            {"code": "DENIED", "message": "no"},
        ]
    }
    assert decode_v2_errors(body) == items


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", []),
        (b"<html>502</html>", []),
        (b"\xff", []),
        (b"[" * 100_000, []),
        (b"[]", []),
        (b'{"errors": {}}', []),
        (b'{"errors": [1, {"message": "no code"}, {"code": 5}]}', []),
        (b'{"errors": [{"code": "UNKNOWN"}]}', [RegistryErrorItem("UNKNOWN", "")]),
        (b'{"errors": [{"code": "X", "message": 7, "detail": [1]}]}', [RegistryErrorItem("X", "", [1])]),
    ],
)
def test_v2_decode_is_best_effort(body: bytes, expected: list[RegistryErrorItem]) -> None:
    assert decode_v2_errors(body) == expected


def test_v1_envelope() -> None:
    assert json.loads(encode_v1_error("Image not found")) == {"error": "Image not found"}
    assert decode_v1_error(encode_v1_error("Image not found")) == "Image not found"
    for body in (b"", b"nope", b"[]", b'{"error": 1}', b"[" * 100_000, b"\xff"):
        assert decode_v1_error(body) is None
