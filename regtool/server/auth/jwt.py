"""Compact JWS tokens signed with ES256 (EC P-256) or RS256, in the shape distribution verifies.

distribution's token controller (``registry/auth/token``) checks the JOSE header's ``x5c`` chain against its
``rootcertbundle`` (standard base64 DER, leaf first) and then the signature over ``header.claims``; for ES256
the signature is the raw ``r || s`` pair (32 bytes each), not DER. Claims are ``iss``, ``sub``, ``aud`` (a plain
string: distribution 2.8 does not read a list), ``exp``, ``nbf``, ``iat``, ``jti`` and ``access``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.x509.oid import NameOID

from regtool.errors import UsageError

__all__ = ["InvalidToken", "SigningKey", "b64url"]

_P256_BYTES = 32


class InvalidToken(Exception):
    """A token that does not parse, is not ours (signature), or is expired / not yet valid."""


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("bad base64") from None


@dataclass(frozen=True)
class SigningKey:
    """A private key and its certificate (the ``x5c`` chain a verifier checks against its root bundle)."""

    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    chain: tuple[x509.Certificate, ...]

    def __repr__(self) -> str:
        return f"SigningKey(alg={self.algorithm!r}, subject={self.chain[0].subject.rfc4514_string()!r})"

    @property
    def algorithm(self) -> str:
        return "ES256" if isinstance(self.key, ec.EllipticCurvePrivateKey) else "RS256"

    @classmethod
    def generate(cls, common_name: str = "regtool token issuer", days: int = 3650) -> SigningKey:
        """A fresh P-256 key with a self-signed certificate (serve's default when no key is configured)."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, (cert,))

    @classmethod
    def load(cls, key_path: Path, cert_path: Path) -> SigningKey:
        """A PEM private key (EC P-256 or RSA) and the PEM certificate chain of its public key, leaf first."""
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        except OSError as exc:
            raise UsageError(f"cannot read token signing key {key_path}: {exc.strerror or exc}") from None
        except (ValueError, TypeError):
            raise UsageError(f"token signing key {key_path} is not an unencrypted PEM private key") from None
        try:
            chain = tuple(x509.load_pem_x509_certificates(cert_path.read_bytes()))
        except OSError as exc:
            raise UsageError(f"cannot read token certificate {cert_path}: {exc.strerror or exc}") from None
        except ValueError:
            raise UsageError(f"token certificate {cert_path} holds no PEM certificate") from None
        if isinstance(key, ec.EllipticCurvePrivateKey):
            if not isinstance(key.curve, ec.SECP256R1):
                raise UsageError(f"token signing key {key_path}: only the P-256 curve (ES256) is supported")
        elif not isinstance(key, rsa.RSAPrivateKey):
            raise UsageError(f"token signing key {key_path}: expected an EC P-256 or RSA key")
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        leaf = (
            chain[0]
            .public_key()
            .public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
        if public != leaf:
            raise UsageError(f"token certificate {cert_path} is not for the key in {key_path}")
        return cls(key, chain)

    def certificate_pem(self) -> bytes:
        """The chain as PEM (what a verifier's root bundle needs)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def sign(self, claims: dict[str, Any]) -> str:
        """The compact JWS of ``claims``."""
        header = {
            "typ": "JWT",
            "alg": self.algorithm,
            "x5c": [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in self.chain],
        }
        signing_input = (
            b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        data = signing_input.encode("ascii")
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.key.sign(data, ec.ECDSA(hashes.SHA256())))
            signature = r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")
        else:
            signature = self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(signature)

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of ``token`` when it carries our signature; InvalidToken otherwise (times not checked)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise InvalidToken("not a compact JWS")
        try:
            header = json.loads(_unb64url(parts[0]))
            claims = json.loads(_unb64url(parts[1]))
        except (ValueError, UnicodeDecodeError):
            raise InvalidToken("header or claims are not JSON") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise InvalidToken("header or claims are not JSON objects")
        if header.get("alg") != self.algorithm:
            raise InvalidToken("unexpected algorithm")
        signature = _unb64url(parts[2])
        data = f"{parts[0]}.{parts[1]}".encode("ascii")
        public = self.key.public_key()
        try:
            if isinstance(public, ec.EllipticCurvePublicKey):
                if len(signature) != 2 * _P256_BYTES:
                    raise InvalidToken("bad signature length")
                r = int.from_bytes(signature[:_P256_BYTES], "big")
                s = int.from_bytes(signature[_P256_BYTES:], "big")
                public.verify(encode_dss_signature(r, s), data, ec.ECDSA(hashes.SHA256()))
            else:
                public.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise InvalidToken("bad signature") from None
        return claims
