"""``regtool`` against a real ``regtool serve``: every command, its --json, and stdout/stderr discipline.

Most calls run the CLI in this process (``in_process``, the same typer app and code path, minus ~1 s of
interpreter start-up each); the ones that matter as a user types them run ``python -m regtool`` (``regtool``).
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from regtool.digest import Digest
from tests.cli.support import assert_user_error, in_process, regtool
from tests.support.images import BuiltImage, write_image, write_index
from tests.support.serve import RunningServe, serve  # noqa: F401  (the fixture)

# Loopback registries get https first, then http; the tests that are about output, not scheme selection, say
# --plain-http to skip the https attempts.
HTTP = ("--plain-http",)
LAYERS = [{"hello.txt": b"hello\n"}, {"etc/motd": b"regtool\n" * 100}, {"bin/app": bytes(range(256)) * 64}]


def _image(tmp_path: Path) -> BuiltImage:
    return write_image(tmp_path / "src", "1.0", LAYERS, labels={"org.example": "cli"}, entrypoint=("/bin/app",))


def _push(tmp_path: Path, server: RunningServe, image: BuiltImage, target: str = "team/app:1.0") -> dict[str, object]:
    proc = in_process("push", f"{tmp_path / 'src'}:1.0", f"{server.host}/{target}", "--json", *HTTP)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, object] = json.loads(proc.stdout)
    assert result["digest"] == str(image.manifest.digest)
    return result


def _blob(layout: Path, digest: Digest) -> bytes:
    return (layout / "blobs" / digest.algorithm / digest.encoded).read_bytes()


def test_probe(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    human = regtool("probe", serve.host, cwd=tmp_path)
    assert human.returncode == 0, human.stderr
    assert "verdict" in human.stdout and "registry/2.0" in human.stdout
    assert human.stderr == ""
    machine = in_process("probe", serve.host, "--json")
    result = json.loads(machine.stdout)
    assert result["v2"]["found"] is True
    assert result["verdict"] in ("v2", "both")
    assert result["scheme"] == "http"


def test_push_pull_round_trip(tmp_path: Path, serve: RunningServe, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    image = _image(tmp_path)
    pushed = _push(tmp_path, serve, image)
    assert pushed["blobs_uploaded"] == len(LAYERS) + 1

    # Pushing again uploads nothing: every blob is already there.
    again = _push(tmp_path, serve, image)
    assert again["blobs_uploaded"] == 0
    assert again["blobs_skipped"] == len(LAYERS) + 1

    pull = regtool("pull", f"{serve.host}/team/app:1.0", "out", "--json", cwd=tmp_path)
    assert pull.returncode == 0, pull.stderr
    result = json.loads(pull.stdout)
    assert result["digest"] == str(image.manifest.digest)
    assert result["format"] == "oci"
    for digest, data in image.blobs.items():
        assert _blob(tmp_path / "out", digest) == data
    # stderr carried JSON-lines progress: a start and a done for each blob, then the summary.
    events = [json.loads(line) for line in pull.stderr.splitlines()]
    done = {e["key"] for e in events if e["event"] == "done"}
    assert {str(d) for d in image.layer_digests} <= done
    assert events[-1]["event"] == "summary"
    assert events[-1]["digest"] == str(image.manifest.digest)

    # A DEST ending in .tar is a docker-archive.
    monkeypatch.chdir(tmp_path)
    archive = in_process("pull", f"{serve.host}/team/app:1.0", "app.tar", "--quiet")
    assert archive.returncode == 0, archive.stderr
    assert archive.stderr == ""
    assert "docker-archive" in archive.stdout
    with tarfile.open(tmp_path / "app.tar") as tar:
        assert "manifest.json" in tar.getnames()

    # Default DEST: ./<last repository component>.
    default = in_process("pull", f"{serve.host}/team/app:1.0", "-q")
    assert default.returncode == 0, default.stderr
    assert (tmp_path / "app" / "index.json").is_file()


def test_tags_catalog_inspect_delete(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    image = _image(tmp_path)
    _push(tmp_path, serve, image)
    _push(tmp_path, serve, image, "team/app:latest")

    tags = in_process("tags", f"{serve.host}/team/app", *HTTP)
    assert (tags.returncode, tags.stdout.splitlines()) == (0, ["1.0", "latest"])
    tags_json = json.loads(in_process("tags", f"{serve.host}/team/app", "--json", *HTTP).stdout)
    assert tags_json["tags"] == ["1.0", "latest"]

    catalog = in_process("catalog", serve.host, *HTTP)
    assert catalog.returncode == 0, catalog.stderr
    assert "team/app" in catalog.stdout.splitlines()

    inspect = in_process("inspect", f"{serve.host}/team/app:1.0", "--json", *HTTP)
    assert inspect.returncode == 0, inspect.stderr
    info = json.loads(inspect.stdout)
    assert info["digest"] == str(image.manifest.digest)
    assert [layer["digest"] for layer in info["layers"]] == [str(d) for d in image.layer_digests]
    assert info["entrypoint"] == ["/bin/app"]
    assert info["labels"]["org.example"] == "cli"

    human = in_process("inspect", f"{serve.host}/team/app:1.0", *HTTP)
    assert str(image.manifest.digest) in human.stdout
    assert "org.example=cli" in human.stdout

    raw = regtool("inspect", f"{serve.host}/team/app:1.0", "--raw", cwd=tmp_path)
    assert raw.stdout.encode() == image.manifest.raw

    deleted = in_process("delete", f"{serve.host}/team/app:1.0", "--json", *HTTP)
    assert deleted.returncode == 0, deleted.stderr
    assert json.loads(deleted.stdout)["deleted"] == str(image.manifest.digest)
    gone = in_process("inspect", f"{serve.host}/team/app:1.0", *HTTP)
    assert_user_error(gone, 3)
    assert gone.stdout == ""


def test_verbose_logs_requests_on_stderr(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    proc = regtool("tags", f"{serve.host}/team/none", "-v", cwd=tmp_path)
    assert "Traceback" not in proc.stderr
    assert f"GET {serve.url}/v2/team/none/tags/list" in proc.stderr or "/v2/team/none/tags/list" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["pull", "Not A Reference"], 2, "Not A Reference"),
        (["push", "missing-layout:1.0", "{host}/team/app:1.0"], 2, "missing-layout"),
        (["pull", "{host}/team/app:1.0", "--platform", "linux/amd64", "--all-platforms"], 2, "--all-platforms"),
        (["pull", "{host}/team/app:1.0", "--platform", "amd64"], 2, "amd64"),
        (["push", "src", "{host}/team/app", "--chunk-size", "lots"], 2, "lots"),
        (["tags", "{host}/nobody/here"], 3, "nobody/here"),
        (["pull", "{host}/nobody/here:1.0", "out"], 3, "nobody/here"),
        (["delete", "{host}/nobody/here:1.0"], 3, "nobody/here"),
    ],
)
def test_user_errors(
    tmp_path: Path,
    serve: RunningServe,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    code: int,
    fragment: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    proc = in_process(*(a.replace("{host}", serve.host) for a in args))
    assert_user_error(proc, code, fragment)
    assert proc.stdout == ""
    assert not (tmp_path / "out").exists()


def test_password_needs_a_username(tmp_path: Path) -> None:
    proc = regtool("tags", "127.0.0.1:9/x", "--password-stdin", stdin="secret\n", cwd=tmp_path)
    line = assert_user_error(proc, 2, "without a username")
    assert "secret" not in line


def test_multi_platform_index(tmp_path: Path, serve: RunningServe) -> None:  # noqa: F811
    index = write_index(tmp_path / "multi", "2.0")
    amd64, arm64 = index.children
    pushed = in_process("push", f"{tmp_path / 'multi'}:2.0", f"{serve.host}/team/multi:2.0", "--json", *HTTP)
    assert pushed.returncode == 0, pushed.stderr
    assert json.loads(pushed.stdout)["digest"] == str(index.manifest.digest)

    inspect = in_process("inspect", f"{serve.host}/team/multi:2.0", "--platform", "linux/arm64", "--json", *HTTP)
    info = json.loads(inspect.stdout)
    assert info["digest"] == str(index.manifest.digest)
    assert sorted(info["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert info["architecture"] == "arm64"
    assert [layer["digest"] for layer in info["layers"]] == [str(d) for d in arm64.layer_digests]

    out = tmp_path / "one"
    pulled = in_process("pull", f"{serve.host}/team/multi:2.0", str(out), "--platform", "linux/arm64", "-q", *HTTP)
    assert pulled.returncode == 0, pulled.stderr
    for digest, data in arm64.blobs.items():
        assert _blob(out, digest) == data
    assert not (out / "blobs" / "sha256" / amd64.layer_digests[0].encoded).exists()

    every = tmp_path / "all"
    pulled = in_process("pull", f"{serve.host}/team/multi:2.0", str(every), "--all-platforms", "-q", *HTTP)
    assert pulled.returncode == 0, pulled.stderr
    for child in index.children:
        for digest, data in child.blobs.items():
            assert _blob(every, digest) == data

    missing = in_process("pull", f"{serve.host}/team/multi:2.0", str(tmp_path / "none"), "--platform", "linux/s390x")
    assert_user_error(missing, 3, "s390x")
