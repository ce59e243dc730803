"""Shared options: connection values, passwords, platform choice, sizes, pull destinations."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from regtool.cli.options import Connection, choose_platform
from regtool.cli.pull import FormatChoice, default_dest, pull_format
from regtool.cli.push import parse_size
from regtool.errors import UsageError
from regtool.manifest import Platform
from regtool.reference import Reference


def _connection(**overrides: object) -> Connection:
    options: dict[str, object] = {
        "plain_http": False,
        "insecure": False,
        "ca_cert": None,
        "username": None,
        "password_stdin": False,
    }
    options.update(overrides)
    return Connection.from_options(**options)  # type: ignore[arg-type]


def test_password_from_stdin_first_line_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGTOOL_PASSWORD", raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret\nignored\n"))
    connection = _connection(username="alice", password_stdin=True)
    assert (connection.username, connection.password) == ("alice", "s3cret")
    assert connection.client_kwargs()["password"] == "s3cret"
    assert "s3cret" not in repr(connection)


def test_password_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGTOOL_PASSWORD", "from-env")
    assert _connection(username="bob").password == "from-env"


def test_empty_stdin_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    with pytest.raises(UsageError, match="no password"):
        _connection(username="alice", password_stdin=True)


def test_password_without_username_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGTOOL_PASSWORD", "x")
    with pytest.raises(UsageError, match="without a username"):
        _connection()


def test_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGTOOL_PASSWORD", raising=False)
    connection = _connection(plain_http=True, ca_cert=Path("/etc/ssl/ca.pem"))
    assert connection.client_kwargs() == {
        "plain_http": True,
        "insecure": False,
        "ca_cert": Path("/etc/ssl/ca.pem"),
        "username": None,
        "password": None,
        "timeout": 30.0,
        "connect_timeout": 10.0,
    }


def test_choose_platform() -> None:
    assert choose_platform(None, False) is None
    assert choose_platform(None, True) is None
    assert choose_platform("linux/arm/v7", False) == Platform(architecture="arm", os="linux", variant="v7")
    with pytest.raises(UsageError, match="exclude each other"):
        choose_platform("linux/amd64", True)
    with pytest.raises(UsageError, match="OS/ARCH"):
        choose_platform("amd64", False)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1048576", 1048576), ("8MiB", 8 * 1024**2), ("8M", 8 * 1024**2), ("512k", 512 * 1024), ("1G", 1024**3)],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "0", "-1", "8 TB", "lots"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_size(text)


def test_pull_destination_and_format() -> None:
    ref = Reference.parse("127.0.0.1:5000/team/app:1.0")
    assert pull_format(None, None) is FormatChoice.oci
    assert pull_format(Path("out.tar"), None) is FormatChoice.docker_archive
    assert pull_format(Path("out.tar"), FormatChoice.oci) is FormatChoice.oci
    assert pull_format(Path("dir"), FormatChoice.docker_archive) is FormatChoice.docker_archive
    assert default_dest(ref, FormatChoice.oci) == Path("app")
    assert default_dest(ref, FormatChoice.docker_archive) == Path("app.tar")
    assert default_dest(Reference.parse("busybox"), FormatChoice.oci) == Path("busybox")


def test_username_without_password_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REGTOOL_PASSWORD", raising=False)
    with pytest.raises(UsageError, match="--password-stdin"):
        _connection(username="carol")
