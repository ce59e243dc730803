"""``regtool login``/``logout`` and the auth failures as the command line shows them: exit code 4, one line,
no password anywhere (stdout, stderr, --json), nothing written."""

from __future__ import annotations

import base64
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtool.server.auth.jwt import SigningKey
from tests.auth.conftest import USERS
from tests.auth.support import AuthServe, install_helper, run_auth_serve, write_docker_config
from tests.cli.support import assert_user_error, in_process, regtool
from tests.support.images import write_image
from tests.support.pki import Pki

SECRET = USERS["alice"]


@pytest.fixture
def basic_serve(tmp_path: Path, htpasswd: Path) -> Iterator[AuthServe]:
    with run_auth_serve(tmp_path / "registry", htpasswd=htpasswd) as server:
        yield server


@pytest.fixture
def token_serve(tmp_path: Path, htpasswd: Path, token_key: tuple[Path, Path, SigningKey]) -> Iterator[AuthServe]:
    with run_auth_serve(
        tmp_path / "registry", htpasswd=htpasswd, token_auth=True, token_key=token_key[0], token_cert=token_key[1]
    ) as server:
        yield server


def _config_path() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


def _no_secret(*texts: str, secret: str = SECRET) -> None:
    for text in texts:
        assert secret not in text
        assert base64.b64encode(f"alice:{secret}".encode()).decode() not in text


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_login_stores_then_pull_and_push_use_it_then_logout(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    server: AuthServe = request.getfixturevalue(f"{kind}_serve")
    done = in_process("login", server.host, "-u", "alice", "--password-stdin", stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"Login Succeeded: credentials for {server.host} stored in {_config_path()}")
    _no_secret(done.stdout, done.stderr)
    config = json.loads(_config_path().read_text())
    assert base64.b64decode(config["auths"][server.host]["auth"]) == f"alice:{SECRET}".encode()
    assert stat.S_IMODE(_config_path().stat().st_mode) == 0o600

    image = write_image(tmp_path / "src", "1.0", [{"a.txt": b"stored credentials"}])
    pushed = in_process("push", f"{tmp_path / 'src'}:1.0", f"{server.host}/team/app:1.0", "--quiet", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["digest"] == str(image.manifest.digest)
    pulled = in_process("pull", f"{server.host}/team/app:1.0", str(tmp_path / "out"), "--quiet", "--json")
    assert pulled.returncode == 0, pulled.stderr
    _no_secret(pushed.stdout, pushed.stderr, pulled.stdout, pulled.stderr)

    out = in_process("logout", server.host)
    assert (out.returncode, out.stdout.strip()) == (0, f"Removed login credentials for {server.host}")
    assert server.host not in json.loads(_config_path().read_text())["auths"]
    again = in_process("logout", server.host)
    assert again.stdout.strip() == f"Not logged in to {server.host}"
    refused = in_process("tags", f"{server.host}/team/app")
    assert_user_error(refused, 4)


@pytest.mark.parametrize("kind", ["basic", "token"])
def test_login_with_a_wrong_password_fails_with_4_and_writes_nothing(kind: str, request: pytest.FixtureRequest) -> None:
    server: AuthServe = request.getfixturevalue(f"{kind}_serve")
    for extra in ((), ("--json",)):
        done = in_process("login", server.host, "-u", "alice", "--password-stdin", *extra, stdin="Wr0ng-Pass\n")
        _no_secret(done.stdout, done.stderr, secret="Wr0ng-Pass")
        assert done.returncode == 4, done.stderr
        if extra:
            (line,) = done.stderr.strip().splitlines()
            assert json.loads(line)["exit_code"] == 4
        else:
            assert_user_error(done, 4, "401")
    assert not _config_path().exists()


def test_login_through_the_configured_credential_helper(
    basic_serve: AuthServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = install_helper(tmp_path / "bin", "fake", tmp_path / "store.json", tmp_path / "helper.log", {})
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    write_docker_config(Path(os.environ["DOCKER_CONFIG"]), {"credsStore": "fake"})
    before = _config_path().read_bytes()
    done = in_process("login", basic_serve.host, "-u", "alice", "--password-stdin", stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert "credential helper docker-credential-fake" in done.stdout
    assert json.loads((tmp_path / "store.json").read_text()) == {basic_serve.host: ["alice", SECRET]}
    assert _config_path().read_bytes() == before
    tags = in_process("tags", f"{basic_serve.host}/team/app")
    assert tags.returncode == 3  # authenticated through the helper; the repository does not exist
    assert in_process("logout", basic_serve.host).returncode == 0
    assert json.loads((tmp_path / "store.json").read_text()) == {}
    # The helper holds nothing for the host now (it says "credentials not found"): not logged in, as docker says.
    again = in_process("logout", basic_serve.host)
    assert (again.returncode, again.stdout.strip()) == (0, f"Not logged in to {basic_serve.host}")


def test_a_host_typed_in_capitals_logs_in_for_the_host(basic_serve: AuthServe) -> None:
    shouted = basic_serve.host.replace("127.0.0.1", "LOCALHOST")
    done = in_process("login", shouted, "-u", "alice", "--password-stdin", stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    lower = shouted.lower()
    assert list(json.loads(_config_path().read_text())["auths"]) == [lower]
    for host in (lower, shouted):
        tags = in_process("tags", f"{host}/team/app")
        assert tags.returncode == 3, tags.stderr  # authenticated; the repository does not exist


def test_login_through_a_symlinked_config_updates_the_file_it_points_to(basic_serve: AuthServe, tmp_path: Path) -> None:
    kept = write_docker_config(tmp_path / "dotfiles", {"auths": {}})
    _config_path().parent.mkdir(parents=True, exist_ok=True)
    _config_path().symlink_to(kept)
    done = in_process("login", basic_serve.host, "-u", "alice", "--password-stdin", stdin=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert _config_path().is_symlink()
    assert basic_serve.host in json.loads(kept.read_text())["auths"]


def test_login_without_a_password_source_is_a_usage_error(basic_serve: AuthServe) -> None:
    done = in_process("login", basic_serve.host)
    assert_user_error(done, 2, "login needs credentials")


def test_pull_with_wrong_environment_password_exits_4_without_leaking(
    basic_serve: AuthServe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGTOOL_USERNAME", "alice")
    monkeypatch.setenv("REGTOOL_PASSWORD", "env-Secret-42")
    for extra in ((), ("--json",)):
        done = in_process("pull", f"{basic_serve.host}/team/app:1.0", str(tmp_path / "out"), "--quiet", *extra)
        assert done.returncode == 4, done.stderr
        _no_secret(done.stdout, done.stderr, secret="env-Secret-42")
    # -vv logs every request and httpcore's internals: still no password (a subprocess: logging is process-wide).
    env = {"REGTOOL_USERNAME": "alice", "REGTOOL_PASSWORD": "env-Secret-42"}
    args = ("pull", f"{basic_serve.host}/team/app:1.0", str(tmp_path / "out"), "-vv")
    verbose = regtool(*args, cwd=tmp_path, env=env)
    assert verbose.returncode == 4, verbose.stderr
    assert "HTTP Request: GET" in verbose.stderr
    _no_secret(verbose.stdout, verbose.stderr, secret="env-Secret-42")
    assert not (tmp_path / "out").exists()


def test_insecure_says_so_on_stderr(tmp_path: Path, pki: Pki) -> None:
    with run_auth_serve(tls=(pki.server_cert, pki.server_key)) as server:
        done = in_process("tags", f"{server.host}/team/app", "--insecure")
        assert done.returncode == 3
        assert done.stderr.splitlines()[0].startswith("warning: --insecure: TLS certificates are not verified")
        as_json = in_process("tags", f"{server.host}/team/app", "--insecure", "--json")
        events = [json.loads(line) for line in as_json.stderr.splitlines()]
        assert events[-1]["event"] == "error"
        verified = in_process("tags", f"{server.host}/team/app", "--ca-cert", str(pki.ca_cert))
        assert verified.returncode == 3 and "warning" not in verified.stderr
        untrusted = in_process("tags", f"{server.host}/team/app")
        assert_user_error(untrusted, 6, "CERTIFICATE_VERIFY_FAILED")


def test_token_flow_failures_are_one_line_exit_4(tmp_path: Path, htpasswd: Path) -> None:
    from tests.client.fakeregistry import V2_HEADER, Reply, fake_registry
    from tests.support.serve import free_port

    stdin = SECRET + "\n"
    args = ("-u", "alice", "--password-stdin")
    # Tokens from an issuer the registry does not trust (another key): always invalid, refetched once, then 4.
    with run_auth_serve(htpasswd=htpasswd, token_auth=True) as foreign:
        realm = f"{foreign.url}/token"
        with run_auth_serve(htpasswd=htpasswd, token_auth=True, token_realm=realm) as server:
            done = in_process("tags", f"{server.host}/team/app", *args, stdin=stdin)
    assert_user_error(done, 4, "the bearer token is invalid or expired", "HTTP 401")
    _no_secret(done.stdout, done.stderr)
    # The token endpoint is down.
    down = f"http://127.0.0.1:{free_port()}/token"
    with run_auth_serve(htpasswd=htpasswd, token_auth=True, token_realm=down) as server:
        done = in_process("tags", f"{server.host}/team/app", *args, "--json", stdin=stdin)
    assert done.returncode == 4
    (line,) = done.stderr.strip().splitlines()
    assert json.loads(line)["message"].startswith(f"token endpoint {down} unreachable")
    _no_secret(done.stdout, done.stderr)
    # A challenge that does not parse.
    with fake_registry() as fake:
        bad = {**V2_HEADER, "WWW-Authenticate": 'Bearer realm="http://127.0.0.1:1/x'}
        fake.route("GET", "/v2/team/app/tags/list", Reply(401, bad, b"{}"))
        done = in_process("tags", f"{fake.host}/team/app", *args, stdin=stdin)
    assert_user_error(done, 4, "malformed WWW-Authenticate")


def test_login_prompts_for_the_password_on_a_terminal(basic_serve: AuthServe, tmp_path: Path) -> None:
    import pty
    import subprocess
    import sys

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("REGTOOL_") or k == "REGTOOL_CERTS_D"}
    process = subprocess.Popen(
        [sys.executable, "-m", "regtool", "login", basic_serve.host, "-u", "alice"],
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
        env=env,
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    try:
        while b"Password:" not in seen:
            chunk = os.read(primary, 1024)
            assert chunk, seen
            seen += chunk
        os.write(primary, (SECRET + "\n").encode())
        assert process.wait(timeout=60) == 0
        while True:
            try:
                chunk = os.read(primary, 1024)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"Login Succeeded" in seen
    assert SECRET.encode() not in seen  # getpass does not echo
    assert json.loads(_config_path().read_text())["auths"][basic_serve.host]
