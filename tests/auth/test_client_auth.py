"""The client against a real serve with Basic auth, token auth and TLS: push and pull end to end, credentials
from every source, and the failures (wrong password, token endpoint down or broken, malformed challenge)."""

from __future__ import annotations

import datetime
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import AuthError, RegtoolError, TransportError
from regtool.reference import Reference
from regtool.server.auth.jwt import SigningKey
from regtool.server.config import RequestEvent
from tests.auth.conftest import USERS
from tests.auth.support import (
    AuthServe,
    basic_auth_entry,
    install_helper,
    run_auth_serve,
    write_docker_config,
)
from tests.client.fakeregistry import V2_HEADER, Reply, fake_registry
from tests.support.images import BuiltImage, assert_layout_holds, write_image
from tests.support.pki import Pki
from tests.support.serve import free_port

pytestmark = pytest.mark.anyio

ALICE = ("alice", USERS["alice"])


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1.0", [{"etc/motd": b"hello auth"}, {"bin/app": b"\x7fELF" + bytes(3000)}])


async def _push_pull(server: AuthServe, tmp_path: Path, image: BuiltImage, **client: object) -> None:
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(**client) as c:  # type: ignore[arg-type]
        pushed = await c.push(f"{tmp_path / 'src'}:1.0", ref)
        assert pushed.digest == image.manifest.digest
    async with Client(**client) as c:  # type: ignore[arg-type]
        pulled = await c.pull(ref, tmp_path / "out")
    assert pulled.digest == image.manifest.digest
    assert_layout_holds(tmp_path / "out", image)


def _assert_clean(exc: BaseException, *secrets: str) -> None:
    for text in (str(exc), repr(exc), repr(exc.args)):
        for secret in secrets:
            assert secret not in text, text


@pytest.fixture
def basic_serve(tmp_path: Path, htpasswd: Path) -> Iterator[AuthServe]:
    with run_auth_serve(tmp_path / "registry", htpasswd=htpasswd) as server:
        yield server


# -- Basic (htpasswd) ---------------------------------------------------------------------------------------


async def test_basic_auth_push_pull_with_explicit_credentials(basic_serve: AuthServe, tmp_path: Path) -> None:
    image = _image(tmp_path)
    await _push_pull(basic_serve, tmp_path, image, username="alice", password=USERS["alice"])


async def test_basic_auth_credentials_from_docker_config(basic_serve: AuthServe, tmp_path: Path) -> None:
    image = _image(tmp_path)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"auths": {basic_serve.host: basic_auth_entry(*ALICE)}})
    await _push_pull(basic_serve, tmp_path, image)


async def test_basic_auth_credentials_from_a_credential_helper(
    basic_serve: AuthServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _image(tmp_path)
    env = install_helper(
        tmp_path / "bin", "fake", tmp_path / "store.json", tmp_path / "helper.log", {basic_serve.host: ALICE}
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"credHelpers": {basic_serve.host: "fake"}})
    await _push_pull(basic_serve, tmp_path, image)
    # One lookup per Client (push, then pull), not one per request.
    assert (tmp_path / "helper.log").read_text().split() == ["get", "get"]


