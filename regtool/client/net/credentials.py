"""Registry credentials the way docker keeps them: ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``).

The file's ``auths`` map a registry key to ``{"auth": base64("user:password")}``; ``credsStore`` names a helper
for every registry and ``credHelpers`` one per registry. A helper is the executable ``docker-credential-<name>``
speaking docker's credential-helper protocol: ``get`` (stdin: the server URL; stdout: JSON with ``Username`` and
``Secret``), ``store`` (stdin: JSON with ``ServerURL``, ``Username``, ``Secret``) and ``erase`` (stdin: URL).

Docker Hub's key is the historical ``https://index.docker.io/v1/``; other registries are keyed by ``host[:port]``,
and keys written with a scheme or a path by older clients are matched too.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from regtool.errors import AuthError, UsageError
from regtool.files import write_atomic

__all__ = [
    "DOCKER_HUB_KEY",
    "Credentials",
    "DockerConfig",
    "config_key",
    "credentials_from_env",
    "default_config_path",
    "lookup_credentials",
]

DOCKER_HUB_KEY = "https://index.docker.io/v1/"
_HUB_NAMES = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_HELPER_TIMEOUT_S = 30.0


@dataclass(frozen=True, slots=True)
class Credentials:
    """A username and secret. ``repr`` never shows the secret."""

    username: str
    password: str
    # Where they came from, for messages ("docker config", "credential helper pass", "environment").
    source: str = "explicit"

    @property
    def is_identity_token(self) -> bool:
        # Helpers return this username when the secret is an OAuth2 refresh ("identity") token.
        return self.username == "<token>"

    def basic_header(self) -> str:
        """The ``Authorization: Basic`` value for these credentials."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', source={self.source!r})"

    __str__ = __repr__


def config_key(registry: str) -> str:
    """The key docker uses for ``registry`` in config.json and with credential helpers."""
    return DOCKER_HUB_KEY if registry in _HUB_NAMES else registry


def _normalise_key(key: str) -> str:
    # Older clients wrote "https://host/v1/" or "http://host"; docker compares the host part.
    if "://" in key:
        key = urlsplit(key).netloc or key
    key = key.rstrip("/").lower()  # host names are case-insensitive
    return "docker.io" if key in _HUB_NAMES else key


def default_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def credentials_from_env() -> Credentials | None:
    """``REGTOOL_USERNAME`` / ``REGTOOL_PASSWORD``, when both are set."""
    user, password = os.environ.get("REGTOOL_USERNAME"), os.environ.get("REGTOOL_PASSWORD")
    if user and password is not None:
        return Credentials(user, password, "environment")
    return None


