"""Fixtures for the auth tests: users in an htpasswd file, a token signing key, a test PKI, clean credentials."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from regtool.server.auth.jwt import SigningKey
from tests.auth.support import write_htpasswd
from tests.support.pki import Pki, make_pki

USERS = {"alice": "wonder-land-9", "bob": "builder-7"}


@pytest.fixture(autouse=True)
def _no_ambient_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No REGTOOL_* credentials, an empty docker config dir and no certs.d unless a test sets them."""
    monkeypatch.delenv("REGTOOL_USERNAME", raising=False)
    monkeypatch.delenv("REGTOOL_PASSWORD", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGTOOL_CERTS_D", str(tmp_path / "certs.d"))


@pytest.fixture
def htpasswd(tmp_path: Path) -> Path:
    return write_htpasswd(tmp_path / "htpasswd", USERS)


@pytest.fixture
def token_key(tmp_path: Path) -> tuple[Path, Path, SigningKey]:
    """A signing key and its certificate on disk (for --token-key/--token-cert), and the key itself."""
    key = SigningKey.generate()
    key_path, cert_path = tmp_path / "token.key", tmp_path / "token.crt"
    key_path.write_bytes(
        key.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_path.write_bytes(key.certificate_pem())
    return key_path, cert_path, key


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")
