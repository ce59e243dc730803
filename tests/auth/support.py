"""Helpers for the auth tests: htpasswd files, docker configs, a credential helper, a serve that can do TLS.

``run_auth_serve`` is ``regtool.server.embedded.embedded_serve`` (the real ``create_app`` under uvicorn on
127.0.0.1:0, in a thread) with HTTPS and client certificates on demand.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from regtool.server.auth.htpasswd import hash_password
from regtool.server.embedded import EmbeddedServe, embedded_serve

__all__ = [
    "HELPER_SCRIPT",
    "AuthServe",
    "basic_auth_entry",
    "install_helper",
    "run_auth_serve",
    "write_docker_config",
    "write_htpasswd",
]

# A docker-credential-<name> helper backed by a JSON file (FAKE_HELPER_STORE), logging each action to
# FAKE_HELPER_LOG (the action names only).
HELPER_SCRIPT = r"""#!/usr/bin/env python3
import json, os, sys
store = os.environ["FAKE_HELPER_STORE"]
data = json.load(open(store)) if os.path.exists(store) else {}
action = sys.argv[1]
text = sys.stdin.read()
with open(os.environ["FAKE_HELPER_LOG"], "a") as log:
    log.write(action + "\n")
if action == "get":
    if text.strip() not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    user, secret = data[text.strip()]
    print(json.dumps({"ServerURL": text.strip(), "Username": user, "Secret": secret}))
elif action == "store":
    entry = json.loads(text)
    data[entry["ServerURL"]] = [entry["Username"], entry["Secret"]]
    json.dump(data, open(store, "w"))
elif action == "erase":
    if text.strip() not in data:  # as the real helpers (osxkeychain, pass, desktop) answer
        print("credentials not found in native keychain")
        sys.exit(1)
    data.pop(text.strip())
    json.dump(data, open(store, "w"))
"""


# The running server: ``url`` (https with ``tls``), ``host``, ``port``, ``config``, ``requests``.
AuthServe = EmbeddedServe


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    """An htpasswd file with bcrypt entries (cost 4: quick to check) for ``users``."""
    path.write_text("".join(f"{user}:{hash_password(pw, rounds=4)}\n" for user, pw in users.items()))
    return path


def write_docker_config(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.json"
    path.write_text(json.dumps(data))
    return path


def basic_auth_entry(user: str, password: str) -> dict[str, str]:
    return {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}


def install_helper(
    bindir: Path, name: str, store: Path, log: Path, entries: dict[str, tuple[str, str]]
) -> dict[str, str]:
    """Write ``docker-credential-<name>`` into ``bindir`` with ``entries`` (server URL -> user, secret).

    Returns the environment the helper needs (PATH with ``bindir`` first, FAKE_HELPER_STORE, FAKE_HELPER_LOG).
    """
    bindir.mkdir(parents=True, exist_ok=True)
    script = bindir / f"docker-credential-{name}"
    script.write_text(HELPER_SCRIPT)
    script.chmod(0o755)
    store.write_text(json.dumps({url: list(pair) for url, pair in entries.items()}))
    return {
        "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_HELPER_STORE": str(store),
        "FAKE_HELPER_LOG": str(log),
    }


@contextlib.contextmanager
def run_auth_serve(
    root: Path | None = None,
    *,
    tls: tuple[Path, Path] | None = None,
    client_ca: Path | None = None,
    **overrides: Any,
) -> Iterator[AuthServe]:
    """A real serve in a thread; ``tls=(cert, key)`` serves HTTPS, and ``client_ca`` then requires client
    certificates signed by that CA (mutual TLS, set on uvicorn directly). Other keywords go to ServerConfig."""
    overrides.setdefault("access_log", False)
    if tls is not None:
        overrides.setdefault("tls_cert", tls[0])
        overrides.setdefault("tls_key", tls[1])
    mutual_tls = {"ssl_ca_certs": str(client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED} if client_ca else None
    with embedded_serve(root, uvicorn_options=mutual_tls, **overrides) as server:
        yield server
