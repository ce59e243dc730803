"""The cache against real upstreams and clients: distribution 2.8.2 as the upstream, upstreams that want Basic or
bearer auth, skopeo pulling through the cache, and ``regtool serve``'s proxy options."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from regtool import mediatypes as mt
from regtool.cli import app
from regtool.digest import Digest
from regtool.server.config import ProxyRemote
from tests.auth.support import basic_auth_entry, write_docker_config, write_htpasswd
from tests.conftest import require_binary
from tests.proxy.conftest import LAYERS, cached_bytes, mirror_of, pull, push_image
from tests.support.distribution import Distribution
from tests.support.distribution import distribution as distribution
from tests.support.seaweedfs import S3Bucket
from tests.support.seaweedfs import s3_bucket as s3_bucket
from tests.support.seaweedfs import seaweedfs as seaweedfs
from tests.support.serve import run_serve, run_serve_process

ACCEPT = {"Accept": mt.MANIFEST_ACCEPT}


@pytest.mark.interop
def test_distribution_as_the_upstream(distribution: Distribution, tmp_path: Path) -> None:
    image = push_image(distribution.host, tmp_path, "library/app", "1", LAYERS)
    with mirror_of(distribution.url, tmp_path / "cache") as cache:
        result = pull(f"{cache.host}/library/app:1", tmp_path / "pulled")
        tags = httpx.get(f"{cache.url}/v2/library/app/tags/list").json()

        assert result.digest == image.manifest.digest
        for digest, data in image.blobs.items():
            assert cached_bytes(cache, digest) == data
        assert tags == {"name": "library/app", "tags": ["1"]}


@pytest.mark.interop
def test_skopeo_pulls_through_the_cache(tmp_path: Path) -> None:
    skopeo = require_binary("skopeo")
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        with mirror_of(upstream.url, tmp_path / "cache") as cache:
            out = tmp_path / "out"
            copied = subprocess.run(
                [skopeo, "--insecure-policy", "copy", "--src-tls-verify=false", f"docker://{cache.host}/team/app:1.0",
                 f"oci:{out}:1.0"],
                capture_output=True, text=True, timeout=120, check=False,
            )  # fmt: skip
            assert copied.returncode == 0, copied.stderr
            index = json.loads((out / "index.json").read_text())
            assert index["manifests"][0]["digest"] == str(image.manifest.digest)
            for digest, data in image.blobs.items():
                assert (out / "blobs/sha256" / digest.encoded).read_bytes() == data
                assert cached_bytes(cache, digest) == data


@pytest.mark.parametrize("token_auth", [False, True], ids=["basic", "bearer"])
def test_an_upstream_that_wants_credentials(tmp_path: Path, token_auth: bool) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"mirror": "s3cret"})
    with run_serve(tmp_path / "upstream", htpasswd=htpasswd, token_auth=token_auth) as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS, username="mirror", password="s3cret")
        good = ProxyRemote(upstream.url, username="mirror", password="s3cret")
        with run_serve(tmp_path / "cache", proxy_remotes=(good,)) as cache:
            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")
            assert result.digest == image.manifest.digest
        wrong = ProxyRemote(upstream.url, username="mirror", password="wrong")
        with run_serve(tmp_path / "refused", proxy_remotes=(wrong,)) as refused:
            answer = httpx.get(f"{refused.url}/v2/team/app/manifests/1.0", headers=ACCEPT)
            layer = httpx.get(f"{refused.url}/v2/team/app/blobs/{Digest.of(image.layers[0])}")

    # The cache's own credentials failed, not the client's: no 401 that would send it after a token.
    assert answer.status_code == 502
    assert "refused the cache's credentials" in answer.json()["errors"][0]["message"]
    assert layer.status_code == 502


def test_serve_runs_as_a_cache_from_the_command_line(tmp_path: Path) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS)
        args = ("--proxy-remote", upstream.url, "--proxy-ttl", "30m", "--proxy-max-size", "1G")
        with run_serve_process(tmp_path / "cache", *args) as cache:
            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")
            refused = httpx.post(f"{cache.url}/v2/team/app/blobs/uploads/")
            upstream_url = upstream.url
        start_line = cache.log_path.read_text().splitlines()[0]

    assert result.digest == image.manifest.digest
    assert refused.status_code == 405
    assert start_line.endswith(f"pull-through cache of {upstream_url}")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--proxy-remote", "ftp://example.com"], "expected http(s)://host[:port]"),
        (["--proxy-remote", "http://example.com/v2"], "(no path)"),
        (["--proxy-remote", "http://a.example", "--proxy-remote", "http://b.example"], "more than one remote"),
        (["--proxy-remote", "http://a.example", "--proxy-ttl", "soon"], "invalid --proxy-ttl 'soon'"),
        (["--proxy-remote", "http://a.example", "--proxy-max-size", "lots"], "invalid size 'lots'"),
        (["--proxy-username", "u"], "are for the upstreams of --proxy-remote"),
        (["--proxy-remote", "http://a.example", "--proxy-username", "u"], "needs a password"),
    ],
)
def test_bad_proxy_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["serve", "--root", str(tmp_path / "root"), "--port", "0", *args])

    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "root").exists()


def test_upstream_credentials_from_dockers_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"mirror": "s3cret"})
    with run_serve(tmp_path / "upstream", htpasswd=htpasswd, token_auth=True) as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS, username="mirror", password="s3cret")
        config = write_docker_config(
            tmp_path / "docker", {"auths": {upstream.host: basic_auth_entry("mirror", "s3cret")}}
        )
        monkeypatch.setenv("DOCKER_CONFIG", str(config.parent))
        with mirror_of(upstream.url, tmp_path / "cache") as cache:
            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")

    assert result.digest == image.manifest.digest


def test_the_password_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {"mirror": "s3cret"})
    with run_serve(tmp_path / "upstream", htpasswd=htpasswd) as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", LAYERS, username="mirror", password="s3cret")
        monkeypatch.setenv("REGTOOL_PROXY_PASSWORD", "s3cret")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
        args = ("--proxy-remote", upstream.url, "--proxy-username", "mirror")
        with run_serve_process(tmp_path / "cache", *args) as cache:
            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled")

    assert result.digest == image.manifest.digest


def test_a_cache_on_object_storage(tmp_path: Path, s3_bucket: S3Bucket) -> None:
    # An object store shows a blob only once it is stored: the first client waits for that, then gets it whole.
    layers = [{"big.bin": os.urandom(3 << 20)}, {"small.txt": b"small"}]
    with run_serve(tmp_path / "upstream") as upstream:
        image = push_image(upstream.host, tmp_path, "team/app", "1.0", layers)
        big = Digest.of(image.layers[0])
        remotes = (ProxyRemote(upstream.url),)
        with run_serve(
            None, proxy_remotes=remotes, storage="s3", s3=s3_bucket.settings, storage_redirect=False
        ) as cache:
            first = httpx.get(f"{cache.url}/v2/team/app/blobs/{big}")
            result = pull(f"{cache.host}/team/app:1.0", tmp_path / "pulled", retries=0)
            upstream.requests.clear()
            again = pull(f"{cache.host}/team/app:1.0", tmp_path / "again", retries=0)

    assert first.status_code == 200 and first.content == image.layers[0]
    assert result.digest == again.digest == image.manifest.digest
    for digest, data in image.blobs.items():
        assert (tmp_path / "again/blobs/sha256" / digest.encoded).read_bytes() == data
    assert upstream.requests.events("GET", "/blobs/") == []
