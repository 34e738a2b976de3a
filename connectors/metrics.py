"""What every connector counts: shown by ``progress()`` and in the process's ``/metrics``.

Plain integers updated by the connector's one loop thread; :meth:`collect`
turns them into Prometheus families when scraped (a consistent-enough snapshot
for monitoring, so no lock is taken). Lag series exist only for partitions the
connector is assigned: a revoked partition's series go with it. The exposition
itself is :mod:`cosmic.metrics`'s, shared by every service of the process.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

_COUNTERS = (
    ("rows_written", "Rows (or archived records) the store accepted."),
    ("batches", "Batches written to the store and committed."),
    ("retries", "Store writes retried after the store failed."),
    ("dead_letters", "Records sent to the dead-letter topic."),
    ("skipped", "Records skipped because the store already held them."),
    ("commits", "Offset commits to Kafka."),
)
WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(eq=False)
class ConnectorMetrics(Collector):
    connector: str
    rows_written: int = 0
    batches: int = 0
    retries: int = 0
    dead_letters: int = 0
    skipped: int = 0
    commits: int = 0
    # (topic, partition) -> records between the consumer's position and the high watermark
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    store_write: Histogram = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.store_write = Histogram(
            "cosmic_connector_store_write_duration_seconds",
            "Time the store took to accept one batch (successful writes only).",
            ["connector"], registry=None, buckets=WRITE_BUCKETS)
        self.store_write.labels(self.connector)

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def summary(self) -> str:
        return (f"{self.rows_written} rows in {self.batches} batches, lag {self.total_lag}, "
                f"{self.retries} retries, {self.dead_letters} dead letters")

    def collect(self) -> Iterable[Metric]:
        out: list[Metric] = []
        for name, doc in _COUNTERS:
            family = CounterMetricFamily(f"cosmic_connector_{name}", doc, labels=["connector"])
            family.add_metric([self.connector], getattr(self, name))
            out.append(family)
        lag = GaugeMetricFamily("cosmic_connector_lag",
                                "Records not yet consumed, per assigned partition.",
                                labels=["connector", "topic", "partition"])
        for (topic, partition), value in sorted(self.lag.items()):
            lag.add_metric([self.connector, topic, str(partition)], value)
        out.append(lag)
        out.extend(self.store_write.collect())
        return out

    def prometheus_text(self) -> str:
        """This connector's families alone, in the Prometheus text format."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry).decode()
