"""Property-based tests (Hypothesis): the parsers of untrusted input never fail with anything but their own
documented error, whatever they are given.

Covered: image references, ``WWW-Authenticate`` challenges, manifests, ``Retry-After``, and the byte ranges of
both sides: the server's ``Range`` (blob GET) and ``Content-Range`` (upload PATCH) parsing, the client's upload
``Range`` (resume) and ``Content-Range`` (ranged downloads) parsing.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from regtool import mediatypes as mt
from regtool.client.net.challenge import ChallengeError, parse_challenges
from regtool.client.net.retry import RetryPolicy, parse_retry_after
from regtool.client.v2.rangefetch import plan_segments
from regtool.errors import InvalidReference
from regtool.manifest import ManifestError, parse_manifest
from regtool.protocol.ranges import parse_content_range, parse_upload_progress
from regtool.reference import Reference
from regtool.server.errors import ApiError
from regtool.server.handlers.uploads import _content_range
from regtool.server.streaming import parse_range

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text biased towards the characters these grammars care about.
_GRAMMAR = st.sampled_from([*list('abcz09AZ:/@._-=,"\\ \t+*!#[]%'), "sha256:", "bytes=", "localhost", "docker.io"])
grammar_text = st.lists(st.one_of(_GRAMMAR, st.characters()), max_size=60).map("".join)


# -- references ------------------------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.text(max_size=300), grammar_text))
@example("localhost:5000/a/b:tag@sha256:" + "a" * 64)
@example("[::1]:5000/x")
@example("a" * 300)
def test_reference_parse_raises_only_invalid_reference(text: str) -> None:
    try:
        ref = Reference.parse(text)
    except InvalidReference:
        return
    # What parses prints back to something that parses to the same value.
    assert Reference.parse(str(ref)) == ref


# No dots: a first component with a dot (or a colon) names a registry host, as docker reads it.
_COMPONENT = st.from_regex(r"\A[a-z0-9]+(?:[_-][a-z0-9]+)?\Z", fullmatch=True)
_TAG = st.from_regex(r"\A[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}\Z", fullmatch=True)


@FAST
@given(st.lists(_COMPONENT, min_size=1, max_size=4), _TAG, st.sampled_from(["", "localhost:5000/", "reg.io/"]))
def test_valid_references_round_trip(components: list[str], tag: str, registry: str) -> None:
    text = registry + "/".join(components) + ":" + tag
    ref = Reference.parse(text)
    assert ref.tag == tag
    assert ref.repository.endswith("/".join(components))
    assert Reference.parse(str(ref)) == ref


# -- WWW-Authenticate -------------------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.text(max_size=300), grammar_text))
@example('Bearer realm="https://auth/token",service="reg",scope="repository:a/b:pull,push"')
@example('Basic realm="x", Bearer realm="y"')
@example('Bearer realm="unterminated')
@example("Bearer ,,,=,")
def test_challenge_parser_raises_only_challenge_error(text: str) -> None:
    try:
        challenges = parse_challenges(text)
    except ChallengeError:
        return
    for challenge in challenges:
        assert challenge.scheme


_PARAM_VALUE = st.text(st.characters(blacklist_categories=["Cs", "Cc"]), max_size=30)


@FAST
@given(st.dictionaries(st.sampled_from(["realm", "service", "scope", "error"]), _PARAM_VALUE, min_size=1))
def test_quoted_parameters_round_trip(params: dict[str, str]) -> None:
    def quote(value: str) -> str:
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'

    header = "Bearer " + ", ".join(f"{key}={quote(value)}" for key, value in params.items())
    (challenge,) = parse_challenges(header)
    assert challenge.scheme.lower() == "bearer"
    assert {k.lower(): v for k, v in challenge.params.items()} == params


# -- manifests --------------------------------------------------------------------------------------------------

_JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
_DIGEST = st.one_of(st.just("sha256:" + "a" * 64), st.text(max_size=80))
_DESCRIPTOR = st.fixed_dictionaries(
    {"mediaType": st.one_of(st.sampled_from([mt.OCI_LAYER_GZIP, mt.OCI_CONFIG]), st.text(max_size=10))},
    optional={
        "digest": _DIGEST,
        "size": st.one_of(st.integers(min_value=-5, max_value=1 << 40), _JSON),
        "urls": _JSON,
        "annotations": _JSON,
        "platform": _JSON,
    },
)
_MANIFEST_DOC = st.fixed_dictionaries(
    {},
    optional={
        "schemaVersion": st.one_of(st.sampled_from([1, 2]), _JSON),
        "mediaType": st.one_of(st.sampled_from([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_V2]), _JSON),
        "config": st.one_of(_DESCRIPTOR, _JSON),
        "layers": st.one_of(st.lists(_DESCRIPTOR, max_size=3), _JSON),
        "manifests": st.one_of(st.lists(_DESCRIPTOR, max_size=3), _JSON),
        "subject": st.one_of(_DESCRIPTOR, _JSON),
        "fsLayers": _JSON,
    },
)
_CONTENT_TYPES = st.one_of(
    st.none(), st.sampled_from([mt.OCI_MANIFEST, mt.OCI_INDEX, mt.DOCKER_MANIFEST_V2, "text/plain"]), st.text()
)


def _parse(raw: bytes, content_type: str | None) -> None:
    try:
        manifest = parse_manifest(raw, content_type)
    except ManifestError:
        return
    assert manifest.raw == raw


@FAST
@given(_MANIFEST_DOC, _CONTENT_TYPES)
def test_manifest_parser_on_manifest_shaped_json(doc: dict[str, Any], content_type: str | None) -> None:
    _parse(json.dumps(doc).encode(), content_type)


@FAST
@given(st.one_of(st.binary(max_size=300), _JSON.map(lambda v: json.dumps(v).encode())), _CONTENT_TYPES)
@example(b"\xff\xfe", None)
@example(b'{"schemaVersion": 2, "layers": 5}', None)
@example(b"[1, 2]", mt.OCI_MANIFEST)
@example(b'{"a": ' * 2000 + b"1" + b"}" * 2000, None)
def test_manifest_parser_on_any_bytes(raw: bytes, content_type: str | None) -> None:
    _parse(raw, content_type)


# -- Retry-After ------------------------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.none(), st.text(max_size=60), st.integers(min_value=0).map(str)))
@example("Wed, 21 Oct 2015 07:28:00 GMT")
@example("Wed, 21 Oct 2015 07:28:00")
@example("\u0662")  # a non-ASCII digit
def test_retry_after_is_none_or_a_bounded_delay(value: str | None) -> None:
    after = parse_retry_after(value, now=1_700_000_000.0)
    assert after is None or after >= 0
    delay = RetryPolicy(retry_after_max=30.0).delay(2, value, now=1_700_000_000.0)
    assert 0 <= delay <= 30.0


# -- byte ranges: server side -----------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.none(), st.text(max_size=40), grammar_text), st.integers(min_value=0, max_value=1 << 40))
@example("bytes=0-", 0)
@example("bytes=-0", 10)
@example("bytes=5-2", 10)
@example("bytes=" + "9" * 40 + "-", 10)
def test_server_range_parser(header: str | None, size: int) -> None:
    try:
        parsed = parse_range(header, size)
    except ApiError as exc:
        assert exc.status == 416
        assert exc.headers["Content-Range"] == f"bytes */{size}"
        return
    if parsed is not None:
        first, last = parsed
        assert 0 <= first <= last < size


def _request_with(content_range: str) -> Request:
    raw = content_range.encode("latin-1", errors="replace")
    return Request({"type": "http", "method": "PATCH", "path": "/", "headers": [(b"content-range", raw)]})


@FAST
@given(st.one_of(st.text(max_size=40), grammar_text))
@example("0-0")
@example("bytes 0-99/100")
@example("10-5")
def test_server_upload_content_range_parser(header: str) -> None:
    try:
        parsed = _content_range(_request_with(header))
    except ApiError as exc:
        assert exc.status == 416
        return
    assert parsed is not None
    assert 0 <= parsed[0] <= parsed[1]


# -- byte ranges: client side -----------------------------------------------------------------------------------


@FAST
@given(st.one_of(st.none(), st.text(max_size=40), grammar_text))
@example("0-0")
@example("bytes=0-99")
@example("0-" + "9" * 30)
def test_client_upload_range_parser(value: str | None) -> None:
    held = parse_upload_progress(value)
    assert held is None or held >= 0


@pytest.mark.parametrize(("value", "held"), [("0-0", 0), ("0-1", 2), ("bytes=0-1023", 1024), ("1-5", None)])
def test_client_upload_range_examples(value: str, held: int | None) -> None:
    assert parse_upload_progress(value) == held


@FAST
@given(st.one_of(st.none(), st.text(max_size=40), grammar_text))
@example("bytes 0-99/100")
@example("bytes 5-9/*")
@example("bytes 9-5/100")
@example("bytes 0-" + "9" * 30 + "/1")
def test_client_content_range_parser(value: str | None) -> None:
    parsed = parse_content_range(value)
    if parsed is not None:
        first, last, total = parsed
        assert 0 <= first <= last
        assert total is None or last < total


@FAST
@given(st.integers(min_value=0, max_value=1 << 40), st.integers(min_value=0, max_value=1 << 40), st.integers(2, 16))
def test_split_segments_cover_the_rest_exactly(size: int, offset: int, parts: int) -> None:
    offset = min(offset, size)
    segments = plan_segments(size, offset, parts)
    position = offset
    for segment in segments:
        assert segment.start == position < segment.end
        position = segment.end
    assert position == size
    assert len(segments) <= parts
