"""What lives beside the registry's own content: the pull-through cache (its TTL enforced by the online
collector), the servers' Redis descriptor cache (told what gc removes), and v1 images (their layers kept)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from regtool.digest import Digest
from regtool.server.storage import paths
from tests.cli.support import in_process
from tests.gc.conftest import stored_blobs
from tests.server.helpers import push_blob
from tests.support.images import write_image
from tests.support.redis import RedisServer
from tests.support.serve import run_serve, run_serve_process


def test_the_online_collector_enforces_the_cache_ttl(tmp_path: Path) -> None:
    with run_serve(tmp_path / "upstream") as upstream:
        image = write_image(tmp_path / "src", "t", [{"a.txt": b"cached for one second " * 100}])
        assert in_process("push", f"{tmp_path / 'src'}:t", f"{upstream.host}/app:1").returncode == 0
        root = tmp_path / "cache"
        args = ("--proxy-remote", upstream.url, "--proxy-ttl", "1s", "--gc-interval", "0.2s", "--quiet")
        with run_serve_process(root, *args) as cache:
            pulled = in_process("pull", f"{cache.host}/app:1", str(tmp_path / "pulled"))
            assert pulled.returncode == 0, pulled.stderr
            layer = image.layer_digests[0]
            assert layer in stored_blobs(root)
            # No request reaches the cache from here on: only the collector's passes can evict the layer.
            deadline = time.monotonic() + 20
            while layer in stored_blobs(root) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert layer not in stored_blobs(root)
            again = in_process("pull", f"{cache.host}/app:1", str(tmp_path / "again"))
            assert again.returncode == 0, again.stderr
            assert (tmp_path / "again" / "blobs" / "sha256" / layer.encoded).read_bytes() == image.layers[0]


def test_gc_tells_the_servers_redis_cache(tmp_path: Path, redis_server: RedisServer) -> None:
    root = tmp_path / "registry"
    with run_serve(root, redis_addr=redis_server.addr) as server, httpx.Client(base_url=server.url) as client:
        orphan = push_blob(client, "app", b"never used " * 30)
        assert client.head(f"/v2/app/blobs/{orphan}").status_code == 200  # now in the cache
        done = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--redis", redis_server.addr)
        assert done.returncode == 0, done.stderr
        assert Digest.parse(orphan) not in stored_blobs(root)
        assert client.head(f"/v2/app/blobs/{orphan}").status_code == 404


def test_v1_images_keep_their_layers(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    image = write_image(tmp_path / "src", "t", [{"v1.txt": b"pushed over v1 " * 50}])
    with run_serve(root) as server:
        pushed = in_process("push", "--protocol", "v1", f"{tmp_path / 'src'}:t", f"{server.host}/team/old:1")
        assert pushed.returncode == 0, pushed.stderr
        # The v2 tag made for the v1 image goes: only the v1 image still uses the layer.
        assert httpx.delete(f"{server.url}/v2/team/old/manifests/1").status_code == 202
        done = in_process("serve", "gc", "--root", str(root), "--delay", "0", "--delete-untagged")
        assert done.returncode == 0, done.stderr
        assert "removed manifest" in done.stdout
        assert (root / paths.blob_data(image.layer_digests[0])).read_bytes() == image.layers[0]
        pulled = in_process("pull", "--protocol", "v1", f"{server.host}/team/old:1", str(tmp_path / "pulled"))
        assert pulled.returncode == 0, pulled.stderr
