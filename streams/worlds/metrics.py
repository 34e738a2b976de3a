"""The physics worker's Prometheus metrics (exposed through :mod:`cosmic.metrics`).

Series are per worker and, where the work is, per partition of the command
topic (a bounded set; never per world). A partition the worker loses takes its
series with it (:meth:`WorkerMetrics.forget`), so after a rebalance each
partition's series come from its one owner. World counts are read from the
worker when scraped, so they can never drift from what it holds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# A world ticks at 10-60 Hz: its budget is 16-100 ms.
TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
RECOVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

# (partition, state) -> worlds; state is one of live, hibernating, quarantined, retired.
WorldCounts = Callable[[], Mapping[tuple[int, str], int]]
WORLD_STATES = ("live", "hibernating", "quarantined", "retired")


class WorkerMetrics(Collector):
    def __init__(self, worker_id: str, world_counts: WorldCounts) -> None:
        self.worker = worker_id
        self._world_counts = world_counts
        w, wp = ["worker"], ["worker", "partition"]
        self.ticks = Counter("cosmic_physics_ticks", "World ticks computed and committed.",
                             wp, registry=None)
        self.tick_seconds = Histogram(
            "cosmic_physics_tick_duration_seconds",
            "Wall time of one world tick: commands, physics step, encoding, producing.",
            wp, registry=None, buckets=TICK_BUCKETS)
        self.overruns = Counter("cosmic_physics_tick_overruns",
                                "Ticks that took longer than their world's tick period.",
                                wp, registry=None)
        self.applied = Counter("cosmic_physics_commands_applied",
                               "Commands applied to a world in a tick.", wp, registry=None)
        self.rejected = Counter("cosmic_physics_commands_rejected",
                                "Commands rejected, by reason.", ["worker", "reason"],
                                registry=None)
        self.dead_letters = Counter("cosmic_physics_dead_letters",
                                    "Records on the command topic sent to the dead-letter topic.",
                                    w, registry=None)
        self.forwarded = Counter("cosmic_physics_commands_forwarded",
                                 "Commands moved to their world's home partition.", w,
                                 registry=None)
        self.transactions = Counter("cosmic_physics_transactions",
                                    "Kafka transactions committed.", w, registry=None)
        self.aborts = Counter("cosmic_physics_transaction_aborts",
                              "Kafka transactions aborted (the worlds are rebuilt from the log).",
                              w, registry=None)
        self.quarantined = Counter("cosmic_physics_worlds_quarantined",
                                   "Worlds this worker stopped because a tick failed or they "
                                   "could not be rebuilt.", w, registry=None)
        self.recovery = Histogram("cosmic_physics_recovery_duration_seconds",
                                  "Time to rebuild one assigned partition's worlds by replay.",
                                  w, registry=None, buckets=RECOVERY_BUCKETS)
        self._partitioned = (self.ticks, self.tick_seconds, self.overruns, self.applied)
        self._partitions: set[int] = set()
        self._series: dict[int, tuple[Any, Any, Any, Any]] = {}
        for metric in (self.dead_letters, self.forwarded, self.transactions, self.aborts,
                       self.quarantined, self.recovery):
            metric.labels(worker_id)  # present from the start, at zero

    def tick(self, partition: int, seconds: float, period_s: float, applied: int,
             rejected: Iterable[str]) -> None:
        series = self._series.get(partition)
        if series is None:  # labels() is a locked lookup: once per partition, not per tick
            labels = (self.worker, str(partition))
            self._partitions.add(partition)
            series = self._series[partition] = (
                self.ticks.labels(*labels), self.tick_seconds.labels(*labels),
                self.overruns.labels(*labels), self.applied.labels(*labels))
        ticks, tick_seconds, overruns, applied_ = series
        ticks.inc()
        tick_seconds.observe(seconds)
        if seconds > period_s:
            overruns.inc()
        applied_.inc(applied)
        for reason in rejected:
            self.reject(reason)

    def reject(self, reason: str) -> None:
        self.rejected.labels(self.worker, reason).inc()

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the series of partitions this worker no longer owns."""
        for p in partitions:
            self._partitions.discard(p)
            self._series.pop(p, None)
            for metric in self._partitioned:
                with contextlib.suppress(KeyError):
                    metric.remove(self.worker, str(p))

    def collect(self) -> Iterable[Metric]:
        worlds = GaugeMetricFamily("cosmic_physics_worlds",
                                   "Worlds this worker holds, by partition and state.",
                                   labels=["worker", "partition", "state"])
        counts = self._world_counts()
        for partition in sorted({p for p, _ in counts}):
            for state in WORLD_STATES:
                worlds.add_metric([self.worker, str(partition), state],
                                  counts.get((partition, state), 0))
        out: list[Metric] = [worlds]
        for metric in (*self._partitioned, self.rejected, self.dead_letters, self.forwarded,
                       self.transactions, self.aborts, self.quarantined, self.recovery):
            out.extend(metric.collect())
        return out
