"""Bearer tokens as distribution reads them: compact JWS (ES256 or RS256), signed and verified by PyJWT.

distribution's token controller (``registry/auth/token``) trusts a token's key through the JOSE header: an
``x5c`` chain (standard base64 DER, leaf first) that must lead to its ``rootcertbundle``, or, without one, a
``kid`` naming a key of the bundle by its libtrust fingerprint. It then checks the signature and the claims
``iss``, ``aud`` (a plain string: distribution 2.8 reads no list), ``exp`` and ``nbf``, and reads ``sub``,
``iat``, ``jti`` and ``access``.

PyJWT owns the JWS itself: encoding, the raw ``r || s`` ES256 signature, the algorithm allow-list (so ``none``
and HS256 signed with a public certificate as the secret never verify), and the time, issuer and audience
checks. This module only chooses the public key a token may be checked with: the leaf of an ``x5c`` chain that
reaches a trusted root, or a trusted key named by ``kid``.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from regtool.errors import UsageError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = ["ALGORITHMS", "InvalidToken", "SigningKey", "TokenVerifier", "libtrust_key_id"]

# What distribution's token servers sign with and regtool accepts; anything else (none, HS256, ...) is refused.
ALGORITHMS = ("ES256", "RS256")
VerifyingKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey
# Clock skew tolerated on exp, nbf and iat, as distribution's leeway.
LEEWAY_SECONDS = 5


class InvalidToken(Exception):
    """A token that does not parse, is not from a trusted key, or is expired, not yet valid or for another party."""


def libtrust_key_id(public_key: CertificatePublicKeyTypes) -> str:
    """The ``kid`` distribution's token servers write: base32 of the first 240 bits of the SHA-256 of the DER
    SubjectPublicKeyInfo, in twelve groups of four separated by colons (docker/libtrust's KeyID)."""
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    encoded = base64.b32encode(hashlib.sha256(der).digest()[:30]).decode("ascii")
    return ":".join(encoded[i : i + 4] for i in range(0, len(encoded), 4))


@dataclass(frozen=True)
class TokenVerifier:
    """Verifies tokens whose key chains to one of ``roots`` (distribution's ``rootcertbundle``)."""

    roots: tuple[x509.Certificate, ...]
    _root_ders: frozenset[bytes] = field(init=False, repr=False)
    _keys_by_id: dict[str, CertificatePublicKeyTypes] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_root_ders", frozenset(c.public_bytes(serialization.Encoding.DER) for c in self.roots)
        )
        keys = {libtrust_key_id(c.public_key()): c.public_key() for c in self.roots}
        object.__setattr__(self, "_keys_by_id", keys)

    @classmethod
    def load(cls, bundle: Path) -> TokenVerifier:
        """The PEM certificates of ``bundle``; UsageError when there are none or the file cannot be read."""
        try:
            roots = tuple(x509.load_pem_x509_certificates(bundle.read_bytes()))
        except OSError as exc:
            raise UsageError(f"cannot read token root certificate bundle {bundle}: {exc.strerror or exc}") from None
        except ValueError:
            raise UsageError(f"token root certificate bundle {bundle} holds no PEM certificate") from None
        return cls(roots)

    def verify(self, token: str, *, audience: str | list[str], issuer: str) -> dict[str, Any]:
        """The claims of ``token``; InvalidToken unless a trusted key signed it for ``audience`` (or one of a list)
        by ``issuer``, and it is within its ``exp``/``nbf`` (a few seconds of leeway)."""
        import jwt  # only where tokens are in use

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("not a compact JWS") from None
        if header.get("alg") not in ALGORITHMS:
            raise InvalidToken("unexpected algorithm")
        key = self._trusted_key(header)
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[str(header["alg"])],
                audience=audience,
                issuer=issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("expired") from None
        except jwt.ImmatureSignatureError:
            raise InvalidToken("not yet valid") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("issued for another service") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("issued by another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"no {exc.claim} claim") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            # A key that does not fit the algorithm, or a payload that is not a JSON object.
            raise InvalidToken("bad signature") from None
        return claims

    def _trusted_key(self, header: dict[str, Any]) -> VerifyingKey:
        chain_text = header.get("x5c")
        if chain_text is None:
            kid = header.get("kid")
            key = self._keys_by_id.get(kid) if isinstance(kid, str) else None
            return _verifying(key)
        chain = _parse_chain(chain_text)
        now = datetime.datetime.now(datetime.UTC)
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise InvalidToken("bad signature")
        for child, parent in itertools.pairwise(chain):
            if not _is_ca(parent) or not _issued_by(child, parent):
                raise InvalidToken("bad signature")
        last = chain[-1]
        if last.public_bytes(serialization.Encoding.DER) not in self._root_ders and not any(
            _issued_by(last, root) for root in self.roots
        ):
            raise InvalidToken("bad signature")
        return _verifying(chain[0].public_key())


def _verifying(key: CertificatePublicKeyTypes | None) -> VerifyingKey:
    """``key`` if it is one ES256 or RS256 can be checked with."""
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise InvalidToken("bad signature")
    return key


def _parse_chain(value: Any) -> list[x509.Certificate]:
    if not isinstance(value, list) or not value or not all(isinstance(item, str) for item in value):
        raise InvalidToken("bad x5c header")
    try:
        return [x509.load_der_x509_certificate(base64.b64decode(item, validate=True)) for item in value]
    except (binascii.Error, ValueError):
        raise InvalidToken("bad x5c header") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    try:
        child.verify_directly_issued_by(parent)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


@dataclass(frozen=True)
class SigningKey:
    """A private key and its certificate chain (the ``x5c`` a verifier checks against its root bundle)."""

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
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        public = key.public_key().public_bytes(serialization.Encoding.DER, spki)
        if public != chain[0].public_key().public_bytes(serialization.Encoding.DER, spki):
            raise UsageError(f"token certificate {cert_path} is not for the key in {key_path}")
        return cls(key, chain)

    def certificate_pem(self) -> bytes:
        """The chain as PEM (what a verifier's root bundle needs)."""
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in self.chain)

    def verifier(self) -> TokenVerifier:
        """A verifier trusting this key's own chain (what serve checks the tokens it issued with)."""
        return TokenVerifier(self.chain)

    def sign(self, claims: dict[str, Any]) -> str:
        """The compact JWS of ``claims``, with the ``x5c`` chain in its header."""
        import jwt  # only where tokens are in use

        chain = [base64.b64encode(c.public_bytes(serialization.Encoding.DER)).decode("ascii") for c in self.chain]
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers={"typ": "JWT", "x5c": chain})
