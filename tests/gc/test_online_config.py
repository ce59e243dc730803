"""The online collector from distribution's config.yml: ``storage.maintenance.gc`` beside distribution's own
maintenance keys, which distribution 2.8.2 starts with unchanged; flags given beside ``--config`` win."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx
import pytest

from regtool import mediatypes as mt
from regtool.server.configfile import read_config_file
from tests.cli.support import assert_user_error, in_process
from tests.conftest import require_binary
from tests.server.test_serve_config_cli import serve_with_config
from tests.support.distribution import free_port, http_status, stop_process
from tests.support.images import write_image

_FILE = """version: 0.1
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
    gc:
{gc}
http:
  addr: 127.0.0.1:{port}
"""


def _config(tmp_path: Path, gc: str, port: int = 5000) -> Path:
    path = tmp_path / "config.yml"
    indented = "\n".join(f"      {line}" for line in gc.strip().splitlines())
    path.write_text(_FILE.format(root=tmp_path / "registry", gc=indented, port=port))
    return path


def test_the_keys_set_the_online_collector(tmp_path: Path) -> None:
    values = read_config_file(_config(tmp_path, "interval: 6h\ndelay: 30m\ndeleteuntagged: true"), {}).values
    assert (values["gc_interval"], values["gc_delay"], values["gc_delete_untagged"]) == (6 * 3600, 1800, True)
    values = read_config_file(_config(tmp_path, "interval: 6h"), {}).values
    assert (values["gc_interval"], values.get("gc_delay"), values["gc_delete_untagged"]) == (6 * 3600, None, False)
    values = read_config_file(_config(tmp_path, "enabled: false\ninterval: 6h"), {}).values
    assert "gc_interval" not in values


@pytest.mark.parametrize(
    ("gc", "message"),
    [
        ("deleteuntagged: true", "storage.maintenance.gc.interval: how often a pass runs: must be longer than 0s"),
        ("interval: 0s", "storage.maintenance.gc.interval: how often a pass runs: must be longer than 0s"),
        ("interval: 6h\nage: 1h", "storage.maintenance.gc.age: not supported by regtool serve"),
        ("interval: 6", "storage.maintenance.gc.interval: 6 has no unit"),
    ],
)
def test_bad_keys_are_named(tmp_path: Path, gc: str, message: str) -> None:
    done = in_process("serve", "--config", str(_config(tmp_path, gc)), "--port", "0")
    assert_user_error(done, 2, message)


def test_distribution_starts_with_the_same_file(tmp_path: Path) -> None:
    binary = require_binary("docker-registry")
    port = free_port()
    config = _config(tmp_path, "interval: 6h\ndelay: 1h\ndeleteuntagged: true", port)
    process = subprocess.Popen([binary, "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while http_status(port) is None and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert http_status(port) == 200
    finally:
        stop_process(process)


def test_serve_collects_untagged_manifests_as_the_file_says(tmp_path: Path) -> None:
    # The file's grace period is an hour; the flag given beside it shortens it (flags win over the file).
    config = _config(tmp_path, "interval: 100ms\ndelay: 1h\ndeleteuntagged: true")
    with serve_with_config(config, "--gc-delay", "1s") as (url, log), httpx.Client(base_url=url) as client:
        host = url.removeprefix("http://")
        image = write_image(tmp_path / "c", "t", [{"c.txt": b"untagged soon"}])
        done = in_process("push", f"{tmp_path / 'c'}:t", f"{host}/app:1")
        assert done.returncode == 0, done.stderr
        assert client.delete("/v2/app/manifests/1").status_code == 202  # the tag only: now untagged
        deadline = time.monotonic() + 30
        path = f"/v2/app/manifests/{image.manifest.digest}"
        while client.get(path, headers={"Accept": mt.OCI_MANIFEST}).status_code == 200:
            assert time.monotonic() < deadline, f"never collected: {log.read_text()}"
            time.sleep(0.05)
        for digest in image.blobs:
            assert client.head(f"/v2/app/blobs/{digest}").status_code == 404