class DockerConfig:
    """Reads and writes docker's config.json, preserving every key regtool does not manage."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_config_path()

    def _load(self) -> dict[str, Any]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read docker config {self.path}: {exc.strerror}") from None
        if not text.strip():
            return {}
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"docker config {self.path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise UsageError(f"docker config {self.path} is not a JSON object")
        return data

    def _save(self, data: dict[str, Any]) -> None:
        # Through a symlink (a dotfile manager's), as docker does: the file it points to is the one replaced.
        path = self.path.resolve()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(path, (json.dumps(data, indent="\t") + "\n").encode(), mode=0o600)

    def helper_for(self, registry: str) -> str | None:
        data = self._load()
        helpers = data.get("credHelpers")
        if isinstance(helpers, dict):
            for key, name in helpers.items():
                if _normalise_key(key) == _normalise_key(registry) and isinstance(name, str) and name:
                    return name
        store = data.get("credsStore")
        return store if isinstance(store, str) and store else None

    def get(self, registry: str) -> Credentials | None:
        """Credentials for ``registry`` from a helper or ``auths``; None when there are none."""
        helper = self.helper_for(registry)
        if helper is not None:
            found = _helper_get(helper, config_key(registry))
            if found is not None:
                return found
        data = self._load()
        auths = data.get("auths")
        if not isinstance(auths, dict):
            return None
        for key, entry in auths.items():
            if _normalise_key(key) != _normalise_key(registry) or not isinstance(entry, dict):
                continue
            return _decode_entry(entry, self.path, key)
        return None

    def store(self, registry: str, creds: Credentials) -> str:
        """Save ``creds`` through the helper when one is configured, else in ``auths``; returns where."""
        helper = self.helper_for(registry)
        key = config_key(registry)
        if helper is not None:
            payload = json.dumps({"ServerURL": key, "Username": creds.username, "Secret": creds.password})
            _run_helper(helper, "store", payload)
            return f"credential helper docker-credential-{helper}"
        data = self._load()
        auths = data.setdefault("auths", {})
        if not isinstance(auths, dict):
            raise UsageError(f"docker config {self.path}: 'auths' is not an object")
        for existing in [k for k in auths if _normalise_key(k) == _normalise_key(registry)]:
            del auths[existing]
        token = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
        auths[key] = {"auth": token}
        self._save(data)
        return str(self.path)

    def erase(self, registry: str) -> bool:
        """Forget the credentials of ``registry``; True when something was removed."""
        helper = self.helper_for(registry)
        removed = False
        if helper is not None:
            try:
                _run_helper(helper, "erase", config_key(registry))
                removed = True
            except AuthError as exc:
                # Nothing stored there: "not logged in" (as docker says), and config.json's own entry still goes.
                if not _not_found(exc):
                    raise
        data = self._load()
        auths = data.get("auths")
        if isinstance(auths, dict):
            keys = [k for k in auths if _normalise_key(k) == _normalise_key(registry)]
            for key in keys:
                del auths[key]
            if keys:
                self._save(data)
                removed = True
        return removed


def _decode_entry(entry: dict[str, Any], path: Path, key: str) -> Credentials | None:
    identity = entry.get("identitytoken")
    if isinstance(identity, str) and identity:
        return Credentials("<token>", identity, f"docker config {path}")
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, password = base64.b64decode(auth, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise UsageError(f"docker config {path}: the auth entry of {key!r} is not base64 user:password") from None
        if not sep:
            raise UsageError(f"docker config {path}: the auth entry of {key!r} has no ':'")
        return Credentials(user, password, f"docker config {path}")
    plain_user, plain_password = entry.get("username"), entry.get("password")
    if isinstance(plain_user, str) and isinstance(plain_password, str):
        return Credentials(plain_user, plain_password, f"docker config {path}")
    return None


def _run_helper(name: str, action: str, stdin: str) -> str:
    program = shutil.which(f"docker-credential-{name}")
    if program is None:
        raise AuthError(f"credential helper docker-credential-{name} is not on PATH")
    try:
        done = subprocess.run(
            [program, action],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthError(
            f"credential helper docker-credential-{name} {action} failed: {exc.__class__.__name__}"
        ) from None
    if done.returncode != 0:
        # Helpers print their reason on stdout; it never holds the secret.
        reason = (done.stdout.strip() or done.stderr.strip()).splitlines()
        raise AuthError(
            f"credential helper docker-credential-{name} {action} failed: {reason[0] if reason else done.returncode}"
        )
    return done.stdout


def _not_found(exc: AuthError) -> bool:
    """A helper's answer for a host it holds nothing for (docker-credential-helpers' ErrCredentialsNotFound)."""
    return "credentials not found" in str(exc).lower()


def _helper_get(name: str, server_url: str) -> Credentials | None:
    try:
        out = _run_helper(name, "get", server_url)
    except AuthError as exc:
        if _not_found(exc):
            return None
        raise
    try:
        data = json.loads(out)
        user, secret = data["Username"], data["Secret"]
    except (ValueError, KeyError, TypeError, RecursionError):
        raise AuthError(f"credential helper docker-credential-{name} answered something that is not JSON") from None
    if not isinstance(user, str) or not isinstance(secret, str):
        raise AuthError(f"credential helper docker-credential-{name} answered without Username/Secret")
    return Credentials(user, secret, f"credential helper {name}")


def lookup_credentials(registry: str, config: DockerConfig | None = None) -> Credentials | None:
    """Credentials for ``registry`` when none were given explicitly: ``REGTOOL_USERNAME``/``REGTOOL_PASSWORD``,
    else docker's config (its credential helpers, then ``auths``). None when there are none."""
    return credentials_from_env() or (config or DockerConfig()).get(registry)
