"""Tokens through PyJWT: the attacks a hand-written verifier must resist, the x5c chain and kid trust distribution
uses, and tokens shared between instances (one signing key) or issued by an external token server."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from regtool.server.auth.jwt import InvalidToken, SigningKey, TokenVerifier, libtrust_key_id
from tests.auth.conftest import USERS
from tests.auth.support import run_auth_serve

AUD, ISS = "regtool", "regtool"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISS,
        "sub": "alice",
        "aud": AUD,
        "exp": now + 300,
        "nbf": now - 5,
        "iat": now,
        "jti": "j",
        "access": [{"type": "repository", "name": "team/app", "actions": ["pull"]}],
    }
    claims.update(changes)
    return claims


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    head = _b64(json.dumps(header).encode())
    body = _b64(json.dumps(claims).encode())
    return f"{head}.{body}.{_b64(signature)}"


def _x5c(key: SigningKey) -> list[str]:
    return [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode() for c in key.chain]


def _refused(verifier: TokenVerifier, token: str, reason: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        verifier.verify(token, audience=AUD, issuer=ISS)
    assert str(caught.value) == reason


def test_a_good_token_verifies_and_es256_is_raw_r_and_s() -> None:
    key = SigningKey.generate()
    token = key.sign(_claims())
    assert key.verifier().verify(token, audience=AUD, issuer=ISS)["access"][0]["name"] == "team/app"
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["alg"] == "ES256" and header["typ"] == "JWT" and header["x5c"] == _x5c(key)
    # distribution reads the JWS signature as r || s, 32 bytes each, not DER.
    assert len(base64.urlsafe_b64decode(token.split(".")[2] + "==")) == 64


def test_alg_none_is_refused() -> None:
    key = SigningKey.generate()
    token = _unsigned({"alg": "none", "typ": "JWT", "x5c": _x5c(key)}, _claims())
    _refused(key.verifier(), token, "unexpected algorithm")


def test_hs256_signed_with_the_certificate_as_secret_is_refused() -> None:
    key = SigningKey.generate()
    header = {"alg": "HS256", "typ": "JWT", "x5c": _x5c(key)}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims()).encode())}"
    for secret in (key.certificate_pem(), key.chain[0].public_bytes(serialization.Encoding.DER)):
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _refused(key.verifier(), f"{signing_input}.{_b64(signature)}", "unexpected algorithm")


def test_times_audience_and_issuer_are_checked() -> None:
    key = SigningKey.generate()
    now = int(time.time())
    cases = {
        "expired": _claims(exp=now - 10, iat=now - 400, nbf=now - 400),
        "not yet valid": _claims(nbf=now + 120, iat=now),
        "issued for another service": _claims(aud="other-registry"),
        "issued by another issuer": _claims(iss="someone-else"),
        "no exp claim": {k: v for k, v in _claims().items() if k != "exp"},
    }
    for reason, claims in cases.items():
        _refused(key.verifier(), key.sign(claims), reason)


def test_tampered_claims_and_foreign_keys_are_refused() -> None:
    key = SigningKey.generate()
    head, _body, signature = key.sign(_claims()).split(".")
    wider = _claims(access=[{"type": "repository", "name": "*", "actions": ["pull", "push", "delete"]}])
    _refused(key.verifier(), f"{head}.{_b64(json.dumps(wider).encode())}.{signature}", "bad signature")
    # A self-signed certificate of someone else's, carried in x5c: not chained to our root.
    _refused(key.verifier(), SigningKey.generate().sign(_claims()), "bad signature")
    # Our certificate in x5c, but signed with another key.
    other = SigningKey.generate()
    forged_head = _b64(json.dumps({"alg": "ES256", "typ": "JWT", "x5c": _x5c(key)}).encode())
    other_token = other.sign(_claims()).split(".")
    _refused(key.verifier(), f"{forged_head}.{other_token[1]}.{other_token[2]}", "bad signature")
    for garbage in ("garbage", "a.b.c", ""):
        _refused(key.verifier(), garbage, "not a compact JWS")


def _certificate(
    subject: str, public: Any, issuer_name: str, issuer_key: Any, *, ca: bool, days: int = 30
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key, hashes.SHA256())
    )


def test_an_x5c_chain_through_an_intermediate_reaches_the_root_bundle() -> None:
    root_key = ec.generate_private_key(ec.SECP256R1())
    root = _certificate("root", root_key.public_key(), "root", root_key, ca=True)
    middle_key = ec.generate_private_key(ec.SECP256R1())
    middle = _certificate("middle", middle_key.public_key(), "root", root_key, ca=True)
    leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    leaf = _certificate("token signer", leaf_key.public_key(), "middle", middle_key, ca=False)
    verifier = TokenVerifier((root,))
    signer = SigningKey(leaf_key, (leaf, middle))
    assert signer.algorithm == "RS256"
    assert verifier.verify(signer.sign(_claims()), audience=AUD, issuer=ISS)["sub"] == "alice"
    # The leaf alone does not reach the root; a leaf that is no CA cannot vouch for another certificate.
    _refused(verifier, SigningKey(leaf_key, (leaf,)).sign(_claims()), "bad signature")
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = _certificate("rogue", rogue_key.public_key(), "token signer", leaf_key, ca=False)
    _refused(verifier, SigningKey(rogue_key, (rogue, leaf, middle)).sign(_claims()), "bad signature")


def test_a_kid_names_a_key_of_the_bundle_as_token_servers_write_it() -> None:
    import jwt

    key = SigningKey.generate()
    kid = libtrust_key_id(key.chain[0].public_key())
    assert len(kid) == 59 and kid.count(":") == 11
    token = jwt.encode(_claims(), key.key, algorithm="ES256", headers={"kid": kid})
    assert key.verifier().verify(token, audience=AUD, issuer=ISS)["sub"] == "alice"
    unknown = jwt.encode(_claims(), key.key, algorithm="ES256", headers={"kid": "ABCD:" * 11 + "ABCD"})
    _refused(key.verifier(), unknown, "bad signature")


def _get_token(url: str, scope: str) -> str:
    response = httpx.get(f"{url}/token", params={"service": "regtool", "scope": scope}, auth=("alice", USERS["alice"]))
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def test_instances_sharing_a_signing_key_accept_each_others_tokens(
    htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    shared: dict[str, Any] = {
        "htpasswd": htpasswd,
        "token_auth": True,
        "token_key": token_key[0],
        "token_cert": token_key[1],
    }
    with run_auth_serve(**shared) as first, run_auth_serve(**shared) as second:
        token = _get_token(first.url, "repository:team/app:pull")
        headers = {"Authorization": f"Bearer {token}"}
        # 404: past authorization, the repository is simply empty.
        assert httpx.get(f"{second.url}/v2/team/app/tags/list", headers=headers).status_code == 404
        # A token for one repository opens no other.
        other = httpx.get(f"{second.url}/v2/team/other/tags/list", headers=headers)
        assert other.status_code == 401
        assert 'error="insufficient_scope"' in other.headers["www-authenticate"]
    with run_auth_serve(htpasswd=htpasswd, token_auth=True) as stranger:
        refused = httpx.get(f"{stranger.url}/v2/team/app/tags/list", headers=headers)
        assert refused.status_code == 401
        assert 'error="invalid_token"' in refused.headers["www-authenticate"]


def test_a_registry_trusting_an_external_token_server(htpasswd: Path, token_key: tuple[Path, Path, SigningKey]) -> None:
    issuing: dict[str, Any] = {
        "htpasswd": htpasswd,
        "token_auth": True,
        "token_key": token_key[0],
        "token_cert": token_key[1],
    }
    with run_auth_serve(**issuing) as token_server:
        realm = f"{token_server.url}/token"
        with run_auth_serve(token_auth=True, token_cert=token_key[1], token_realm=realm) as registry:
            challenge = httpx.get(f"{registry.url}/v2/team/app/tags/list")
            assert challenge.status_code == 401
            assert challenge.headers["www-authenticate"].startswith(f'Bearer realm="{realm}",service="regtool"')
            # It issues nothing itself.
            assert httpx.get(f"{registry.url}/token", auth=("alice", USERS["alice"])).status_code == 404
            token = _get_token(token_server.url, "repository:team/app:pull,push")
            headers = {"Authorization": f"Bearer {token}"}
            assert httpx.post(f"{registry.url}/v2/team/app/blobs/uploads/", headers=headers).status_code == 202
            foreign = SigningKey.generate().sign(_claims(access=[]))
            response = httpx.get(
                f"{registry.url}/v2/team/app/tags/list", headers={"Authorization": f"Bearer {foreign}"}
            )
            assert response.status_code == 401


def test_an_external_token_server_needs_its_realm_and_a_key_needs_its_certificate(
    token_key: tuple[Path, Path, SigningKey],
) -> None:
    from regtool.errors import UsageError
    from regtool.server.config import ServerConfig

    with pytest.raises(UsageError, match="external token server need its realm"):
        ServerConfig(storage="inmemory", token_auth=True, token_cert=token_key[1])
    with pytest.raises(UsageError, match="signing key needs its certificate"):
        ServerConfig(storage="inmemory", token_auth=True, token_key=token_key[0], anonymous_pull=True)


def test_token_options_without_token_auth_are_refused_not_ignored(
    token_key: tuple[Path, Path, SigningKey], tmp_path: Path
) -> None:
    # Ignored, they started a registry with no authentication at all where its operator asked for tokens.
    import subprocess
    import sys

    from regtool.errors import UsageError
    from regtool.server.config import ServerConfig

    for options in (
        {"token_cert": token_key[1], "token_realm": "https://auth.example/token"},
        {"token_cert": token_key[1], "token_key": token_key[0]},
        {"token_realm": "https://auth.example/token"},
    ):
        with pytest.raises(UsageError, match=r"token options .* need token auth \(--token-auth\)"):
            ServerConfig(storage="inmemory", **options)  # type: ignore[arg-type]
    serve = [sys.executable, "-m", "regtool", "serve", "--storage", "inmemory", "--port", "0"]
    done = subprocess.run(
        [*serve, "--token-cert", str(token_key[1]), "--token-realm", "https://auth.example/token"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr == "error: the token options (certificate, key, realm) need token auth (--token-auth)\n"