async def test_explicit_beats_environment_beats_docker_config(
    basic_serve: AuthServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _image(tmp_path)
    write_docker_config(
        Path(os.environ["DOCKER_CONFIG"]), {"auths": {basic_serve.host: basic_auth_entry("alice", "from-config")}}
    )
    monkeypatch.setenv("REGTOOL_USERNAME", "alice")
    monkeypatch.setenv("REGTOOL_PASSWORD", USERS["alice"])
    await _push_pull(basic_serve, tmp_path, image)  # the environment wins over the (wrong) config entry
    monkeypatch.setenv("REGTOOL_PASSWORD", "from-env")
    ref = Reference.parse(f"{basic_serve.host}/team/app:1.0")
    async with Client(username="alice", password=USERS["alice"]) as client:  # explicit wins over the environment
        assert (await client.manifest(ref)).digest == image.manifest.digest
    async with Client() as client:
        with pytest.raises(AuthError) as caught:
            await client.manifest(ref)
    _assert_clean(caught.value, "from-env", "from-config")


async def test_wrong_password_is_an_auth_error_and_writes_nothing(basic_serve: AuthServe, tmp_path: Path) -> None:
    ref = Reference.parse(f"{basic_serve.host}/team/app:1.0")
    async with Client(username="alice", password="hunter2-wrong") as client:
        with pytest.raises(AuthError) as caught:
            await client.pull(ref, tmp_path / "out")
    assert caught.value.exit_code == 4
    assert "HTTP 401" in str(caught.value)
    _assert_clean(caught.value, "hunter2-wrong")
    assert not (tmp_path / "out").exists()


# -- bearer tokens --------------------------------------------------------------------------------------------


@pytest.fixture
def token_serve(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> Iterator[tuple[AuthServe, list[RequestEvent]]]:
    events: list[RequestEvent] = []
    acl = tmp_path / "acl"
    acl.write_text("alice * *\nbob * pull\n")
    with run_auth_serve(
        tmp_path / "registry",
        htpasswd=htpasswd,
        token_auth=True,
        anonymous_pull=True,
        auth_acl=acl,
        token_key=token_key[0],
        token_cert=token_key[1],
        observer=events.append,
    ) as server:
        yield server, events


async def test_token_auth_push_pull_with_one_token_per_scope(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path
) -> None:
    server, events = token_serve
    image = _image(tmp_path)
    await _push_pull(server, tmp_path, image, username="alice", password=USERS["alice"])
    token_requests = [e for e in events if e.path == "/token"]
    # push: one pull,push token (plus at most one for the probe); pull: one pull token. Never one per blob.
    assert 2 <= len(token_requests) <= 4, [e.query for e in token_requests]
    assert all(e.status == 200 for e in token_requests)


async def test_pull_asks_one_repository_token_and_sends_no_ping(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path
) -> None:
    server, events = token_serve
    image = _image(tmp_path)
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(username="alice", password=USERS["alice"]) as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
    events.clear()
    async with Client() as client:  # anonymous: the token the manifest's own 401 asks for
        pulled = await client.pull(ref, tmp_path / "out")
    assert pulled.digest == image.manifest.digest
    assert_layout_holds(tmp_path / "out", image)
    manifest = "/v2/team/app/manifests/1.0"
    assert [(e.method, e.path, e.status) for e in events[:3]] == [
        ("GET", manifest, 401),
        ("GET", "/token", 200),
        ("GET", manifest, 200),
    ]
    tokens = [e for e in events if e.path == "/token"]
    assert len(tokens) == 1 and "scope=repository%3Ateam%2Fapp%3Apull" in tokens[0].query
    assert not [e for e in events if e.path == "/v2/"]


async def test_anonymous_pull_and_denied_push(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path
) -> None:
    server, _ = token_serve
    image = _image(tmp_path)
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(username="alice", password=USERS["alice"]) as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
    async with Client() as client:  # no credentials anywhere: an anonymous token
        await client.pull(ref, tmp_path / "anon")
    assert_layout_holds(tmp_path / "anon", image)
    async with Client(username="bob", password=USERS["bob"]) as client:
        with pytest.raises(AuthError) as caught:
            await client.push(f"{tmp_path / 'src'}:1.0", Reference.parse(f"{server.host}/team/bob:1.0"))
    assert "DENIED" in str(caught.value) and "HTTP 403" in str(caught.value)
    _assert_clean(caught.value, USERS["bob"])


async def test_token_refreshed_when_it_expires_client_side(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, events = token_serve
    _image(tmp_path)
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(username="alice", password=USERS["alice"]) as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
        await client.tags(ref)
        before = len([e for e in events if e.path == "/token"])
        await client.tags(ref)
        assert len([e for e in events if e.path == "/token"]) == before  # cached
        real = time.monotonic
        monkeypatch.setattr("regtool.client.net.auth.time.monotonic", lambda: real() + 400)
        assert await client.tags(ref) == ["1.0"]
    assert len([e for e in events if e.path == "/token"]) == before + 1


class _ClockAhead(datetime.datetime):
    """PyJWT's clock, 1000 s ahead."""

    @classmethod
    def now(cls, tz: datetime.tzinfo | None = None) -> _ClockAhead:
        moment = datetime.datetime.now(tz) + datetime.timedelta(seconds=1000)
        return cls.fromtimestamp(moment.timestamp(), tz)


async def test_token_refetched_once_when_the_server_calls_it_expired(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, events = token_serve
    _image(tmp_path)
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(username="alice", password=USERS["alice"]) as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
        await client.tags(ref)
        # The server's clock jumps past the token's expiry: it answers invalid_token, the client gets a new one.
        # Both clocks move: the one tokens are issued by, and PyJWT's, which checks them.
        real = time.time
        monkeypatch.setattr("regtool.server.auth.token.time.time", lambda: real() + 1000)
        monkeypatch.setattr("jwt.api_jwt.datetime", _ClockAhead)
        events.clear()
        assert await client.tags(ref) == ["1.0"]
    assert [(e.path, e.status) for e in events] == [
        ("/v2/team/app/tags/list", 401),
        ("/token", 200),
        ("/v2/team/app/tags/list", 200),
    ]


async def test_token_endpoint_refuses_wrong_password(
    token_serve: tuple[AuthServe, list[RequestEvent]], tmp_path: Path
) -> None:
    server, _ = token_serve
    ref = Reference.parse(f"{server.host}/team/app:1.0")
    async with Client(username="alice", password="not-her-password") as client:
        with pytest.raises(AuthError) as caught:
            await client.pull(ref, tmp_path / "out")
    assert "token request to" in str(caught.value) and "HTTP 401" in str(caught.value)
    _assert_clean(caught.value, "not-her-password")
    assert not (tmp_path / "out").exists()


async def test_realm_on_another_host_gets_the_credentials_and_works(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    image = _image(tmp_path)
    auth_events: list[RequestEvent] = []
    shared = {"token_key": token_key[0], "token_cert": token_key[1], "htpasswd": htpasswd, "token_auth": True}
    with run_auth_serve(observer=auth_events.append, **shared) as auth_server:
        with run_auth_serve(tmp_path / "registry", token_realm=f"{auth_server.url}/token", **shared) as registry:
            await _push_pull(registry, tmp_path, image, username="alice", password=USERS["alice"])
    assert {e.path for e in auth_events} == {"/token"}


# -- failures of the token flow -------------------------------------------------------------------------------


async def test_token_endpoint_down_is_an_auth_error_naming_the_realm(tmp_path: Path, htpasswd: Path) -> None:
    realm = f"http://127.0.0.1:{free_port()}/token"
    with run_auth_serve(htpasswd=htpasswd, token_auth=True, token_realm=realm) as server:
        async with Client(username="alice", password=USERS["alice"]) as client:
            with pytest.raises(AuthError) as caught:
                await client.pull(Reference.parse(f"{server.host}/team/app:1.0"), tmp_path / "out")
    assert str(caught.value).startswith(f"token endpoint {realm} unreachable")
    assert caught.value.exit_code == 4
    _assert_clean(caught.value, USERS["alice"])
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(200, {"Content-Type": "text/html"}, b"<html>login here</html>"), "is not JSON"),
        (Reply(200, {"Content-Type": "application/json"}, b'{"expires_in": 60}'), "has no token"),
        (Reply(200, {"Content-Type": "application/json"}, b'["token"]'), "has no token"),
        (Reply(500, {}, b"oops"), "failed: HTTP 500"),
    ],
)
async def test_token_endpoint_answering_garbage(tmp_path: Path, htpasswd: Path, reply: Reply, expected: str) -> None:
    with fake_registry() as realm_host:
        realm_host.route("GET", "/token", reply)
        realm = f"{realm_host.url}/token"
        with run_auth_serve(htpasswd=htpasswd, token_auth=True, token_realm=realm) as server:
            async with Client(username="alice", password=USERS["alice"]) as client:
                with pytest.raises(AuthError) as caught:
                    await client.tags(Reference.parse(f"{server.host}/team/app"))
        # The realm host got Basic credentials (it is where the registry sends clients), and nothing else did.
        (token_call,) = [r for r in realm_host.requests if r[1].startswith("/token")]
        assert token_call[2]["authorization"].startswith("Basic ")
    assert expected in str(caught.value)
    _assert_clean(caught.value, USERS["alice"])


@pytest.mark.parametrize(
    "challenge",
    ['Bearer realm="http://127.0.0.1:1/token', 'Bearer realm="x" garbage="', "Bearer ,=,="],
)
async def test_malformed_challenge_is_an_auth_error(challenge: str) -> None:
    with fake_registry() as fake:
        fake.route(
            "GET",
            "/v2/team/app/tags/list",
            Reply(401, {**V2_HEADER, "WWW-Authenticate": challenge}, b'{"errors":[{"code":"UNAUTHORIZED"}]}'),
        )
        async with Client(username="alice", password=USERS["alice"]) as client:
            with pytest.raises(AuthError) as caught:
                await client.tags(Reference.parse(f"{fake.host}/team/app"))
    assert "malformed WWW-Authenticate" in str(caught.value)
    assert not any("authorization" in r[2] for r in fake.requests)


async def test_authorization_is_not_sent_to_another_host_on_a_redirect(tmp_path: Path) -> None:
    image = _image(tmp_path)
    basic = "Basic " + basic_auth_entry(*ALICE)["auth"]
    with fake_registry() as storage, fake_registry() as registry:
        for digest, data in image.blobs.items():
            storage.route(
                "GET", f"/store/{digest.encoded}", Reply(200, {"Content-Type": "application/octet-stream"}, data)
            )
        manifest_headers = {
            "Content-Type": image.manifest.media_type,
            "Docker-Content-Digest": str(image.manifest.digest),
        }
        storage.route("GET", "/store/manifest", Reply(200, manifest_headers, image.manifest.raw))

        def guarded(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            if headers.get("authorization") != basic:
                return Reply(401, {**V2_HEADER, "WWW-Authenticate": 'Basic realm="fake"'}, b"{}")
            if "/manifests/" in path:
                # The manifest GET goes through httpx, the blob GETs through the threaded fetcher: both redirect.
                return Reply(307, {**V2_HEADER, "Location": f"{storage.url}/store/manifest"})
            encoded = path.rsplit(":", 1)[-1]
            return Reply(307, {**V2_HEADER, "Location": f"{storage.url}/store/{encoded}"})

        registry.route("GET", "/v2/team/app/manifests/1.0", guarded)
        registry.route("HEAD", "/v2/team/app/manifests/1.0", guarded)
        for digest in image.blobs:
            registry.route("GET", f"/v2/team/app/blobs/{digest}", guarded)
        async with Client(username="alice", password=USERS["alice"]) as client:
            await client.pull(Reference.parse(f"{registry.host}/team/app:1.0"), tmp_path / "out")
        assert {r[1] for r in storage.requests} == {f"/store/{d.encoded}" for d in image.blobs} | {"/store/manifest"}
        assert not any("authorization" in r[2] for r in storage.requests)
        assert any(r[2].get("authorization") == basic for r in registry.requests)
    assert_layout_holds(tmp_path / "out", image)


# -- TLS ------------------------------------------------------------------------------------------------------


@pytest.fixture
def tls_serve(tmp_path: Path, pki: Pki, htpasswd: Path) -> Iterator[AuthServe]:
    with run_auth_serve(tmp_path / "registry", tls=(pki.server_cert, pki.server_key), htpasswd=htpasswd) as server:
        yield server


async def test_tls_with_ca_cert_push_pull(tls_serve: AuthServe, tmp_path: Path, pki: Pki) -> None:
    assert tls_serve.url.startswith("https://")
    image = _image(tmp_path)
    await _push_pull(tls_serve, tmp_path, image, ca_cert=pki.ca_cert, username="alice", password=USERS["alice"])


async def test_tls_trusts_certs_d_ca_for_that_host_only(tls_serve: AuthServe, tmp_path: Path, pki: Pki) -> None:
    image = _image(tmp_path)
    certs_d = Path(os.environ["REGTOOL_CERTS_D"])
    async with Client(username="alice", password=USERS["alice"], retries=0) as client:
        with pytest.raises(TransportError) as caught:
            await client.tags(Reference.parse(f"{tls_serve.host}/team/app"))
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
    (certs_d / tls_serve.host).mkdir(parents=True)
    (certs_d / tls_serve.host / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    await _push_pull(tls_serve, tmp_path, image, username="alice", password=USERS["alice"])


async def test_insecure_skips_verification(tls_serve: AuthServe, tmp_path: Path) -> None:
    image = _image(tmp_path)
    await _push_pull(tls_serve, tmp_path, image, insecure=True, username="alice", password=USERS["alice"])


async def test_client_certificate_from_certs_d(tmp_path: Path, pki: Pki) -> None:
    image = _image(tmp_path)
    certs_d = Path(os.environ["REGTOOL_CERTS_D"])
    with run_auth_serve(tmp_path / "registry", tls=(pki.server_cert, pki.server_key), client_ca=pki.ca_cert) as server:
        host_dir = certs_d / server.host
        host_dir.mkdir(parents=True)
        (host_dir / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
        async with Client(retries=0) as client:
            with pytest.raises(RegtoolError):
                await client.tags(Reference.parse(f"{server.host}/team/app"))
        (host_dir / "client.cert").write_bytes(pki.client_cert.read_bytes())
        (host_dir / "client.key").write_bytes(pki.client_key.read_bytes())
        await _push_pull(server, tmp_path, image)


async def test_certs_d_key_without_certificate_is_a_usage_error(tmp_path: Path, pki: Pki) -> None:
    certs_d = Path(os.environ["REGTOOL_CERTS_D"])
    (certs_d / "127.0.0.1:9").mkdir(parents=True)
    (certs_d / "127.0.0.1:9" / "client.key").write_bytes(pki.client_key.read_bytes())
    async with Client() as client:
        with pytest.raises(RegtoolError) as caught:
            await client.tags(Reference.parse("127.0.0.1:9/team/app"))
    assert caught.value.exit_code == 2
    assert "missing client certificate" in str(caught.value)
    assert json.dumps(str(caught.value))


# -- v1 and identity tokens -----------------------------------------------------------------------------------


@pytest.mark.parametrize("token_auth", [False, True])
async def test_v1_push_pull_with_basic_on_every_request(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey], token_auth: bool
) -> None:
    image = write_image(tmp_path / "src", "1.0", [{"a.txt": b"v1 with basic"}], docker=True)
    options: dict[str, object] = {"htpasswd": htpasswd}
    if token_auth:
        options.update(token_auth=True, token_key=token_key[0], token_cert=token_key[1])
    with run_auth_serve(tmp_path / "registry", **options) as server:
        ref = Reference.parse(f"{server.host}/team/app:1.0")
        async with Client(username="alice", password=USERS["alice"]) as client:
            await client.push(f"{tmp_path / 'src'}:1.0", ref, protocol="v1")
            pulled = await client.pull(ref, tmp_path / "out", protocol="v1")
        assert pulled.protocol == "v1"
        async with Client(username="alice", password="v1-wrong") as client:
            with pytest.raises(AuthError) as caught:
                await client.pull(ref, tmp_path / "refused", protocol="v1")
        _assert_clean(caught.value, "v1-wrong")
    pulled_blobs = {p.name for p in (tmp_path / "out" / "blobs" / "sha256").iterdir()}
    assert {d.encoded for d in image.layer_digests} <= pulled_blobs
    assert not (tmp_path / "refused").exists()


async def test_identity_token_is_exchanged_with_an_oauth2_refresh_grant() -> None:
    with fake_registry() as realm, fake_registry() as registry:
        forms: list[bytes] = []

        def token(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            forms.append(body)
            return Reply(200, {"Content-Type": "application/json"}, b'{"access_token": "tok-oauth", "expires_in": 300}')

        def tags(method: str, path: str, headers: dict[str, str], body: bytes) -> Reply:
            if headers.get("authorization") != "Bearer tok-oauth":
                challenge = f'Bearer realm="{realm.url}/token",service="svc",scope="repository:team/app:pull"'
                return Reply(401, {**V2_HEADER, "WWW-Authenticate": challenge}, b"{}")
            return Reply(200, {**V2_HEADER, "Content-Type": "application/json"}, b'{"name":"team/app","tags":["1"]}')

        realm.route("POST", "/token", token)
        registry.route("GET", "/v2/team/app/tags/list", tags)
        write_docker_config(
            Path(os.environ["DOCKER_CONFIG"]), {"auths": {registry.host: {"identitytoken": "refresh-Me-123"}}}
        )
        async with Client() as client:
            assert await client.tags(Reference.parse(f"{registry.host}/team/app")) == ["1"]
    (form,) = forms
    fields = dict(pair.split("=", 1) for pair in form.decode().split("&"))
    assert fields["grant_type"] == "refresh_token" and fields["refresh_token"] == "refresh-Me-123"
    assert fields["service"] == "svc" and fields["client_id"] == "regtool"
    assert "refresh-Me-123" not in str(registry.requests)


async def test_copy_between_registries_with_their_own_stored_credentials(tmp_path: Path) -> None:
    from tests.auth.support import write_htpasswd

    image = _image(tmp_path)
    first = write_htpasswd(tmp_path / "first.htpasswd", {"alice": USERS["alice"]})
    second = write_htpasswd(tmp_path / "second.htpasswd", {"bob": USERS["bob"]})
    with run_auth_serve(htpasswd=first) as a, run_auth_serve(htpasswd=second) as b:
        source = Reference.parse(f"{a.host}/team/app:1.0")
        target = Reference.parse(f"{b.host}/mirror/app:1.0")
        async with Client(username="alice", password=USERS["alice"]) as client:
            await client.push(f"{tmp_path / 'src'}:1.0", source)
        auths = {a.host: basic_auth_entry(*ALICE), b.host: basic_auth_entry("bob", USERS["bob"])}
        write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"auths": auths})
        async with Client() as client:
            await client.copy(source, target)
            assert (await client.manifest(target)).digest == image.manifest.digest
