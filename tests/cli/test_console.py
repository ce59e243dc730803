"""Errors -> one line on stderr and the documented exit code, without a traceback."""

from __future__ import annotations

import json

import pytest
import typer

from regtool.cli.console import EXIT_CODES, handle_errors
from regtool.errors import (
    AuthError,
    CancelledTransfer,
    ImageFormatError,
    IntegrityError,
    InvalidDigest,
    InvalidReference,
    NotFoundError,
    ProtocolError,
    RegistryError,
    RegtoolError,
    TransportError,
    UnsupportedProtocolError,
    UsageError,
)


def _exit(exc: BaseException, *, json_lines: bool = False) -> int:
    with pytest.raises(typer.Exit) as info, handle_errors(json_lines=json_lines):
        raise exc
    return info.value.exit_code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (RegtoolError("x"), 1),
        (UsageError("x"), 2),
        (InvalidReference("x"), 2),
        (InvalidDigest("x"), 2),
        (ImageFormatError("x"), 2),
        (NotFoundError("x"), 3),
        (AuthError("x"), 4),
        (IntegrityError("x"), 5),
        (RegistryError("x", status=500), 1),
        (ProtocolError("x"), 1),
        (TransportError("x"), 6),
        (UnsupportedProtocolError("x"), 7),
        (CancelledTransfer("x"), 130),
        (KeyboardInterrupt(), 130),
        (FileNotFoundError(2, "No such file or directory", "/nope"), 2),
        (PermissionError(13, "Permission denied", "/root/x"), 2),
        (OSError(28, "No space left on device", "/full/x"), 1),
    ],
)
def test_each_error_class_has_its_exit_code(
    error: BaseException, code: int, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit(error) == code
    assert code in EXIT_CODES
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert captured.err.startswith("error: ")


def test_multi_line_messages_become_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(NotFoundError("manifest unknown\n  at http://127.0.0.1:5000/v2/x/manifests/y")) == 3
    assert capsys.readouterr().err == "error: manifest unknown at http://127.0.0.1:5000/v2/x/manifests/y\n"


def test_markup_in_messages_is_printed_as_is(capsys: pytest.CaptureFixture[str]) -> None:
    _exit(InvalidReference("invalid reference '[bold]x[/bold]'"))
    assert capsys.readouterr().err == "error: invalid reference '[bold]x[/bold]'\n"


def test_json_errors_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    assert _exit(IntegrityError("blob sha256:ab mismatch"), json_lines=True) == 5
    event = json.loads(capsys.readouterr().err)
    assert event == {"event": "error", "message": "blob sha256:ab mismatch", "exit_code": 5}


def test_exception_groups_report_their_first_regtool_error(capsys: pytest.CaptureFixture[str]) -> None:
    group = ExceptionGroup("tasks", [IntegrityError("blob a"), ExceptionGroup("inner", [NotFoundError("b")])])
    assert _exit(group) == 5
    assert capsys.readouterr().err == "error: blob a\n"


def test_exception_groups_with_a_bug_are_not_hidden() -> None:
    group = ExceptionGroup("tasks", [IntegrityError("blob a"), ZeroDivisionError("bug")])
    with pytest.raises(ExceptionGroup), handle_errors():
        raise group


def test_bugs_are_not_hidden() -> None:
    with pytest.raises(ZeroDivisionError), handle_errors():
        raise ZeroDivisionError("bug")
