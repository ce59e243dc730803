"""The pure pieces: htpasswd parsing, the ACL policy, scope parsing, token claims, certs.d reading."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from regtool.client.net.credentials import Credentials
from regtool.client.net.tls import TLSContexts, TLSSettings, host_files
from regtool.errors import UsageError
from regtool.server.auth.htpasswd import Htpasswd, hash_password
from regtool.server.auth.jwt import InvalidToken, SigningKey
from regtool.server.auth.policy import AccessPolicy
from regtool.server.auth.token import ResourceScope, TokenIssuer, parse_scopes
from tests.support.pki import Pki


def test_htpasswd_reads_bcrypt_entries_like_distribution(tmp_path: Path) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(
        f"# users\n\nalice:{hash_password('pw-a', rounds=4)}\n"
        f"alice:{hash_password('other', rounds=4)}\n"
        f"bob:{hash_password('pw:b', rounds=4).replace('$2y$', '$2b$')}\n"
    )
    users = Htpasswd.load(path)
    assert users.users == {"alice", "bob"}
    assert users.check("alice", "pw-a") and users.check("alice", "pw-a")  # second time from the cache
    assert not users.check("alice", "other")  # a repeated user keeps the first entry
    assert users.check("bob", "pw:b")
    assert not users.check("carol", "pw-a")
    assert "$2" not in repr(users) and "$2" not in repr(users._entries)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("alice:{SHA}abc=\n", "is not bcrypt"),
        ("alice:$apr1$x$y\n", "is not bcrypt"),
        ("no-colon\n", "expected user:hash"),
        ("# nothing\n", "lists no users"),
    ],
)
def test_htpasswd_refuses_what_distribution_refuses(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "htpasswd"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as caught:
        Htpasswd.load(path)
    assert "abc=" not in str(caught.value) and "$apr1" not in str(caught.value)


def test_policy_defaults_and_acl(tmp_path: Path) -> None:
    everything = frozenset({"pull", "push", "delete"})
    default = AccessPolicy()
    assert default.allowed("anyone", "repository", "a/b", everything) == everything
    assert default.allowed(None, "repository", "a/b", everything) == frozenset()
    assert AccessPolicy(anonymous_pull=True).allowed(None, "repository", "a/b", everything) == {"pull"}
    assert default.allowed("x", "registry", "catalog", frozenset({"*"})) == {"*"}
    assert default.allowed(None, "registry", "catalog", frozenset({"*"})) == frozenset()
    acl = tmp_path / "acl"
    acl.write_text("alice team/* pull,push  # team\n* public/* pull\nanonymous public/* pull\n")
    policy = AccessPolicy.load(acl)
    assert policy.allowed("alice", "repository", "team/x/y", everything) == {"pull", "push"}
    assert policy.allowed("alice", "repository", "public/z", everything) == {"pull"}
    assert policy.allowed("bob", "repository", "team/x", everything) == frozenset()
    assert policy.allowed(None, "repository", "public/z", everything) == {"pull"}
    acl.write_text("alice team/* fly\n")
    with pytest.raises(UsageError, match="line 1"):
        AccessPolicy.load(acl)


def test_scope_parsing() -> None:
    assert parse_scopes(["repository:team/app:pull,push registry:catalog:*", "repository(plugin):p:pull", "bad"]) == [
        ResourceScope("repository", "team/app", frozenset({"pull", "push"})),
        ResourceScope("registry", "catalog", frozenset({"*"})),
        ResourceScope("repository", "p", frozenset({"pull"})),
    ]
    assert parse_scopes(["repository:host:5000/app:pull"]) == [
        ResourceScope("repository", "host:5000/app", frozenset({"pull"}))
    ]


def test_issued_tokens_grant_only_what_the_policy_allows() -> None:
    issuer = TokenIssuer(SigningKey.generate(), htpasswd=None, policy=AccessPolicy(anonymous_pull=True))
    body = issuer.issue(None, parse_scopes(["repository:a:pull,push"]))
    claims = issuer.claims(body["token"])
    assert claims["access"] == [{"type": "repository", "name": "a", "actions": ["pull"]}]
    assert claims["sub"] == "" and claims["aud"] == "regtool" and claims["iss"] == "regtool"
    assert body["expires_in"] == 300 and body["issued_at"].endswith("Z")
    # Issued 306 s ago with a 300 s lifetime: past exp and the 5 s leeway.
    stale = issuer.issue(None, parse_scopes(["repository:a:pull"]), now=time.time() - 306)
    with pytest.raises(InvalidToken, match="expired"):
        issuer.claims(stale["token"])
    tampered = body["token"][:-4] + ("AAAA" if not body["token"].endswith("AAAA") else "BBBB")
    with pytest.raises(InvalidToken):
        issuer.claims(tampered)


def test_signing_key_loads_rsa_and_refuses_a_mismatched_certificate(tmp_path: Path, pki: Pki) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_path = tmp_path / "rsa.key"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    with pytest.raises(UsageError, match="is not for the key"):
        SigningKey.load(key_path, pki.server_cert)
    with pytest.raises(UsageError, match="holds no PEM certificate"):
        SigningKey.load(pki.server_key, pki.server_key)
    loaded = SigningKey.load(pki.server_key, pki.server_cert)
    assert loaded.algorithm == "ES256"
    claims = {"a": 1, "iss": "i", "aud": "s", "exp": int(time.time()) + 60}
    assert loaded.verifier().verify(loaded.sign(claims), audience="s", issuer="i") == claims


def test_certs_d_directory_rules(tmp_path: Path, pki: Pki) -> None:
    host = tmp_path / "certs.d" / "reg.example:5000"
    host.mkdir(parents=True)
    (host / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    (host / "client.cert").write_bytes(pki.client_cert.read_bytes())
    with pytest.raises(UsageError, match="missing key"):
        host_files(host)
    (host / "client.key").write_bytes(pki.client_key.read_bytes())
    files = host_files(host)
    assert files.cas == (host / "ca.crt",)
    assert files.client_pairs == ((host / "client.cert", host / "client.key"),)
    contexts = TLSContexts(TLSSettings(certs_d=tmp_path / "certs.d"))
    assert contexts.for_host("reg.example:5000") is not contexts.default()
    assert contexts.for_host("other.example") is contexts.default()
    assert host_files(tmp_path / "nowhere").cas == ()
    broken = TLSContexts(TLSSettings(ca_cert=pki.server_key))
    with pytest.raises(UsageError, match="cannot load CA certificates"):
        broken.default()


def test_credentials_never_show_the_secret() -> None:
    creds = Credentials("alice", "s3cret-Value")
    for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
        assert "s3cret" not in text
