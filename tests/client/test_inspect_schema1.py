"""``regtool inspect`` of a schema1 image, as skopeo describes one: a real distribution 2.8.2 with schema1 turned
on, the image written by skopeo ``--format v2s1`` (a signed schema1 manifest)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.cli.support import regtool
from tests.conftest import require_binary
from tests.support.distribution import run_distribution
from tests.support.images import write_image


def test_inspect_describes_a_schema1_image_as_skopeo_does(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    with run_distribution(tmp_path / "registry", extra_config="compatibility:\n  schema1:\n    enabled: true\n") as d:
        layers = [{"a.txt": b"hello"}, {"b.bin": bytes(range(256)) * 400}]
        write_image(tmp_path / "img", "1", layers, docker=True, env=("PATH=/bin", "MODE=old"), labels={"k": "v"})
        pushed = regtool("push", "-q", f"{tmp_path / 'img'}:1", f"{d.host}/s/src:1", cwd=tmp_path)
        assert pushed.returncode == 0, pushed.stderr
        to_schema1 = [skopeo, "copy", "-q", "--src-tls-verify=false", "--dest-tls-verify=false", "--format", "v2s1"]
        subprocess.run([*to_schema1, f"docker://{d.host}/s/src:1", f"docker://{d.host}/s/one:1"], check=True)
        ours = regtool("inspect", "--json", f"{d.host}/s/one:1", cwd=tmp_path)
        theirs = subprocess.run(
            [skopeo, "inspect", "--tls-verify=false", f"docker://{d.host}/s/one:1"],
            check=True,
            capture_output=True,
            text=True,
        )
    assert ours.returncode == 0, ours.stderr
    described, expected = json.loads(ours.stdout), json.loads(theirs.stdout)
    assert described["digest"] == expected["Digest"]
    assert described["media_type"] == "application/vnd.docker.distribution.manifest.v1+prettyjws"
    assert [layer["digest"] for layer in described["layers"]] == expected["Layers"]
    assert all(layer["size"] > 0 for layer in described["layers"])
    assert described["os"] == expected["Os"] == "linux"
    assert described["architecture"] == expected["Architecture"] == "amd64"
    assert described["env"] == expected["Env"] == ["PATH=/bin", "MODE=old"]
    assert described["labels"] == expected["Labels"] == {"k": "v"}
