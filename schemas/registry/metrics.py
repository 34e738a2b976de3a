"""The embedded registry's Prometheus metrics, served at ``GET /metrics`` on its own port.

Requests are counted by route (the handler's name, a fixed set, never the
subject) and status code; subjects and schema ids are read from the registry
when scraped.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from schemas.registry.core import Registry

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class RegistryMetrics(Collector):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.requests = Counter("cosmic_registry_requests", "HTTP requests answered, by route "
                                "and status code.", ["route", "code"], registry=None)
        self.latency = Histogram("cosmic_registry_request_duration_seconds",
                                 "Time to answer one request, by route.", ["route"],
                                 registry=None, buckets=BUCKETS)

    def observe(self, route: str, code: int, seconds: float) -> None:
        self.requests.labels(route, str(code)).inc()
        self.latency.labels(route).observe(seconds)

    def collect(self) -> Iterable[Metric]:
        subjects = GaugeMetricFamily("cosmic_registry_subjects", "Subjects registered (not "
                                     "deleted).", value=len(self.registry.subjects()))
        return [subjects, *self.requests.collect(), *self.latency.collect()]
