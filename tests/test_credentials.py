"""docker config.json and credential helpers, against real files and a real helper executable."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from regtool.client.net.credentials import DOCKER_HUB_KEY, Credentials, DockerConfig, credentials_from_env
from regtool.errors import AuthError, UsageError

HELPER = r"""#!/usr/bin/env python3
import json, os, sys
store = os.environ["FAKE_HELPER_STORE"]
data = json.load(open(store)) if os.path.exists(store) else {}
action = sys.argv[1]
text = sys.stdin.read()
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
    data.pop(text.strip(), None)
    json.dump(data, open(store, "w"))
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "docker-credential-fake"
    script.write_text(HELPER)
    script.chmod(0o755)
    store = tmp_path / "helper-store.json"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_HELPER_STORE", str(store))
    return store


def test_store_then_get_from_auths_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"auths": {}, "psFormat": "table"}))
    config = DockerConfig(path)
    where = config.store("127.0.0.1:5000", Credentials("alice", "s3cr:et"))
    assert where == str(path)
    data = json.loads(path.read_text())
    assert data["psFormat"] == "table"  # keys regtool does not manage survive
    assert base64.b64decode(data["auths"]["127.0.0.1:5000"]["auth"]) == b"alice:s3cr:et"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    creds = config.get("127.0.0.1:5000")
    assert creds is not None
    assert (creds.username, creds.password) == ("alice", "s3cr:et")
    assert "s3cr" not in repr(creds)


def test_docker_hub_uses_the_legacy_key_and_old_keys_match(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    config = DockerConfig(path)
    config.store("docker.io", Credentials("bob", "pw"))
    assert DOCKER_HUB_KEY in json.loads(path.read_text())["auths"]
    path.write_text(
        json.dumps({"auths": {"https://reg.example:8443/v1/": {"auth": base64.b64encode(b"u:p").decode()}}})
    )
    creds = config.get("reg.example:8443")
    assert creds is not None and creds.username == "u"


def test_erase_removes_and_reports(tmp_path: Path) -> None:
    config = DockerConfig(tmp_path / "config.json")
    config.store("h:1", Credentials("a", "b"))
    assert config.erase("h:1") is True
    assert config.get("h:1") is None
    assert config.erase("h:1") is False


def test_identity_token_entry(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": {"h": {"identitytoken": "refresh-me"}}}))
    creds = DockerConfig(path).get("h")
    assert creds is not None and creds.is_identity_token and creds.password == "refresh-me"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"auths": {"h": {"auth": "!!!"}}}), "not base64"),
        (json.dumps({"auths": {"h": {"auth": base64.b64encode(b"nocolon").decode()}}}), "has no ':'"),
    ],
)
def test_malformed_config_is_a_usage_error_naming_the_file(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "config.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=fragment) as info:
        DockerConfig(path).get("h")
    assert str(path) in str(info.value)


def test_cred_helper_round_trip(tmp_path: Path, helper: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"127.0.0.1:5000": "fake"}}))
    config = DockerConfig(path)
    assert config.get("127.0.0.1:5000") is None  # "credentials not found" is not an error
    where = config.store("127.0.0.1:5000", Credentials("carol", "pw1"))
    assert "docker-credential-fake" in where
    assert "auths" not in json.loads(path.read_text())  # the secret went to the helper, not the file
    creds = config.get("127.0.0.1:5000")
    assert creds is not None and (creds.username, creds.password) == ("carol", "pw1")
    assert config.erase("127.0.0.1:5000")
    assert config.get("127.0.0.1:5000") is None


def test_creds_store_applies_to_every_registry(tmp_path: Path, helper: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "fake"}))
    config = DockerConfig(path)
    config.store("docker.io", Credentials("d", "e"))
    assert DOCKER_HUB_KEY in json.loads(helper.read_text())


def test_missing_helper_is_an_auth_error(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credsStore": "does-not-exist-anywhere"}))
    with pytest.raises(AuthError, match="docker-credential-does-not-exist-anywhere is not on PATH"):
        DockerConfig(path).get("h")


def test_env_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGTOOL_USERNAME", raising=False)
    monkeypatch.delenv("REGTOOL_PASSWORD", raising=False)
    assert credentials_from_env() is None
    monkeypatch.setenv("REGTOOL_USERNAME", "x")
    monkeypatch.setenv("REGTOOL_PASSWORD", "y")
    assert credentials_from_env() == Credentials("x", "y", "environment")
