"""What the command line promises beyond each command's own job: the format asked for is the one written, a
silent registry fails in bounded time, click's own errors are ``error:`` lines, a closed stdout ends quietly, help
names values as it should, host names are case-insensitive, ``-`` is stdout, and bars fit a narrow terminal.

Every registry here is the real ``regtool serve`` or a socket that accepts and never answers.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import time
from pathlib import Path

import pytest
from rich.console import Console

from regtool.cli.bars import RichProgress
from tests.cli.support import (
    Reply,
    assert_user_error,
    hanging_server,
    in_process,
    regtool,
    regtool_bytes,
    scripted_server,
)
from tests.support.images import BuiltImage, image_manifest, write_image
from tests.support.serve import RunningServe, serve  # noqa: F401  (the fixture)

HTTP = ("--plain-http",)
LAYERS = [{"hello.txt": b"hello\n"}, {"etc/motd": b"regtool\n" * 100}]


def _pushed(tmp_path: Path, server: RunningServe, target: str = "team/app:1.0") -> BuiltImage:
    image = write_image(tmp_path / "src", "1.0", LAYERS)
    proc = in_process("push", f"{tmp_path / 'src'}:1.0", f"{server.host}/{target}", "-q", *HTTP)
    assert proc.returncode == 0, proc.stderr
    return image


# -- the explicit --format wins over DEST's name --------------------------------------------------------------


def test_format_oci_with_a_tar_name_is_a_layout_directory(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    image = _pushed(tmp_path, serve)
    dest = tmp_path / "new.tar"
    proc = in_process("pull", f"{serve.host}/team/app:1.0", str(dest), "--format", "oci", "--json", *HTTP)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["format"] == "oci"
    assert dest.is_dir()
    assert (dest / "oci-layout").is_file()
    index = json.loads((dest / "index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [str(image.manifest.digest)]


# -- timeouts ----------------------------------------------------------------------------------------------------

TIMEOUTS = ("--timeout", "0.5", "--connect-timeout", "0.5")


@pytest.mark.parametrize(
    "command",
    [
        ("tags", "{host}/team/app"),
        ("catalog", "{host}"),
        ("inspect", "{host}/team/app:1.0"),
        ("delete", "{host}/team/app:1.0"),
        ("copy", "{host}/team/app:1.0", "{host}/team/copy:1.0", "-q"),
        ("pull", "{host}/team/app:1.0", "out", "-q"),
        ("push", "src:1.0", "{host}/team/app:1.0", "-q"),
    ],
    ids=lambda command: command[0],
)
def test_a_registry_that_never_answers_times_out(tmp_path: Path, command: tuple[str, ...]) -> None:
    write_image(tmp_path / "src", "1.0", LAYERS)
    with hanging_server() as host:
        args = [part.format(host=host) for part in command]
        started = time.monotonic()
        proc = regtool(*args, *TIMEOUTS, "--retries", "0", cwd=tmp_path)
        elapsed = time.monotonic() - started
    # https (its handshake never completes: the connect timeout), then http (no answer: the read timeout).
    assert elapsed < 8, elapsed
    line = assert_user_error(proc, 6, host)
    assert re.search(r"timed out \((connect|read) timeout 0\.5 s\)", line), line
    assert not (tmp_path / "out").exists()


def test_retries_after_timeouts_are_bounded_too(tmp_path: Path) -> None:
    with hanging_server() as host:
        started = time.monotonic()
        proc = regtool("tags", f"{host}/team/app", *TIMEOUTS, "--retries", "2", cwd=tmp_path)
        elapsed = time.monotonic() - started
    line = assert_user_error(proc, 6, host, "read timeout 0.5 s")
    # 0.5 s of https handshake, then three http attempts of 0.5 s with short backoffs between them.
    assert 2.0 <= elapsed < 8, (elapsed, line)


def test_probe_of_a_registry_that_never_answers_says_why(tmp_path: Path) -> None:
    with hanging_server() as host:
        started = time.monotonic()
        proc = regtool("probe", host, *TIMEOUTS, cwd=tmp_path)
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    # No registry answered: probe's documented 7, and the line says what each attempt saw.
    assert_user_error(proc, 7, host, "read timeout 0.5 s")
    assert "neither" in proc.stdout


def test_a_blob_body_that_stops_coming_times_out(tmp_path: Path) -> None:
    # The manifest comes over the httpx client; the blob body through the http.client worker threads, which need
    # the timeout as well: this registry sends the layer's headers and then nothing.
    image = image_manifest([{"a.txt": b"x" * 1000}])
    v2 = {"Docker-Distribution-API-Version": "registry/2.0"}
    routes = {
        "/v2/": Reply(200, b"{}", v2),
        "/v2/team/app/manifests/1.0": Reply(200, image.manifest.raw, {**v2, "Content-Type": image.manifest.media_type}),
        f"/v2/team/app/blobs/{image.config_digest}": Reply(200, image.config, v2),
        f"/v2/team/app/blobs/{image.layer_digests[0]}": Reply(200, image.layers[0], v2, stall=60),
    }
    with scripted_server(routes, Reply(404, b"", v2)) as server:
        started = time.monotonic()
        proc = regtool(
            "pull", f"{server.host}/team/app:1.0", "out", "-q", *HTTP, *TIMEOUTS, "--retries", "0", cwd=tmp_path
        )
        elapsed = time.monotonic() - started
    assert elapsed < 8, elapsed
    assert_user_error(proc, 6, server.host, "timed out")


# -- usage errors ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("pull",), "missing argument 'IMAGE'"),
        (("pull", "x", "--jobs", "0"), "'--jobs'"),
        (("tags", "x/y", "--no-such-option"), "no such option: --no-such-option"),
        (("pul",), "no such command 'pul'"),
    ],
)
def test_usage_errors_are_one_error_line(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    proc = regtool(*args, cwd=tmp_path)
    line = assert_user_error(proc, 2, fragment)
    assert "--help" in line
    assert proc.stdout == ""


def test_usage_error_under_json_is_a_json_line(tmp_path: Path) -> None:
    proc = regtool("pull", "x", "--jobs", "0", "--json", cwd=tmp_path)
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    event = json.loads(line)
    assert event["event"] == "error"
    assert event["exit_code"] == 2
    assert "--jobs" in event["message"]


def test_no_command_prints_help_and_says_why(tmp_path: Path) -> None:
    proc = regtool(cwd=tmp_path)
    assert proc.returncode == 2
    assert "Usage" in proc.stdout
    (line,) = proc.stderr.strip().splitlines()
    assert re.fullmatch(r"error: no command given; see (python -m )?regtool --help", line), line


# -- a closed stdout -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", [(), ("--json",)], ids=["text", "json"])
def test_closed_stdout_ends_quietly(tmp_path: Path, serve: RunningServe, output: tuple[str, ...]) -> None:  # noqa: F811
    _pushed(tmp_path, serve)
    reader, writer = os.pipe()
    os.close(reader)  # as `| head -1` does once it has its line: every write now fails with EPIPE
    try:
        proc = regtool_bytes("inspect", f"{serve.host}/team/app:1.0", *output, *HTTP, cwd=tmp_path, stdout=writer)
    finally:
        os.close(writer)
    assert proc.stderr == ""
    assert proc.returncode == 141


def test_a_pull_to_a_closed_stdout_ends_quietly(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    """``regtool pull IMG - | head -c 100``: the archive's writer finds the pipe closed, as ``inspect`` does above."""
    _pushed(tmp_path, serve)
    reader, writer = os.pipe()
    os.close(reader)
    try:
        proc = regtool_bytes("pull", f"{serve.host}/team/app:1.0", "-", "-q", *HTTP, cwd=tmp_path, stdout=writer)
    finally:
        os.close(writer)
    assert proc.stderr == ""
    assert proc.returncode == 141
    assert not (tmp_path / "-").exists()


