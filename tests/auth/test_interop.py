"""Interop with Debian's docker-registry (distribution 2.8.2): htpasswd auth behind TLS with credentials from a
docker config file and from a credential helper, and distribution trusting serve's token issuer."""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from regtool.client import Client
from regtool.errors import AuthError
from regtool.reference import Reference
from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.auth.support import basic_auth_entry, install_helper, run_auth_serve, write_docker_config
from tests.support.distribution import stop_process
from tests.support.images import BuiltImage, assert_layout_holds, write_image
from tests.support.pki import Pki
from tests.support.serve import free_port

pytestmark = [pytest.mark.interop, pytest.mark.anyio]

_CONFIG = """\
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  secret: regtool-tests
{tls}
auth:
{auth}
"""


@dataclass(frozen=True)
class Registry:
    host: str
    root: Path


def _answers(port: int, context: ssl.SSLContext | None) -> bool:
    if context is not None:
        conn: http.client.HTTPConnection = http.client.HTTPSConnection("127.0.0.1", port, timeout=1, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/v2/")
        return conn.getresponse().status in {200, 401}
    except OSError:
        return False
    finally:
        conn.close()


@contextlib.contextmanager
def run_distribution(root: Path, *, auth: str, pki: Pki | None) -> Iterator[Registry]:
    """docker-registry with the given ``auth:`` section (indented YAML), behind TLS when ``pki`` is given."""
    from tests.conftest import require_binary

    binary = require_binary("docker-registry")
    root.mkdir(parents=True, exist_ok=True)
    tls = ""
    context = None
    if pki is not None:
        tls = f"  tls:\n    certificate: {pki.server_cert}\n    key: {pki.server_key}"
        context = ssl.create_default_context(cafile=str(pki.ca_cert))
    port = free_port()
    config = root / "config.yml"
    config.write_text(_CONFIG.format(storage=root / "storage", port=port, tls=tls, auth=auth))
    with open(root / "registry.log", "ab") as log:
        process = subprocess.Popen(
            [binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + 10
        while not _answers(port, context):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"docker-registry did not start: {(root / 'registry.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield Registry(f"127.0.0.1:{port}", root)
    finally:
        stop_process(process)


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1.0", [{"etc/motd": b"interop"}, {"bin/app": b"\x7fELF" + bytes(2000)}])


@pytest.fixture
def tls_htpasswd_registry(tmp_path: Path, pki: Pki, htpasswd: Path) -> Iterator[Registry]:
    auth = f"  htpasswd:\n    realm: basic-realm\n    path: {htpasswd}"
    with run_distribution(tmp_path / "distribution", auth=auth, pki=pki) as registry:
        yield registry


def _trust(pki: Pki, host: str) -> None:
    directory = Path(os.environ["REGTOOL_CERTS_D"]) / host
    directory.mkdir(parents=True)
    (directory / "ca.crt").write_bytes(pki.ca_cert.read_bytes())


async def test_distribution_htpasswd_tls_with_docker_config(
    tls_htpasswd_registry: Registry, tmp_path: Path, pki: Pki
) -> None:
    image = _image(tmp_path)
    host = tls_htpasswd_registry.host
    _trust(pki, host)
    ref = Reference.parse(f"{host}/team/app:1.0")
    async with Client() as client:
        with pytest.raises(AuthError):
            await client.tags(ref)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"auths": {host: basic_auth_entry("alice", USERS["alice"])}})
    async with Client() as client:
        pushed = await client.push(f"{tmp_path / 'src'}:1.0", ref)
        assert pushed.digest == image.manifest.digest
        pulled = await client.pull(ref, tmp_path / "out")
    assert pulled.digest == image.manifest.digest
    assert_layout_holds(tmp_path / "out", image)


async def test_distribution_htpasswd_tls_with_credential_helper(
    tls_htpasswd_registry: Registry, tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = _image(tmp_path)
    host = tls_htpasswd_registry.host
    env = install_helper(
        tmp_path / "bin", "fake", tmp_path / "store.json", tmp_path / "helper.log", {host: ("bob", USERS["bob"])}
    )
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"credsStore": "fake"})
    ref = Reference.parse(f"{host}/team/helper:1.0")
    async with Client(ca_cert=pki.ca_cert) as client:
        await client.push(f"{tmp_path / 'src'}:1.0", ref)
        await client.pull(ref, tmp_path / "out")
    assert_layout_holds(tmp_path / "out", image)
    assert "get" in (tmp_path / "helper.log").read_text().split()


async def test_distribution_trusts_serve_token_issuer(
    tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]
) -> None:
    image = _image(tmp_path)
    key_path, cert_path, _ = token_key
    with run_auth_serve(
        htpasswd=htpasswd,
        token_auth=True,
        token_key=key_path,
        token_cert=cert_path,
        token_service="distribution",
        token_issuer="regtool-issuer",
    ) as issuer:
        auth = (
            f"  token:\n    realm: {issuer.url}/token\n    service: distribution\n"
            f"    issuer: regtool-issuer\n    rootcertbundle: {cert_path}"
        )
        with run_distribution(tmp_path / "distribution", auth=auth, pki=None) as registry:
            ref = Reference.parse(f"{registry.host}/team/app:1.0")
            async with Client(username="alice", password=USERS["alice"]) as client:
                pushed = await client.push(f"{tmp_path / 'src'}:1.0", ref)
                assert pushed.digest == image.manifest.digest
                await client.pull(ref, tmp_path / "out")
                assert await client.tags(ref) == ["1.0"]
            async with Client(username="alice", password="wrong-one") as client:
                with pytest.raises(AuthError) as caught:
                    await client.tags(ref)
            assert "wrong-one" not in str(caught.value)
    assert_layout_holds(tmp_path / "out", image)


def _skopeo(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    from tests.conftest import require_binary

    binary = require_binary("skopeo")
    return subprocess.run(
        [binary, "--insecure-policy", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("token_auth", [False, True])
async def test_skopeo_pushes_to_serve_with_auth_behind_tls(
    tmp_path: Path, pki: Pki, htpasswd: Path, token_key: tuple[Path, Path, SigningKey], token_auth: bool
) -> None:
    image = _image(tmp_path)
    options: dict[str, object] = {"htpasswd": htpasswd}
    if token_auth:
        options.update(token_auth=True, token_key=token_key[0], token_cert=token_key[1])
    cert_dir = tmp_path / "skopeo-certs"
    cert_dir.mkdir()
    (cert_dir / "ca.crt").write_bytes(pki.ca_cert.read_bytes())
    env = {"HOME": str(tmp_path / "home")}
    with run_auth_serve(tmp_path / "registry", tls=(pki.server_cert, pki.server_key), **options) as server:
        target = f"docker://{server.host}/team/skopeo:1.0"
        creds = f"alice:{USERS['alice']}"
        source = f"oci:{tmp_path / 'src'}:1.0"
        refused = _skopeo(
            "copy", "--dest-cert-dir", str(cert_dir), "--dest-creds", "alice:nope", source, target, env=env
        )
        assert refused.returncode != 0
        assert "unauthorized" in refused.stderr.lower() or "401" in refused.stderr
        done = _skopeo("copy", "--dest-cert-dir", str(cert_dir), "--dest-creds", creds, source, target, env=env)
        assert done.returncode == 0, done.stderr
        async with Client(ca_cert=pki.ca_cert, username="alice", password=USERS["alice"]) as client:
            pulled = await client.pull(Reference.parse(f"{server.host}/team/skopeo:1.0"), tmp_path / "out")
        assert pulled.digest == image.manifest.digest
        assert_layout_holds(tmp_path / "out", image)
