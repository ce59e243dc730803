"""pytest-httpx for what a real server will not do on demand: scheme choice, probing, auth flows, paging.

Only API calls are mocked (httpx's transport is patched); blob bodies move in worker threads and are tested
against real servers (tests/client/test_pull_errors.py, tests/faults). Hosts are fictitious: nothing leaves
the process.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from regtool.client import Client
from regtool.client.net.retry import RetryPolicy
from regtool.digest import Digest
from regtool.errors import NotFoundError, RegistryError, TransportError, UnsupportedProtocolError
from regtool.reference import Reference

pytestmark = pytest.mark.anyio

HOST = "registry.example"
V2 = {"Docker-Distribution-API-Version": "registry/2.0"}


async def _pull(dest: Path, **kwargs: object) -> object:
    async with Client() as client:
        client.api.retry = RetryPolicy(total=1, backoff_factor=0.001)
        return await client.pull(Reference.parse(f"{HOST}/team/app:1"), dest, **kwargs)  # type: ignore[arg-type]


async def test_manifest_unknown(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/team/app/manifests/1",
        status_code=404,
        json={"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": {"Tag": "1"}}]},
    )
    with pytest.raises(NotFoundError, match="MANIFEST_UNKNOWN: manifest unknown"):
        await _pull(tmp_path / "out")


async def test_no_downgrade_once_https_answered(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"https://{HOST}/v2/", status_code=404, text="nothing here")
    httpx_mock.add_response(url=f"https://{HOST}/v1/_ping", status_code=404, text="nothing here")
    # http is asked at the same time (so a plain-HTTP registry costs no extra round trip), but where https
    # answered, even a perfect v2 answer over http is never used.
    httpx_mock.add_response(url=f"http://{HOST}/v2/", headers=V2, json={}, is_optional=True)
    async with Client(insecure=True) as client:
        result = await client.probe(HOST)
        assert await client.api.base_url(HOST) == f"https://{HOST}"
    assert result.verdict == "neither" and result.scheme == "https"
    assert [e.status for e in result.evidence] == [404, 404]
    assert all(e.url.startswith("https://") for e in result.evidence)
    assert not any(r.url.scheme == "http" and r.url.path != "/v2/" for r in httpx_mock.get_requests())


async def test_http_only_after_https_failed_to_connect_when_insecure(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=f"https://{HOST}/v2/")
    httpx_mock.add_response(url=f"http://{HOST}/v2/", headers=V2, json={})
    httpx_mock.add_response(url=f"http://{HOST}/v1/_ping", status_code=404)
    async with Client(insecure=True) as client:
        result = await client.probe(HOST)
    assert result.verdict == "v2" and result.scheme == "http"
    assert result.evidence[0].error is not None and "cannot connect" in result.evidence[0].error


async def test_secure_host_never_tries_http(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_exception(httpx.ConnectError("refused"), url=f"https://{HOST}/v2/", is_reusable=True)
    async with Client(retries=0) as client:
        result = await client.probe(HOST)
        with pytest.raises(TransportError, match=f"https://{HOST}/v2/"):
            await client.api.base_url(HOST)
    assert result.verdict == "neither" and result.scheme is None
    assert all(r.url.scheme == "https" for r in httpx_mock.get_requests())


async def test_probe_retries_a_503_then_sees_v2(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"https://{HOST}/v2/", status_code=503, headers={"Retry-After": "0"})
    httpx_mock.add_response(url=f"https://{HOST}/v2/", headers=V2, json={})
    httpx_mock.add_response(url=f"https://{HOST}/v1/_ping", status_code=404)
    async with Client() as client:
        result = await client.probe(HOST)
        retries = client.api.retry_log.count
    assert result.verdict == "v2" and result.v2.status == 200
    assert retries == 1
    assert len(httpx_mock.get_requests(url=f"https://{HOST}/v2/")) == 2


async def test_probe_gives_up_on_a_lasting_503_and_reports_it(httpx_mock: HTTPXMock, tmp_path: Path) -> None:
    httpx_mock.add_response(url=f"https://{HOST}/v2/", status_code=503, headers={"Retry-After": "0"}, is_reusable=True)
    # v1 answers, but a failing v2 must not turn into a quiet v1 pull (any other request fails the test).
    httpx_mock.add_response(url=f"https://{HOST}/v1/_ping", headers={"X-Docker-Registry-Version": "0.9.1"}, json={})
    # The manifest GET goes first, in place of the ping; its lasting 503 says nothing of v2, so the probe decides.
    manifest = f"https://{HOST}/v2/a/b/manifests/1"
    httpx_mock.add_response(url=manifest, status_code=503, headers={"Retry-After": "0"}, is_reusable=True)
    async with Client(retries=2) as client:
        with pytest.raises(RegistryError, match="HTTP 503"):
            await client.pull(Reference.parse(f"{HOST}/a/b:1"), tmp_path / "out")
    assert len(httpx_mock.get_requests(url=f"https://{HOST}/v2/")) == 3
    assert len(httpx_mock.get_requests(url=manifest)) == 3
    assert not (tmp_path / "out").exists()


async def test_probe_401_bearer_challenge_is_v2(httpx_mock: HTTPXMock) -> None:
    challenge = 'Bearer realm="https://auth.example/token",service="registry.example"'
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/",
        status_code=401,
        headers={**V2, "WWW-Authenticate": challenge},
        json={"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]},
    )
    httpx_mock.add_response(url=f"https://{HOST}/v1/_ping", status_code=404)
    async with Client() as client:
        result = await client.probe(HOST)
    assert result.verdict == "v2"
    assert (result.v2.status, result.v2.auth_scheme, result.v2.realm, result.v2.service) == (
        401,
        "bearer",
        "https://auth.example/token",
        "registry.example",
    )
    assert not httpx_mock.get_requests(url="https://auth.example/token")


async def test_probe_v1_only_and_both(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(url=f"https://{HOST}/v2/", status_code=404, text="404 page not found")
    httpx_mock.add_response(
        url=f"https://{HOST}/v1/_ping",
        headers={"X-Docker-Registry-Version": "0.9.1", "X-Docker-Registry-Standalone": "True"},
        json={},
    )
    async with Client() as client:
        result = await client.probe(HOST)
        assert result.verdict == "v1" and result.v1.version == "0.9.1" and result.v1.standalone is True
        with pytest.raises(UnsupportedProtocolError):
            await client.pull(Reference.parse(f"{HOST}/a/b:1"), Path("/nonexistent/never"), protocol="v2")


async def test_delete_unsupported_is_a_clear_error(httpx_mock: HTTPXMock) -> None:
    body = b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}'
    digest = str(Digest.of(body))
    httpx_mock.add_response(
        method="GET",
        url=f"https://{HOST}/v2/team/app/manifests/{digest}",
        headers={"Content-Type": "application/vnd.oci.image.index.v1+json"},
        content=body,
    )
    httpx_mock.add_response(
        method="DELETE",
        url=f"https://{HOST}/v2/team/app/manifests/{digest}",
        status_code=405,
        json={"errors": [{"code": "UNSUPPORTED", "message": "The operation is unsupported."}]},
    )
    async with Client() as client:
        with pytest.raises(UnsupportedProtocolError, match="does not allow deleting"):
            await client.delete(Reference.parse(f"{HOST}/team/app@{digest}"))


async def test_tags_follow_link_pagination(httpx_mock: HTTPXMock) -> None:
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/team/app/tags/list",
        headers={"Link": '</v2/team/app/tags/list?n=2&last=b>; rel="next"'},
        json={"name": "team/app", "tags": ["a", "b"]},
    )
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/team/app/tags/list?n=2&last=b",
        headers={"Link": f'<https://{HOST}/v2/team/app/tags/list?n=2&last=d>; rel="next"'},
        json={"name": "team/app", "tags": ["c", "d"]},
    )
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/team/app/tags/list?n=2&last=d", json={"name": "team/app", "tags": ["e"]}
    )
    async with Client() as client:
        assert await client.tags(Reference.parse_repository(f"{HOST}/team/app")) == ["a", "b", "c", "d", "e"]


async def test_bearer_flow_token_cache_and_scopes(httpx_mock: HTTPXMock) -> None:
    challenge = f'Bearer realm="https://auth.example/token",service="{HOST}",scope="repository:team/app:pull"'
    url = f"https://{HOST}/v2/team/app/tags/list"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": challenge}, match_headers={})
    httpx_mock.add_response(
        url=f"https://auth.example/token?service={HOST}&scope=repository%3Ateam%2Fapp%3Apull",
        json={"token": "T1", "expires_in": 3600},
    )
    httpx_mock.add_response(
        url=url, match_headers={"Authorization": "Bearer T1"}, json={"tags": ["x"]}, is_reusable=True
    )
    async with Client(username="alice", password="s3cret") as client:
        repo = Reference.parse_repository(f"{HOST}/team/app")
        assert await client.tags(repo) == ["x"]
        assert await client.tags(repo) == ["x"]
    token_requests = [r for r in httpx_mock.get_requests() if r.url.host == "auth.example"]
    assert len(token_requests) == 1
    assert token_requests[0].headers["Authorization"].startswith("Basic ")
    # 401, retry with the token, then the second listing straight with the cached token (a tokenless request
    # would match no registered response: the only 401 is used up).
    assert len(httpx_mock.get_requests(url=url)) == 3


async def test_token_refused_is_auth_error_without_credentials_in_message(httpx_mock: HTTPXMock) -> None:
    from regtool.errors import AuthError

    challenge = 'Bearer realm="https://auth.example/token",service="svc"'
    httpx_mock.add_response(
        url=f"https://{HOST}/v2/team/app/tags/list", status_code=401, headers={"WWW-Authenticate": challenge}
    )
    httpx_mock.add_response(
        url="https://auth.example/token?service=svc&scope=repository%3Ateam%2Fapp%3Apull", status_code=401
    )
    async with Client(username="alice", password="hunter2") as client:
        with pytest.raises(AuthError) as caught:
            await client.tags(Reference.parse_repository(f"{HOST}/team/app"))
    assert "hunter2" not in str(caught.value) and "auth.example" in str(caught.value)


async def test_anonymous_token_and_basic_challenge(httpx_mock: HTTPXMock) -> None:
    challenge = 'Bearer realm="https://auth.example/token",service="svc"'
    url = f"https://{HOST}/v2/team/app/tags/list"
    httpx_mock.add_response(url=url, status_code=401, headers={"WWW-Authenticate": challenge})
    httpx_mock.add_response(
        url="https://auth.example/token?service=svc&scope=repository%3Ateam%2Fapp%3Apull", json={"access_token": "anon"}
    )
    httpx_mock.add_response(url=url, match_headers={"Authorization": "Bearer anon"}, json={"tags": []})
    async with Client() as client:
        assert await client.tags(Reference.parse_repository(f"{HOST}/team/app")) == []
    token = next(r for r in httpx_mock.get_requests() if r.url.host == "auth.example")
    assert "Authorization" not in token.headers
