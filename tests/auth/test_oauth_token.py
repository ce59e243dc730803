"""serve's OAuth2 token endpoint (``POST /token``) and refresh tokens, against a real serve.

The password and refresh-token grants, refresh tokens from ``GET /token?offline_token=true``, the refusals
(wrong password, bad or expired refresh tokens, unknown grants, missing fields), a refresh token never working
as an access token, and regtool's own Client pushing and pulling with an identity token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from regtool.client import Client
from regtool.errors import AuthError
from regtool.reference import Reference
from regtool.server.auth.jwt import SigningKey
from regtool.server.auth.policy import AccessPolicy
from regtool.server.auth.token import REFRESH_TTL, TokenIssuer
from regtool.server.config import RequestEvent
from tests.auth.conftest import USERS
from tests.auth.support import AuthServe, run_auth_serve, write_docker_config
from tests.support.images import BuiltImage, write_image

ALICE = ("alice", USERS["alice"])
BOB = ("bob", USERS["bob"])
REPO = "team/app"
BLOB = b"oauth blob"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
JSON_NO_STORE = {"content-type": "application/json", "cache-control": "no-store"}


@pytest.fixture
def oauth_serve(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> Iterator[tuple[AuthServe, list[RequestEvent]]]:
    """Token auth: alice may do anything, bob only pull; anonymous clients nothing."""
    events: list[RequestEvent] = []
    acl = tmp_path / "acl"
    acl.write_text("alice * pull,push,delete\nbob * pull\n")
    with run_auth_serve(
        tmp_path / "registry",
        htpasswd=htpasswd,
        token_auth=True,
        auth_acl=acl,
        token_key=token_key[0],
        token_cert=token_key[1],
        observer=events.append,
    ) as server:
        yield server, events


@pytest.fixture
def server(oauth_serve: tuple[AuthServe, list[RequestEvent]]) -> AuthServe:
    return oauth_serve[0]


def _post(server: AuthServe, form: dict[str, str] | list[tuple[str, str]]) -> httpx.Response:
    """POST ``form`` URL-encoded; a list of pairs may name a parameter twice."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return httpx.post(f"{server.url}/token", content=urlencode(form), headers=headers)


def _password_form(user: tuple[str, str], **extra: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": user[0], "password": user[1], "service": "regtool"}
    form["client_id"] = "containerd-client"
    return {**form, **extra}


def _refresh_form(refresh_token: str, **extra: str) -> dict[str, str]:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "service": "regtool", "client_id": "docker"}
    return {**form, **extra}


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return data


def _oauth_error(status: int, error: str, message: str) -> dict[str, Any]:
    code = "UNAUTHORIZED" if status == 401 else "UNSUPPORTED"
    return {"error": error, "error_description": message, "errors": [{"code": code, "message": message}]}


def _assert_refused(response: httpx.Response, status: int, error: str, message: str) -> None:
    assert response.status_code == status, response.text
    assert response.json() == _oauth_error(status, error, message)
    assert response.headers["cache-control"] == "no-store"
    if status == 401:
        assert response.headers["www-authenticate"] == 'Basic realm="regtool"'


def _assert_access_body(body: dict[str, Any], scope: str, *, refresh: bool) -> None:
    expected = {"access_token", "token_type", "expires_in", "issued_at", "scope"} | (
        {"refresh_token"} if refresh else set()
    )
    assert set(body) == expected
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300 and body["scope"] == scope
    assert time.strptime(body["issued_at"], "%Y-%m-%dT%H:%M:%SZ")


def _refresh_token(server: AuthServe, user: tuple[str, str]) -> str:
    response = _post(server, _password_form(user, access_type="offline"))
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _push_blob(server: AuthServe, token: str) -> httpx.Response:
    url = f"{server.url}/v2/{REPO}/blobs/uploads/"
    headers = {**_bearer(token), "Content-Type": "application/octet-stream"}
    return httpx.post(url, params={"digest": BLOB_DIGEST}, content=BLOB, headers=headers)


# -- password grant -------------------------------------------------------------------------------------------


def test_password_grant_without_offline_gives_only_an_access_token(server: AuthServe) -> None:
    response = _post(server, _password_form(BOB, scope=f"repository:{REPO}:pull,push"))
    assert response.status_code == 200, response.text
    assert {k: response.headers[k] for k in JSON_NO_STORE} == JSON_NO_STORE
    body = response.json()
    # bob may only pull: the granted scope says so, and the token carries just that.
    _assert_access_body(body, f"repository:{REPO}:pull", refresh=False)
    claims = _claims(body["access_token"])
    assert claims["sub"] == "bob" and claims["aud"] == "regtool"
    assert claims["access"] == [{"type": "repository", "name": REPO, "actions": ["pull"]}]


