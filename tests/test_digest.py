from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from regtool.digest import Digest, DigestVerifier, sha256_of
from regtool.errors import IntegrityError, InvalidDigest

HEX = "a" * 64
EMPTY = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_parse_and_format() -> None:
    d = Digest.parse(f"sha256:{HEX}")
    assert (d.algorithm, d.encoded) == ("sha256", HEX)
    assert str(d) == f"sha256:{HEX}"
    assert d.short == "sha256:aaaaaaaaaaaa"
    assert Digest.parse("sha512:" + "0" * 128).algorithm == "sha512"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected algorithm:hex"),
        ("sha256", "expected algorithm:hex"),
        (f"sha256:{HEX[:-1]}", "invalid sha256 digest"),
        (f"sha256:{HEX}0", "invalid sha256 digest"),
        ("sha256:" + "A" * 64, "invalid sha256 digest"),  # the spec wants lowercase hex
        (f"sha256:{HEX}\n", "expected algorithm:hex"),  # no trailing newline smuggled into a path
        (f" sha256:{HEX}", "expected algorithm:hex"),
        (f"md5:{HEX[:32]}", "unsupported digest algorithm 'md5'"),
        ("sha256:" + "0" * 300, "expected algorithm:hex"),
        (f"SHA256:{HEX}", "expected algorithm:hex"),
    ],
)
def test_invalid_digests(text: str, message: str) -> None:
    with pytest.raises(InvalidDigest, match=message):
        Digest.parse(text)
    assert not Digest.is_valid(text)


def test_of_and_sha256_of() -> None:
    assert str(Digest.of(b"")) == EMPTY
    assert sha256_of(b"") == EMPTY
    assert Digest.of(b"x", "sha512").encoded == hashlib.sha512(b"x").hexdigest()


def test_verifier_accepts_matching_stream() -> None:
    v = Digest.parse(sha256_of(b"hello world")).verifier()
    v.update_all([b"hello", b" ", b"world"])
    v2 = DigestVerifier()
    v2.update(bytearray(b"hello world"))
    assert v2.digest() == Digest.of(b"hello world")
    assert v.size == 11
    v.verify(Digest.of(b"hello world"), 11)
    v.verify(Digest.of(b"hello world"))


def test_verifier_reports_size_then_digest() -> None:
    expected = Digest.of(b"hello")
    v = DigestVerifier()
    v.update(memoryview(b"hellO"))
    with pytest.raises(IntegrityError, match=f"layer {expected}: size mismatch: expected 4 bytes, got 5"):
        v.verify(expected, 4, what="layer")
    with pytest.raises(IntegrityError, match=f"blob {expected}: digest mismatch: content hashes to sha256:"):
        v.verify(expected, 5)


def test_verifier_rejects_unknown_algorithm() -> None:
    with pytest.raises(InvalidDigest, match="unsupported digest algorithm 'md5'"):
        DigestVerifier("md5")


@given(st.text(max_size=300))
def test_parse_raises_only_invalid_digest(text: str) -> None:
    try:
        d = Digest.parse(text)
    except InvalidDigest:
        return
    assert str(d) == text


@given(st.binary(max_size=200))
def test_round_trip_of_computed_digests(data: bytes) -> None:
    d = Digest.of(data)
    assert Digest.parse(str(d)) == d
    assert str(d) == sha256_of(data)