def test_a_pull_to_a_full_stdout_is_one_line_not_a_traceback(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    _pushed(tmp_path, serve)
    with open("/dev/full", "wb") as full:
        proc = regtool_bytes("pull", f"{serve.host}/team/app:1.0", "-", "-q", *HTTP, cwd=tmp_path, stdout=full.fileno())
    assert "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: ") and "No space left on device" in line
    assert proc.returncode != 0


# -- help --------------------------------------------------------------------------------------------------------


def test_help_names_values_plainly(tmp_path: Path) -> None:
    proc = regtool_bytes("pull", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = proc.stdout.decode()
    assert re.search(r"Usage: (python -m )?regtool pull \[OPTIONS\] IMAGE \[DEST\]", text), text
    assert "{" not in text.split("\n\n", 2)[1]
    assert "<int" not in text
    assert re.search(r"--v1-jobs\s+N ", text), text
    assert re.search(r"--timeout\s+SECONDS", text)
    assert re.search(r"--connect-timeout\s+SECONDS", text)


# -- registry names ------------------------------------------------------------------------------------------------


def test_host_case_and_docker_transport(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    _pushed(tmp_path, serve)
    port = serve.host.rsplit(":", 1)[1]
    # LOCALHOST is loopback: plain HTTP after https fails, with no --plain-http.
    upper = in_process("tags", f"LOCALHOST:{port}/team/app")
    assert (upper.returncode, upper.stdout.splitlines()) == (0, ["1.0"]), upper.stderr
    prefixed = in_process("tags", f"docker://{serve.host}/team/app", *HTTP)
    assert (prefixed.returncode, prefixed.stdout.splitlines()) == (0, ["1.0"]), prefixed.stderr
    catalog = in_process("catalog", f"docker://{serve.host}", *HTTP)
    assert catalog.returncode == 0, catalog.stderr
    assert "team/app" in catalog.stdout.splitlines()
    inspect = in_process("inspect", f"docker://{serve.host}/team/app:1.0", "--json", *HTTP)
    assert inspect.returncode == 0, inspect.stderr


def test_catalog_refuses_a_path(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    serve.requests.clear()
    proc = in_process("catalog", f"{serve.host}/conc", *HTTP)
    assert_user_error(proc, 2, "'conc'")
    assert serve.requests.events() == []


# -- DEST - ----------------------------------------------------------------------------------------------------------


def test_pull_to_stdout_writes_a_docker_archive(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    image = _pushed(tmp_path, serve)
    proc = regtool_bytes("pull", f"{serve.host}/team/app:1.0", "-", "-q", *HTTP, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / "-").exists()
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        (entry,) = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
        assert entry["RepoTags"] == [f"{serve.host}/team/app:1.0"]
        assert len(entry["Layers"]) == len(image.layers)
    # The result is on stderr, since stdout carries the archive.
    assert str(image.manifest.digest) in proc.stderr


def test_pull_to_a_terminal_is_refused(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    _pushed(tmp_path, serve)
    controller, terminal = os.openpty()
    try:
        proc = regtool_bytes("pull", f"{serve.host}/team/app:1.0", "-", "-q", *HTTP, cwd=tmp_path, stdout=terminal)
    finally:
        os.close(terminal)
        os.close(controller)
    assert_user_error(proc, 2, "terminal")
    assert not (tmp_path / "-").exists()


# -- progress bars on a narrow terminal ------------------------------------------------------------------------


@pytest.mark.parametrize("width", [40, 30])
def test_bars_fit_a_narrow_terminal(width: int) -> None:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    bars = RichProgress(console)
    big, small = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    bars.start(big, big, 123_456_789)
    bars.advance(big, 23_456_789)
    bars.start(small, small, 1234)
    console.print(bars._bars.get_renderable())
    lines = out.getvalue().splitlines()
    assert len(lines) == 3, lines  # total and two blobs, one line each: nothing wrapped
    assert all(len(line) <= width for line in lines), lines
    assert "22.4/117.7 MiB" in lines[0] and "22.4/117.7 MiB" in lines[1]
    assert "0.0/1.2 KiB" in lines[2]


def test_bars_keep_every_column_when_there_is_room() -> None:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=True, color_system=None)
    bars = RichProgress(console)
    bars.start("sha256:" + "a" * 64, "sha256:" + "a" * 64, 2048)
    bars.advance("sha256:" + "a" * 64, 1024)
    console.print(bars._bars.get_renderable())
    assert "━" in out.getvalue() and "-:--:--" in out.getvalue()


def test_an_error_line_keeps_emoji_codes_as_text(tmp_path: Path) -> None:
    # rich would turn ":x:" into an emoji; the line must say what the user typed.
    done = regtool("catalog", "a:x:", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "error: invalid registry host 'a:x:' in reference 'a:x:'\n"
