"""Prometheus metrics of one ``regtool serve`` process, in the text format, through ``prometheus_client``
(imported only when ``ServerConfig.metrics`` is on).

Requests, bytes and durations are labelled by method, route *template* (``/v2/{name:path}/blobs/{digest}``,
never the raw path: repository names and digests would make a series per request) and status. Uploads in
flight count this instance's blob upload requests still receiving bytes. The descriptor cache's lookups are
read from its ``CacheStats`` when scraped.

Who may read them: every instance behind a balancer sees the balancer's connections as loopback, so "loopback
only" would not keep the balancer's clients out. ``/metrics`` is therefore answered on the main port only to
loopback peers, and only when no separate debug address is configured; a cluster puts it on ``--debug-addr``
(distribution's ``http.debug.addr``), which the balancer does not forward to.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from regtool.server.cache.descriptors import DescriptorCache

if TYPE_CHECKING:
    from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "ServerMetrics", "is_upload"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED_ROUTE = "(unmatched)"
# Durations from a cached HEAD (sub-millisecond) to a large blob over a slow link (minutes).
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_UPLOAD_METHODS = frozenset({"POST", "PATCH", "PUT"})


def is_upload(method: str, path: str) -> bool:
    """Whether a request sends blob bytes (a v2 upload's POST, PATCH or PUT)."""
    return method in _UPLOAD_METHODS and "/blobs/uploads" in path


class ServerMetrics:
    """The process's metrics in their own registry (several apps in one process, as in tests, never collide)."""

    def __init__(self, cache: DescriptorCache | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        labels = ("method", "route", "status")
        self._requests = Counter("registry_http_requests", "Requests finished.", labels, registry=self.registry)
        self._durations = Histogram(
            "registry_http_request_duration_seconds",
            "Time from a request's arrival to its last response byte.",
            labels,
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self._sent = Counter(
            "registry_http_response_bytes", "Response body bytes sent.", labels, registry=self.registry
        )
        self._received = Counter(
            "registry_http_request_bytes", "Request body bytes received.", labels, registry=self.registry
        )
        self._uploads = Gauge(
            "registry_uploads_in_flight",
            "Blob upload requests of this instance receiving bytes now.",
            registry=self.registry,
        )
        self._in_flight = Gauge(
            "registry_http_requests_in_flight",
            "Requests of this instance not finished yet (the route is known only once routed).",
            ["method"],
            registry=self.registry,
        )
        if cache is not None:
            self.registry.register(_cache_collector(cache))

    def started(self, method: str, path: str) -> None:
        self._in_flight.labels(method).inc()
        if is_upload(method, path):
            self._uploads.inc()

    def finished(self, method: str, path: str) -> None:
        self._in_flight.labels(method).dec()
        if is_upload(method, path):
            self._uploads.dec()

    def observe(self, method: str, route: str | None, status: int, duration: float, sent: int, received: int) -> None:
        values = (method, route or UNMATCHED_ROUTE, str(status))
        self._requests.labels(*values).inc()
        self._durations.labels(*values).observe(duration)
        if sent:
            self._sent.labels(*values).inc(sent)
        if received:
            self._received.labels(*values).inc(received)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _cache_collector(cache: DescriptorCache) -> Collector:
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector

    stats = cache.stats

    class CacheCollector(Collector):
        def collect(self) -> Iterator[Metric]:
            yield GaugeMetricFamily(
                "registry_cache_up", "1 while the descriptor cache answers, 0 while it stands aside.", cache.available
            )
            family = CounterMetricFamily(
                "registry_cache_requests",
                "Descriptor cache lookups: hit (answered by the cache), miss (sent on to the store), error "
                "(the cache could not be asked).",
                labels=["result"],
            )
            family.add_metric(["hit"], stats.hits)
            family.add_metric(["miss"], stats.misses)
            family.add_metric(["error"], stats.errors)
            yield family

    return CacheCollector()
