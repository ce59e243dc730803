"""serve's access control over HTTP: Basic (htpasswd), bearer tokens, anonymous pull, ACLs, v1 with Basic."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from regtool.client.net.challenge import parse_challenges
from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.auth.support import AuthServe, run_auth_serve


@pytest.fixture
def basic_serve(htpasswd: Path) -> Iterator[AuthServe]:
    with run_auth_serve(htpasswd=htpasswd) as server:
        yield server


@pytest.fixture
def token_serve(htpasswd: Path, token_key: tuple[Path, Path, SigningKey], tmp_path: Path) -> Iterator[AuthServe]:
    acl = tmp_path / "acl"
    acl.write_text("alice * pull,push,delete\nbob * pull   # bob only reads\n")
    with run_auth_serve(
        htpasswd=htpasswd, token_auth=True, auth_acl=acl, token_key=token_key[0], token_cert=token_key[1]
    ) as server:
        yield server


def _bearer(response: httpx.Response) -> dict[str, str]:
    (challenge,) = parse_challenges(response.headers["WWW-Authenticate"])
    assert challenge.scheme == "bearer"
    return challenge.params


def _token(server: AuthServe, scope: str, auth: tuple[str, str] | None) -> str:
    response = httpx.get(f"{server.url}/token", params={"service": "regtool", "scope": scope}, auth=auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token"] == body["access_token"]
    assert body["expires_in"] == 300
    return str(body["token"])


def test_basic_auth_challenges_refuses_and_accepts(basic_serve: AuthServe) -> None:
    anonymous = httpx.get(f"{basic_serve.url}/v2/")
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="regtool"'
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
    wrong = httpx.get(f"{basic_serve.url}/v2/", auth=("alice", "nope"))
    assert wrong.status_code == 401
    assert httpx.get(f"{basic_serve.url}/v2/", auth=("mallory", "x")).status_code == 401
    assert httpx.get(f"{basic_serve.url}/v2/", auth=("alice", USERS["alice"])).status_code == 200
    missing = httpx.get(f"{basic_serve.url}/v2/team/app/manifests/latest", auth=("bob", USERS["bob"]))
    assert missing.status_code == 404
    assert httpx.get(f"{basic_serve.url}/v2/_catalog", auth=("bob", USERS["bob"])).json() == {"repositories": []}


def test_v1_uses_basic_when_auth_is_on(basic_serve: AuthServe) -> None:
    assert httpx.get(f"{basic_serve.url}/v1/_ping").status_code == 200
    tags = f"{basic_serve.url}/v1/repositories/team/app/tags"
    refused = httpx.get(tags)
    assert refused.status_code == 401
    assert refused.headers["WWW-Authenticate"].startswith("Basic ")
    assert "error" in refused.json()
    assert httpx.get(tags, auth=("alice", USERS["alice"])).status_code == 404


def test_token_challenge_names_realm_service_and_scope(token_serve: AuthServe) -> None:
    base = httpx.get(f"{token_serve.url}/v2/")
    assert base.status_code == 401
    assert _bearer(base) == {"realm": f"{token_serve.url}/token", "service": "regtool"}
    manifest = httpx.get(f"{token_serve.url}/v2/team/app/manifests/latest")
    assert _bearer(manifest)["scope"] == "repository:team/app:pull"
    upload = httpx.post(f"{token_serve.url}/v2/team/app/blobs/uploads/")
    assert _bearer(upload)["scope"] == "repository:team/app:push,pull"


def test_token_grants_and_insufficient_scope(token_serve: AuthServe) -> None:
    pull = _token(token_serve, "repository:team/app:pull", ("alice", USERS["alice"]))
    headers = {"Authorization": f"Bearer {pull}"}
    assert httpx.get(f"{token_serve.url}/v2/", headers=headers).status_code == 200
    assert httpx.get(f"{token_serve.url}/v2/team/app/manifests/latest", headers=headers).status_code == 404
    # A pull token on another repository, or for a push: 401 insufficient_scope (alice may, the token lacks it).
    other = httpx.get(f"{token_serve.url}/v2/team/other/tags/list", headers=headers)
    assert other.status_code == 401
    assert _bearer(other)["error"] == "insufficient_scope"
    push = httpx.post(f"{token_serve.url}/v2/team/app/blobs/uploads/", headers=headers)
    assert push.status_code == 401
    assert _bearer(push) == {
        "realm": f"{token_serve.url}/token",
        "service": "regtool",
        "scope": "repository:team/app:push,pull",
        "error": "insufficient_scope",
    }
    wider = _token(token_serve, "repository:team/app:pull,push", ("alice", USERS["alice"]))
    started = httpx.post(f"{token_serve.url}/v2/team/app/blobs/uploads/", headers={"Authorization": f"Bearer {wider}"})
    assert started.status_code == 202


def test_authenticated_user_without_the_right_gets_403_denied(token_serve: AuthServe) -> None:
    token = _token(token_serve, "repository:team/app:pull,push", ("bob", USERS["bob"]))
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{token_serve.url}/v2/team/app/tags/list", headers=headers).status_code == 404
    denied = httpx.post(f"{token_serve.url}/v2/team/app/blobs/uploads/", headers=headers)
    assert denied.status_code == 403
    assert denied.json()["errors"][0]["code"] == "DENIED"


def test_token_endpoint_refuses_wrong_password_and_other_services(token_serve: AuthServe) -> None:
    wrong = httpx.get(f"{token_serve.url}/token", params={"scope": "repository:a:pull"}, auth=("alice", "bad"))
    assert wrong.status_code == 401
    assert wrong.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert "bad" not in wrong.text
    other = httpx.get(f"{token_serve.url}/token", params={"service": "elsewhere"})
    assert other.status_code == 400


def test_anonymous_token_grants_nothing_without_anonymous_pull(token_serve: AuthServe) -> None:
    token = _token(token_serve, "repository:team/app:pull", None)
    refused = httpx.get(f"{token_serve.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code == 401
    assert _bearer(refused)["error"] == "insufficient_scope"


def test_anonymous_pull_lets_anyone_read_but_not_write(
    htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    with run_auth_serve(
        htpasswd=htpasswd, token_auth=True, anonymous_pull=True, token_key=token_key[0], token_cert=token_key[1]
    ) as server:
        token = _token(server, "repository:team/app:pull,push", None)
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(f"{server.url}/v2/team/app/tags/list", headers=headers).status_code == 404
        push = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/", headers=headers)
        assert push.status_code == 401
        assert _bearer(push)["error"] == "insufficient_scope"
        # v1 under token auth: Basic, anonymous reads allowed.
        assert httpx.get(f"{server.url}/v1/repositories/team/app/tags").status_code == 404
        assert httpx.put(f"{server.url}/v1/repositories/team/app/tags/latest", json="0" * 64).status_code == 401


def test_expired_foreign_and_garbage_tokens_are_invalid(
    token_serve: AuthServe, token_key: tuple[Path, Path, SigningKey]
) -> None:
    key = token_key[2]
    now = int(time.time())
    claims = {
        "iss": "regtool",
        "sub": "alice",
        "aud": "regtool",
        "exp": now - 120,
        "nbf": now - 600,
        "iat": now - 600,
        "jti": "x",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    expired = key.sign(claims)
    foreign = SigningKey.generate().sign({**claims, "exp": now + 300})
    wrong_audience = key.sign({**claims, "exp": now + 300, "aud": "other"})
    for token in (expired, foreign, wrong_audience, "garbage", "a.b.c"):
        response = httpx.get(f"{token_serve.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401, token
        assert _bearer(response)["error"] == "invalid_token"
    valid = key.sign({**claims, "exp": now + 300})
    ok = httpx.get(f"{token_serve.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {valid}"})
    assert ok.status_code == 404


def test_an_acls_anonymous_lines_hold_under_basic_auth_as_under_tokens(htpasswd: Path, tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("alice * pull,push\nanonymous shared/* pull\n")
    with run_auth_serve(htpasswd=htpasswd, auth_acl=acl) as server:
        # Missing, but readable: 404, where a repository anonymous clients may not read is 401.
        assert httpx.get(f"{server.url}/v2/shared/base/tags/list").status_code == 404
        assert httpx.get(f"{server.url}/v2/shared/base/manifests/1").status_code == 404
        private = httpx.get(f"{server.url}/v2/team/app/tags/list")
        assert private.status_code == 401
        assert private.headers["WWW-Authenticate"] == 'Basic realm="regtool"'
        assert httpx.post(f"{server.url}/v2/shared/base/blobs/uploads/").status_code == 401
        assert httpx.get(f"{server.url}/v2/_catalog").status_code == 401


def test_a_read_only_registry_asks_for_credentials_before_it_says_what_it_refuses(htpasswd: Path) -> None:
    # As distribution: authentication comes first, so an anonymous client learns nothing of the registry's mode.
    with run_auth_serve(htpasswd=htpasswd, read_only=True) as server:
        for method, path in (
            ("POST", "/v2/team/app/blobs/uploads/"),
            ("PUT", "/v2/team/app/manifests/1"),
            ("DELETE", f"/v2/team/app/manifests/sha256:{'a' * 64}"),
            ("PUT", "/v1/repositories/team/app/tags/latest"),
        ):
            anonymous = httpx.request(method, f"{server.url}{path}")
            assert anonymous.status_code == 401, (method, path)
        signed_in = httpx.post(f"{server.url}/v2/team/app/blobs/uploads/", auth=("alice", USERS["alice"]))
        assert signed_in.status_code == 405
        assert signed_in.json()["errors"][0]["code"] == "UNSUPPORTED"


def test_v1_image_reads_follow_the_acl_of_the_repositories_holding_the_image(htpasswd: Path, tmp_path: Path) -> None:
    from tests.gc.test_v1 import push_image, tag

    acl = tmp_path / "acl"
    acl.write_text("alice * pull,push\nbob bob/* pull,push\n")
    with run_auth_serve(htpasswd=htpasswd, auth_acl=acl) as server:
        with httpx.Client(base_url=server.url, auth=("alice", USERS["alice"]), timeout=30) as alice:
            secret = push_image(alice, b"alice's secret layer")
            tag(alice, "alice/secret", "1", secret)
            assert alice.get(f"/v1/images/{secret.id}/layer").content == secret.layer
        with httpx.Client(base_url=server.url, auth=("bob", USERS["bob"]), timeout=30) as bob:
            for what in ("json", "ancestry", "layer"):
                refused = bob.get(f"/v1/images/{secret.id}/{what}")
                assert refused.status_code == 403, what
                assert secret.layer not in refused.content
            # Bob's own push works, an image he may pull reads, and one that is nowhere is a 404 for all.
            own = push_image(bob, b"bob's layer")
            tag(bob, "bob/app", "1", own)
            assert bob.get(f"/v1/images/{own.id}/layer").content == own.layer
            assert bob.get(f"/v1/images/{'0' * 64}/json").status_code == 404
