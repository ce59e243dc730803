"""Probe against real servers: regtool serve, a plain HTTP server that is no registry, a refused connection."""

from __future__ import annotations

import socket

import pytest

from regtool.client import Client
from regtool.errors import UnsupportedProtocolError
from regtool.reference import Reference
from tests.client.fakeregistry import Reply, fake_registry
from tests.support.serve import RunningServe, serve  # noqa: F401

pytestmark = pytest.mark.anyio


async def test_serve_is_v2(serve: RunningServe) -> None:  # noqa: F811
    async with Client() as client:
        result = await client.probe(serve.host)
    assert result.v2.found and result.v2.api_version == "registry/2.0" and result.v2.status == 200
    assert result.verdict in {"v2", "both"}
    assert result.to_json()["verdict"] == result.verdict


async def test_plain_http_server_is_neither_with_evidence() -> None:
    with fake_registry() as fake:
        fake.route("GET", "/v2/", Reply(404, {"Content-Type": "text/html"}, b"<h1>Not Found</h1>"))
        async with Client() as client:
            result = await client.probe(fake.host)
            with pytest.raises(UnsupportedProtocolError) as caught:
                await client.pull(Reference.parse(f"{fake.host}/a/b:c"), fake_path())
    assert result.verdict == "neither" and result.scheme == "http"
    assert [(e.url.split("/", 3)[-1], e.status) for e in result.evidence[1:]] == [("v2/", 404), ("v1/_ping", 404)]
    assert result.evidence[0].url.startswith("https://") and result.evidence[0].error
    assert "no registry API found" in str(caught.value) and "HTTP 404" in str(caught.value)


async def test_server_error_is_reported_not_hidden() -> None:
    with fake_registry() as fake:
        fake.route("GET", "/v2/", Reply(503, {}, b"down"))
        fake.route("GET", "/v1/_ping", Reply(503, {}, b"down"))
        async with Client(retries=1) as client:
            result = await client.probe(fake.host)
            retried = client.api.retry_log.count
    assert result.verdict == "neither"
    assert [e.status for e in result.evidence[1:]] == [503, 503]
    assert "server error" in result.evidence[1].note
    assert retried == 2  # each 503 was retried once, as the policy says, before it became evidence


async def test_refused_connection_is_neither_with_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with Client() as client:
        result = await client.probe(f"127.0.0.1:{port}")
    assert result.verdict == "neither" and result.scheme is None
    assert [e.url.split(":")[0] for e in result.evidence] == ["https", "http"]
    assert all(e.status is None and e.error for e in result.evidence)
    assert result.to_json()["evidence"][1]["error"]


async def test_v1_ping_standalone_flag() -> None:
    with fake_registry() as fake:
        fake.route("GET", "/v2/", Reply(404, {}, b"404 page not found"))
        fake.route(
            "GET",
            "/v1/_ping",
            Reply(200, {"X-Docker-Registry-Version": "0.9.1", "X-Docker-Registry-Standalone": "False"}, b"{}"),
        )
        async with Client() as client:
            result = await client.probe(fake.host)
    assert result.verdict == "v1" and result.v1.version == "0.9.1" and result.v1.standalone is False


def fake_path():  # type: ignore[no-untyped-def]
    from pathlib import Path

    return Path("/nonexistent/regtool-never-written")


def test_nested_json_from_a_hostile_registry_is_not_a_crash() -> None:
    from regtool.client.probe import _json_object

    assert _json_object(b"[" * 100_000 + b"]" * 100_000) is None
    assert _json_object(b'{"a":' * 50_000 + b"1" + b"}" * 50_000) is None
