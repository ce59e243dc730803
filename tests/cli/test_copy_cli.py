"""``regtool copy`` and ``regtool inspect`` from the command line, against real ``regtool serve`` instances: a
platform an index lacks, a target digest that does not match, and separate source and target credentials."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import httpx
import pytest

from regtool import mediatypes as mt
from regtool.client import Client
from regtool.reference import Reference
from tests.auth.support import write_htpasswd
from tests.cli.support import assert_user_error, in_process
from tests.support.images import write_image, write_index
from tests.support.serve import RunningServe, run_serve

S390X = ("--platform", "linux/s390x")
ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


@pytest.fixture(autouse=True)
def _clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ambient credentials, and upload sessions remembered under this test's directory."""
    for name in ("USERNAME", "PASSWORD", "SRC_USERNAME", "SRC_PASSWORD", "DEST_USERNAME", "DEST_PASSWORD"):
        monkeypatch.delenv(f"REGTOOL_{name}", raising=False)
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))
    monkeypatch.setenv("REGTOOL_STATE_DIR", str(tmp_path / "state"))


def _push(layout: str, target: str, **client_options: str) -> None:
    async def main() -> None:
        async with Client(**client_options) as client:  # type: ignore[arg-type]
            await client.push(layout, Reference.parse(target))

    anyio.run(main)


def _writes(server: RunningServe) -> list[str]:
    return [f"{e.method} {e.path}" for e in server.requests.events() if e.method not in {"GET", "HEAD"}]


def test_copy_of_an_absent_platform_fails_as_pull_does(tmp_path: Path) -> None:
    write_index(tmp_path / "multi", "2.0")
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        source = f"{a.host}/team/multi:2.0"
        _push(f"{tmp_path / 'multi'}:2.0", source)
        pulled = assert_user_error(in_process("pull", source, str(tmp_path / "out"), *S390X), 3, "linux/s390x")
        assert "available: linux/amd64, linux/arm64" in pulled
        copied = in_process("copy", source, f"{b.host}/mirror/multi:2.0", "-q", *S390X)
        assert assert_user_error(copied, 3) == pulled
        assert _writes(b) == []


def test_inspect_of_an_absent_platform_fails_as_pull_does(tmp_path: Path) -> None:
    write_index(tmp_path / "multi", "2.0")
    with run_serve(tmp_path / "a") as a:
        source = f"{a.host}/team/multi:2.0"
        _push(f"{tmp_path / 'multi'}:2.0", source)
        pulled = assert_user_error(in_process("pull", source, str(tmp_path / "out"), *S390X), 3, "linux/s390x")
        inspected = in_process("inspect", source, *S390X)
        assert assert_user_error(inspected, 3) == pulled
        assert inspected.stdout == ""
        # Without --platform, inspect still describes what is there.
        assert in_process("inspect", source, "--json").returncode == 0


def test_copy_to_a_digest_that_is_not_the_sources_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    image = write_image(tmp_path / "app", "1.0", [{"a.txt": b"a"}])
    wrong = "sha256:" + "0" * 64
    with run_serve(tmp_path / "a") as a, run_serve(tmp_path / "b") as b:
        _push(f"{tmp_path / 'app'}:1.0", f"{a.host}/team/app:1.0")
        proc = in_process("copy", f"{a.host}/team/app:1.0", f"{b.host}/mirror/app@{wrong}", "-q")
        assert_user_error(proc, 2, str(image.manifest.digest), "not the digest in the reference")
        assert proc.stdout == ""
        assert _writes(b) == []
        right = in_process("copy", f"{a.host}/team/app:1.0", f"{b.host}/mirror/app@{image.manifest.digest}", "--json")
        assert right.returncode == 0, right.stderr
        assert json.loads(right.stdout)["digest"] == str(image.manifest.digest)


def test_source_and_target_credentials_are_separate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_image(tmp_path / "app", "1.0", [{"a.txt": b"a"}])
    src_users = write_htpasswd(tmp_path / "src.htpasswd", {"alice": "alice-pw"})
    dest_users = write_htpasswd(tmp_path / "dest.htpasswd", {"bob": "bob-pw"})
    with (
        run_serve(tmp_path / "a", htpasswd=src_users) as a,
        run_serve(tmp_path / "b", htpasswd=dest_users) as b,
    ):
        _push(f"{tmp_path / 'app'}:1.0", f"{a.host}/team/app:1.0", username="alice", password="alice-pw")
        copy = ("copy", f"{a.host}/team/app:1.0", f"{b.host}/mirror/app:1.0", "-q")
        monkeypatch.setenv("REGTOOL_SRC_PASSWORD", "alice-pw")
        # One user for both registries: the target refuses it.
        assert_user_error(
            in_process(*copy, "--src-username", "alice", "-u", "alice", "--password-stdin", stdin="alice-pw\n"), 4
        )
        done = in_process(
            *copy, "--src-username", "alice", "--dest-username", "bob", "--dest-password-stdin", stdin="bob-pw\n"
        )
        assert done.returncode == 0, done.stderr
        assert "bob-pw" not in done.stderr + done.stdout
        # The target user with -u, the source's with its own options.
        again = in_process(*copy, "--src-username", "alice", "-u", "bob", "--password-stdin", stdin="bob-pw\n")
        assert again.returncode == 0, again.stderr
        tagged = httpx.get(f"{b.url}/v2/mirror/app/manifests/1.0", auth=("bob", "bob-pw"), headers=ACCEPT)
        assert tagged.status_code == 200


@pytest.mark.parametrize(
    ("args", "stdin", "fragment"),
    [
        (
            ["--src-password-stdin", "--dest-password-stdin", "--src-username", "a", "--dest-username", "b"],
            "x\ny\n",
            "one of",
        ),
        (["--dest-username", "bob"], "", "REGTOOL_DEST_PASSWORD"),
        (["--src-password-stdin"], "secret\n", "without --src-username"),
        (["--chunk-size", "0"], "", "invalid size"),
    ],
)
def test_bad_credential_and_chunk_options_are_usage_errors(
    tmp_path: Path, args: list[str], stdin: str, fragment: str
) -> None:
    proc = in_process("copy", "127.0.0.1:9/a:1", "127.0.0.1:9/b:1", *args, stdin=stdin)
    line = assert_user_error(proc, 2, fragment)
    assert "secret" not in line


def test_one_registry_with_two_users_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGTOOL_SRC_PASSWORD", "one")
    monkeypatch.setenv("REGTOOL_DEST_PASSWORD", "two")
    proc = in_process("copy", "127.0.0.1:9/a:1", "127.0.0.1:9/b:1", "--src-username", "alice", "--dest-username", "bob")
    assert_user_error(proc, 2, "one set of credentials")