def test_password_grant_offline_gives_a_refresh_token_without_rights(server: AuthServe) -> None:
    response = _post(server, _password_form(ALICE, access_type="offline"))
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_access_body(body, "", refresh=True)  # no scope asked: an access token for nothing (docker login)
    claims = _claims(body["refresh_token"])
    assert set(claims) == {"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "token_use"}
    assert claims["sub"] == "alice" and claims["aud"] == "regtool#refresh" and claims["token_use"] == "refresh"
    assert claims["exp"] - claims["iat"] == REFRESH_TTL
    assert "access" not in claims


@pytest.mark.parametrize(
    "user",
    [("alice", "wrong"), ("mallory", "anything")],
    ids=["wrong-password", "unknown-user"],
)
def test_password_grant_refuses_wrong_credentials(server: AuthServe, user: tuple[str, str]) -> None:
    response = _post(server, _password_form(user, access_type="offline"))
    _assert_refused(response, 401, "invalid_grant", "invalid username or password")


# -- refresh grant --------------------------------------------------------------------------------------------


def test_refresh_grant_gives_working_access_tokens_under_the_policy(server: AuthServe) -> None:
    alice_refresh = _refresh_token(server, ALICE)
    response = _post(server, _refresh_form(alice_refresh, scope=f"repository:{REPO}:pull,push registry:catalog:*"))
    assert response.status_code == 200, response.text
    body = response.json()
    _assert_access_body(body, f"repository:{REPO}:pull,push registry:catalog:*", refresh=True)
    assert body["refresh_token"] == alice_refresh  # oauth.md: the refresh grant hands back the same one
    pushed = _push_blob(server, body["access_token"])
    assert pushed.status_code == 201, pushed.text

    bob_refresh = _refresh_token(server, BOB)
    response = _post(server, _refresh_form(bob_refresh, scope=f"repository:{REPO}:pull,push"))
    assert response.status_code == 200, response.text
    bob = response.json()
    _assert_access_body(bob, f"repository:{REPO}:pull", refresh=True)
    read = httpx.get(f"{server.url}/v2/{REPO}/blobs/{BLOB_DIGEST}", headers=_bearer(bob["access_token"]))
    assert read.status_code == 200 and read.content == BLOB
    denied = _push_blob(server, bob["access_token"])
    assert denied.status_code == 403
    assert denied.json() == {
        "errors": [{"code": "DENIED", "message": f"requested access to the resource is denied: repository:{REPO}:push"}]
    }
    # A token for another repository: the policy would allow the pull, so 401 asks for a wider token.
    other = _post(server, _refresh_form(bob_refresh, scope="repository:other/app:pull")).json()
    missing = httpx.get(f"{server.url}/v2/{REPO}/blobs/{BLOB_DIGEST}", headers=_bearer(other["access_token"]))
    assert missing.status_code == 401
    assert 'error="insufficient_scope"' in missing.headers["www-authenticate"]


def test_refresh_token_is_never_an_access_token(server: AuthServe) -> None:
    refresh = _refresh_token(server, ALICE)
    for url in (f"{server.url}/v2/", f"{server.url}/v2/{REPO}/tags/list"):
        response = httpx.get(url, headers=_bearer(refresh))
        assert response.status_code == 401, url
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
        assert response.json() == {
            "errors": [{"code": "UNAUTHORIZED", "message": "the bearer token is invalid or expired"}]
        }


def test_access_token_is_never_a_refresh_token(server: AuthServe) -> None:
    access = _post(server, _password_form(ALICE)).json()["access_token"]
    response = _post(server, _refresh_form(access))
    _assert_refused(response, 401, "invalid_grant", "invalid refresh token: not a refresh token of this server")


def _tampered(token: str) -> str:
    """``token`` with its subject changed to bob, keeping alice's signature."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "bob"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_refresh_grant_refuses_tampered_expired_foreign_and_orphaned_tokens(
    server: AuthServe, token_key: tuple[Path, Path, SigningKey]
) -> None:
    ours = TokenIssuer(token_key[2], htpasswd=None, policy=AccessPolicy())
    month_ago = time.time() - REFRESH_TTL - 60
    cases = {
        _tampered(_refresh_token(server, ALICE)): "invalid refresh token: bad signature",
        "not-a-jwt": "invalid refresh token: not a compact JWS",
        ours.issue_refresh("alice", now=month_ago): "invalid refresh token: expired",
        # Another key: a token from some other server.
        TokenIssuer(SigningKey.generate(), htpasswd=None, policy=AccessPolicy()).issue_refresh(
            "alice"
        ): "invalid refresh token: bad signature",
        TokenIssuer(token_key[2], htpasswd=None, policy=AccessPolicy(), service="other").issue_refresh(
            "alice"
        ): "invalid refresh token: issued for another service",
        # Signed by our key, but carol is not in the htpasswd file serve loaded.
        ours.issue_refresh("carol"): "invalid refresh token: its user is not known to this server",
    }
    for token, message in cases.items():
        _assert_refused(_post(server, _refresh_form(token)), 401, "invalid_grant", message)


# -- malformed requests ---------------------------------------------------------------------------------------


def test_unknown_grant_type_is_400(server: AuthServe) -> None:
    response = _post(server, {"grant_type": "client_credentials", "service": "regtool", "client_id": "x"})
    message = "grant_type 'client_credentials' is not supported: use password or refresh_token"
    _assert_refused(response, 400, "unsupported_grant_type", message)


@pytest.mark.parametrize(
    ("drop", "missing"),
    [
        ("grant_type", "grant_type"),
        ("service", "service"),
        ("username", "username"),
        ("password", "password"),
    ],
)
def test_password_grant_missing_fields_are_400(server: AuthServe, drop: str, missing: str) -> None:
    form = _password_form(ALICE)
    del form[drop]
    _assert_refused(_post(server, form), 400, "invalid_request", f"missing parameter {missing}")


def test_refresh_grant_missing_or_empty_token_is_400(server: AuthServe) -> None:
    form = _refresh_form("")
    _assert_refused(_post(server, form), 400, "invalid_request", "missing parameter refresh_token")
    del form["refresh_token"]
    _assert_refused(_post(server, form), 400, "invalid_request", "missing parameter refresh_token")


def test_wrong_service_and_repeated_fields_are_400(server: AuthServe) -> None:
    response = _post(server, _password_form(ALICE, service="elsewhere"))
    _assert_refused(response, 400, "invalid_request", "unknown service 'elsewhere'")
    repeated = [*_password_form(ALICE).items(), ("username", "bob")]
    _assert_refused(_post(server, repeated), 400, "invalid_request", "parameter username given more than once")


def test_bodies_that_are_not_a_form_are_400(server: AuthServe) -> None:
    as_json = httpx.post(f"{server.url}/token", json=_password_form(ALICE))
    _assert_refused(as_json, 400, "invalid_request", "the body must be application/x-www-form-urlencoded")
    form_type = {"Content-Type": "application/x-www-form-urlencoded"}
    bad_utf8 = httpx.post(f"{server.url}/token", content=b"grant_type=password&username=%ff", headers=form_type)
    _assert_refused(bad_utf8, 400, "invalid_request", "the form is not valid URL-encoded UTF-8")
    huge = httpx.post(f"{server.url}/token", content=b"scope=" + b"a" * 70_000, headers=form_type)
    _assert_refused(huge, 400, "invalid_request", "the form is larger than 65536 bytes")
    empty = httpx.post(f"{server.url}/token", content=b"", headers=form_type)
    _assert_refused(empty, 400, "invalid_request", "missing parameter grant_type")


# -- GET /token?offline_token=true ----------------------------------------------------------------------------


def test_get_with_offline_token_returns_a_refresh_token_for_users_only(server: AuthServe) -> None:
    params = {"service": "regtool", "scope": f"repository:{REPO}:pull", "offline_token": "true", "client_id": "docker"}
    response = httpx.get(f"{server.url}/token", params=params, auth=ALICE)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"token", "access_token", "expires_in", "issued_at", "refresh_token"}
    assert _claims(body["refresh_token"])["token_use"] == "refresh"
    # docker then trades it in with a POST: it works like the password it replaces.
    again = _post(server, _refresh_form(body["refresh_token"], scope=f"repository:{REPO}:push"))
    assert again.status_code == 200 and again.json()["scope"] == f"repository:{REPO}:push"

    without = httpx.get(f"{server.url}/token", params={**params, "offline_token": "false"}, auth=ALICE)
    assert without.status_code == 200 and "refresh_token" not in without.json()
    anonymous = httpx.get(f"{server.url}/token", params=params)
    assert anonymous.status_code == 200
    assert set(anonymous.json()) == {"token", "access_token", "expires_in", "issued_at"}
    wrong = httpx.get(f"{server.url}/token", params=params, auth=("alice", "wrong"))
    assert wrong.status_code == 401
    assert wrong.json() == {"errors": [{"code": "UNAUTHORIZED", "message": "invalid username or password"}]}


# -- regtool's Client with an identity token ------------------------------------------------------------------


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1.0", [{"etc/motd": b"hello oauth"}, {"bin/app": b"\x7fELF" + bytes(2000)}])


@pytest.mark.anyio
async def test_client_pushes_and_pulls_with_an_identity_token(
    oauth_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path
) -> None:
    server, events = oauth_serve
    image = _image(tmp_path)
    ref = Reference.parse(f"{server.host}/{REPO}:1.0")
    # docker config.json keeps what docker login got as "identitytoken"; the Client reads it as <token>.
    alice = _refresh_token(server, ALICE)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"auths": {server.host: {"identitytoken": alice}}})
    before = len(events)
    async with Client() as client:
        pushed = await client.push(f"{tmp_path / 'src'}:1.0", ref)
    assert pushed.digest == image.manifest.digest
    token_requests = [(e.method, e.status) for e in events[before:] if e.path == "/token"]
    assert token_requests and set(token_requests) == {("POST", 200)}

    bob = _refresh_token(server, BOB)
    async with Client(username="<token>", password=bob) as client:
        pulled = await client.pull(ref, tmp_path / "out")
        assert pulled.digest == image.manifest.digest
        with pytest.raises(AuthError):
            await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{server.host}/{REPO}:2.0"))
    async with Client(username="<token>", password="forged-refresh-token") as client:
        with pytest.raises(AuthError, match="HTTP 401"):
            await client.tags(Reference.parse(f"{server.host}/{REPO}"))
