"""A cluster on this machine: three ``regtool serve`` processes over one store (a shared filesystem root, or a
bucket of SeaweedFS), one Redis, one token key and htpasswd, behind haproxy (round robin, no stickiness). Each test
gets its own, once per store."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.auth.support import write_htpasswd
from tests.conftest import require_binary
from tests.support.distribution import free_port
from tests.support.haproxy import Balancer, run_haproxy
from tests.support.pki import make_pki
from tests.support.redis import RedisServer, run_redis
from tests.support.seaweedfs import S3Bucket, s3_bucket, seaweedfs  # noqa: F401  (the fixtures, for s3)
from tests.support.serve import ServeProcess, run_serve_process

USER, PASSWORD = "ci", "cluster-secret"


@dataclass
class Cluster:
    storage: str
    root: Path
    instances: list[ServeProcess]
    debug_urls: list[str]
    balancer: Balancer
    redis: RedisServer
    stack: contextlib.ExitStack = field(repr=False)

    @property
    def host(self) -> str:
        return self.balancer.host

    def client_env(self) -> dict[str, str]:
        return {"REGTOOL_USERNAME": USER, "REGTOOL_PASSWORD": PASSWORD}

    def metric(self, n: int, name: str, **labels: str) -> float:
        """One sample of instance ``n``'s /metrics (0 when absent)."""
        text = httpx.get(f"{self.debug_urls[n]}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    return sample.value
        return 0.0

    def requests_by_instance(self, route_part: str, method: str | None = None) -> list[int]:
        """Per instance, the finished requests its /metrics counts on routes containing ``route_part``."""
        counts = []
        for instance, debug_url in zip(self.instances, self.debug_urls, strict=True):
            if instance.process.poll() is not None:
                counts.append(0)
                continue
            text = httpx.get(f"{debug_url}/metrics", timeout=10).text
            counts.append(
                int(
                    sum(
                        sample.value
                        for family in text_string_to_metric_families(text)
                        for sample in family.samples
                        if sample.name == "registry_http_requests_total"
                        and route_part in sample.labels["route"]
                        and method in (None, sample.labels["method"])
                    )
                )
            )
        return counts


@pytest.fixture(params=["filesystem", "s3"])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    require_binary("haproxy")
    store: tuple[str, ...] = ()
    env: dict[str, str] = {}
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        settings = bucket.settings
        assert settings.endpoint is not None
        store = (
            "--storage", "s3", "--s3-endpoint", settings.endpoint, "--s3-bucket", settings.bucket,
            "--s3-region", settings.region, "--s3-path-style",
        )  # fmt: skip
        env = bucket.store.env()
    redis_binary = require_binary("redis-server")
    pki = make_pki(tmp_path / "pki")
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    root = tmp_path / "storage"
    balancer_port = free_port()
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(run_redis(redis_binary))
        args = (
            "--redis", redis.addr,
            "--token-auth", "--htpasswd", str(htpasswd),
            "--token-key", str(pki.server_key), "--token-cert", str(pki.server_cert),
            "--token-realm", f"http://127.0.0.1:{balancer_port}/token",
            "--no-web",
            *store,
        )  # fmt: skip
        # Metrics on a debug address per instance, as a cluster should: the main port is the balancer's.
        debug_ports = [free_port() for _ in range(3)]
        instances = [
            stack.enter_context(
                run_serve_process(
                    root,
                    *args,
                    "--debug-addr",
                    f"127.0.0.1:{port}",
                    log_path=tmp_path / f"instance-{n}.log",
                    env=env,
                )
            )
            for n, port in enumerate(debug_ports)
        ]
        balancer = stack.enter_context(
            run_haproxy(tmp_path / "haproxy", [("127.0.0.1", i.port) for i in instances], port=balancer_port)
        )
        yield Cluster(
            request.param, root, instances, [f"http://127.0.0.1:{p}" for p in debug_ports], balancer, redis, stack
        )
