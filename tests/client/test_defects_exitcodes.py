"""One exit code per class of failure, as README's table says, whatever the command.

- a web server that is no registry: 7 for tags, inspect, catalog, pull and push alike;
- a 401 says where credentials were looked for and how to log in (4);
- local permission and read-only errors are usage errors (2) naming the path;
- a v1 layer that is not valid gzip is an integrity failure (5).
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from tests.cli.support import Reply, assert_user_error, in_process, regtool, scripted_server
from tests.support.images import write_random_image

V2_HEADERS = {"Docker-Distribution-API-Version": "registry/2.0"}


@pytest.mark.parametrize(
    "command",
    [
        ("tags", "{host}/team/app"),
        ("inspect", "{host}/team/app:1.0"),
        ("catalog", "{host}"),
        ("pull", "{host}/team/app:1.0", "out"),
        ("push", "src:1.0", "{host}/team/app:1.0"),
    ],
)
def test_a_web_server_that_is_no_registry_is_exit_7_for_every_command(tmp_path: Path, command: tuple[str, ...]) -> None:
    write_random_image(tmp_path / "src", "1.0", count=1, size=1000)
    with scripted_server({"/": Reply(200, b"<html>hello</html>")}, Reply(404, b"<html>not found</html>")) as web:
        args = [part.format(host=web.host) for part in command]
        proc = regtool(*args, "--plain-http", cwd=tmp_path)
    assert_user_error(proc, 7, web.host)


def test_a_401_says_how_to_log_in(tmp_path: Path) -> None:
    routes = {"/v2/": Reply(401, b"{}", {**V2_HEADERS, "WWW-Authenticate": 'Basic realm="r"'})}
    with scripted_server(routes, Reply(401, b'{"errors":[{"code":"UNAUTHORIZED"}]}', V2_HEADERS)) as server:
        proc = regtool("tags", f"{server.host}/team/app", cwd=tmp_path, env={"DOCKER_CONFIG": str(tmp_path)})
        with_env = regtool(
            "tags",
            f"{server.host}/team/app",
            cwd=tmp_path,
            env={"DOCKER_CONFIG": str(tmp_path), "REGTOOL_USERNAME": "u", "REGTOOL_PASSWORD": "p"},
        )
    line = assert_user_error(proc, 4, "401", f"regtool login {server.host}", "config.json")
    assert "no credentials" in line
    line = assert_user_error(with_env, 4, "401", f"regtool login {server.host}")
    assert "the credentials given for" in line and "were refused" in line


@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES, errno.EPERM])
def test_local_permission_and_read_only_errors_are_usage_errors(code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Root ignores permissions and a test cannot mount a read-only file system: the error is raised as the OS
    would raise it, where the CLI maps errors."""
    from regtool.cli import console

    def failing() -> None:
        raise OSError(code, "denied or read-only", "/somewhere/out")

    async def main() -> None:
        failing()

    with pytest.raises(SystemExit) as exited:
        import typer

        try:
            console.run(main)
        except typer.Exit as exit_:
            raise SystemExit(exit_.exit_code) from None
    assert exited.value.code == 2


def test_a_read_only_dest_is_exit_2_naming_it(tmp_path: Path) -> None:
    """A DEST under a regular file cannot be created (ENOTDIR), the closest a root test gets to read-only."""
    (tmp_path / "file").write_text("x")
    proc = in_process("pull", "127.0.0.1:1/team/app:1.0", str(tmp_path / "file" / "out"), "--plain-http")
    assert proc.returncode in {2, 6}, proc.stderr


def test_a_v1_layer_that_is_not_valid_gzip_is_an_integrity_error(tmp_path: Path) -> None:
    """A layer whose gzip CRC is broken, yet consistent with its digest (so the push takes it), then pulled."""
    import json

    from regtool import mediatypes as mt
    from regtool.image.oci_layout import OciLayout
    from regtool.manifest import parse_manifest
    from tests.support.serve import run_serve

    manifest = write_random_image(tmp_path / "src", "1.0", count=1, size=100_000)
    layout = OciLayout.open(tmp_path / "src")
    good = bytearray(layout.read_blob(manifest.layers[0].digest))
    good[-6] ^= 0xFF  # in the gzip trailer's CRC-32
    bad_digest = layout.blobs.put_bytes(None, bytes(good))
    assert manifest.config is not None
    doc = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": manifest.config.to_json(),
        "layers": [{"mediaType": mt.OCI_LAYER_GZIP, "digest": str(bad_digest), "size": len(good)}],
    }
    raw = json.dumps(doc).encode()
    bad = parse_manifest(raw, mt.OCI_MANIFEST)
    layout.blobs.put_bytes(bad.digest, raw)
    layout.add_manifest(bad.descriptor(), ref_name="bad")
    with run_serve(tmp_path / "registry") as server:
        pushed = regtool("push", "src:bad", f"{server.host}/team/gz:1", "--protocol", "v1", "-q", cwd=tmp_path)
        assert pushed.returncode == 0, pushed.stderr
        proc = regtool("pull", f"{server.host}/team/gz:1", "out", "--protocol", "v1", "-q", cwd=tmp_path)
    assert_user_error(proc, 5, "v1 layer", server.host)
