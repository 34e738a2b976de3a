"""The lag exporter: how far behind every consumer group is, in records and in seconds.

One component of the stack (``cosmic lag-exporter``, and a service of ``cosmic
up``) samples, every ``settings.lag.interval_s``, each consumer group's
committed offsets against the partitions' ends (the last stable offset: what a
``read_committed`` consumer can reach), and exports per group, topic and
partition:

- ``cosmic_consumergroup_lag_records``: end minus committed offset;
- ``cosmic_consumergroup_lag_seconds``: now minus the timestamp of the next
  record the group would consume (the one at its committed offset), or 0 when
  it is caught up. The timestamp is read once per committed offset and cached
  while the group stays there.

and per group ``cosmic_consumergroup_status{status=...}`` (1 for the current
one), in the spirit of Burrow. The rules, evaluated per partition over the
samples kept (the worst partition is the group's status):

=========  =====================================================================
status     when
=========  =====================================================================
OK         no lag, or the group commits and its lag is not growing
WARN       the group commits, but its lag in records grew in each of the last
           ``settings.lag.warn_samples`` samples
STALLED    the group has members and lag, and its committed offset has not
           moved for ``settings.lag.stall_after_s``
STOPPED    the group has lag and no members (nobody is consuming)
=========  =====================================================================

Groups that never committed (throwaway readers) are not reported. The exporter
also exports the host's CPU and the state folder's disk (:mod:`cosmic.hostmetrics`),
once per host.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import OffsetSpec
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cosmic import kafka
from cosmic import metrics as process_metrics
from cosmic.hostmetrics import HostMetrics
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms

log = logging.getLogger(__name__)

STATUSES = ("OK", "WARN", "STALLED", "STOPPED")
_SEVERITY = {s: i for i, s in enumerate(STATUSES)}
_NO_MEMBERS = (ConsumerGroupState.EMPTY, ConsumerGroupState.DEAD)
TP = tuple[str, int]


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int
    end: int
    records: int
    seconds: float | None  # None: the next record's time is not known yet
    status: str


@dataclass
class _History:
    """What the rules need of one group's partition: recent lags and when it last moved."""

    committed: int
    moved_at: float
    lags: deque[int] = field(default_factory=lambda: deque(maxlen=64))


@dataclass(frozen=True)
class GroupLag:
    group: str
    status: str
    partitions: tuple[PartitionLag, ...]

    @property
    def records(self) -> int:
        return sum(p.records for p in self.partitions)

    @property
    def seconds(self) -> float:
        return max((p.seconds or 0.0 for p in self.partitions), default=0.0)


class LagExporter(ThreadService, Collector):
    name = "lag-exporter"

    def __init__(self, settings: Settings) -> None:
        ThreadService.__init__(self)
        self.settings = settings
        self.groups: dict[str, GroupLag] = {}
        self.samples = 0
        self._history: dict[tuple[str, str, int], _History] = {}
        self._timestamps: dict[tuple[str, int, int], int] = {}
        self._admin: Any = None
        self._reader: Any = None

    # -- PlatformService -------------------------------------------------------------

    def progress(self) -> str:
        if not self.groups:
            return "sampling" if self.samples == 0 else "no groups"
        worst = [g for g in self.groups.values() if g.status != "OK"]
        lagging = ", ".join(f"{g.group} {g.status} {g.records} records/{g.seconds:.1f}s"
                            for g in worst[:3])
        return f"{len(self.groups)} groups, {len(worst)} not OK" + (f": {lagging}" if worst else "")

    def run(self) -> None:
        self._admin = kafka.admin(self.settings)
        self._reader = kafka.reader(self.settings, "lag-exporter", **{"enable.auto.commit": False})
        host = HostMetrics(self.settings.state_dir)
        process_metrics.hub().add(self)
        process_metrics.hub().add(host)
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self.sample()
                except KafkaException as exc:
                    log.warning("lag sample failed: %s", exc)
                self._stop.wait(max(0.0, self.settings.lag.interval_s
                                    - (time.monotonic() - started)))
        finally:
            process_metrics.hub().discard(self)
            process_metrics.hub().discard(host)
            self._reader.close()

    # -- sampling ----------------------------------------------------------------------

    def sample(self) -> dict[str, GroupLag]:
        """One sample of every group (the exporter's loop calls this; tests may too)."""
        cfg = self.settings.lag
        listing = self._admin.list_consumer_groups(request_timeout=10).result()
        states = {g.group_id: g.state for g in listing.valid
                  if g.group_id.startswith(cfg.group_prefix)}
        committed: dict[str, dict[TP, int]] = {}
        for group in states:
            request = [ConsumerGroupTopicPartitions(group)]
            try:
                answer = self._admin.list_consumer_group_offsets(request, request_timeout=10)
                tps = answer[group].result().topic_partitions or []
            except KafkaException as exc:
                log.debug("offsets of %s: %s", group, exc)
                continue
            offsets = {(tp.topic, tp.partition): tp.offset for tp in tps if tp.offset >= 0}
            if offsets:
                committed[group] = offsets
        wanted = {tp for offsets in committed.values() for tp in offsets}
        ends = self._ends(wanted)
        now = time.monotonic()
        behind = {(t, p, off) for offsets in committed.values()
                  for (t, p), off in offsets.items() if ends.get((t, p), off) > off}
        self._read_timestamps(behind)
        wall = now_ms()
        groups: dict[str, GroupLag] = {}
        seen: set[tuple[str, str, int]] = set()
        for group, offsets in committed.items():
            parts = []
            for (topic, partition), off in sorted(offsets.items()):
                end = ends.get((topic, partition))
                if end is None:
                    continue
                records = max(0, end - off)
                ts = self._timestamps.get((topic, partition, off))
                if records and ts is None:
                    seconds: float | None = None  # not read yet (the time budget ran out)
                else:
                    seconds = max(0.0, (wall - ts) / 1000) if records and ts is not None else 0.0
                key = (group, topic, partition)
                seen.add(key)
                status = self._judge(key, off, records, now, states[group])
                parts.append(PartitionLag(group, topic, partition, off, end, records, seconds,
                                          status))
            if parts:
                worst = max((p.status for p in parts), key=_SEVERITY.__getitem__)
                groups[group] = GroupLag(group, worst, tuple(parts))
        self._history = {k: v for k, v in self._history.items() if k in seen}
        self._timestamps = {k: v for k, v in self._timestamps.items() if k in behind}
        self.groups = groups
        self.samples += 1
        return groups

    def _judge(self, key: tuple[str, str, int], committed: int, records: int, now: float,
               state: Any) -> str:
        cfg = self.settings.lag
        history = self._history.get(key)
        if history is None:
            history = self._history[key] = _History(committed, now)
        elif committed != history.committed:
            history.committed, history.moved_at = committed, now
        history.lags.append(records)
        if records == 0:
            return "OK"
        if state in _NO_MEMBERS:
            return "STOPPED"
        if now - history.moved_at >= cfg.stall_after_s:
            return "STALLED"
        recent = list(history.lags)[-(cfg.warn_samples + 1):]
        if len(recent) == cfg.warn_samples + 1 and all(
                b > a for a, b in itertools.pairwise(recent)):
            return "WARN"
        return "OK"

    def _ends(self, wanted: Iterable[TP]) -> dict[TP, int]:
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted}
        if not request:
            return {}
        futures = self._admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED,
                                           request_timeout=10)
        ends: dict[TP, int] = {}
        for tp, fut in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = fut.result().offset
            except KafkaException as exc:
                log.debug("end of %s/%d: %s", tp.topic, tp.partition, exc)
        return ends

    def _read_timestamps(self, behind: set[tuple[str, int, int]], budget_s: float = 3.0) -> None:
        """The timestamp of the record at each (topic, partition, offset) not yet cached.

        Groups at different offsets of one partition take one round each; rounds stop
        after ``budget_s``, and the rest are read in the next samples (their lag in
        seconds is not exported until then), so one sample never blocks for long.
        """
        todo = {(t, p): off for t, p, off in behind if (t, p, off) not in self._timestamps}
        until = time.monotonic() + budget_s
        while todo and time.monotonic() < until and not self._stop.is_set():
            self._reader.assign([TopicPartition(t, p, off) for (t, p), off in todo.items()])
            deadline = time.monotonic() + 2.0
            pending = dict(todo)
            while pending and time.monotonic() < deadline:
                batch = self._reader.consume(500, timeout=0.2)
                if not batch and len(pending) < len(todo):
                    break  # the fetches came back; what is still pending has nothing visible
                for msg in batch:
                    if msg.error() is not None:
                        continue
                    where = (msg.topic() or "", msg.partition() or 0)
                    if where in pending:
                        # The first record at or after the committed offset (a control
                        # record or an aborted one is skipped by read_committed).
                        self._timestamps[(*where, pending.pop(where))] = msg.timestamp()[1]
            self._reader.unassign()
            if time.monotonic() >= deadline:  # nothing visible after them for 2 s
                for (t, p), off in pending.items():
                    self._timestamps[(t, p, off)] = now_ms()  # count from here
            todo = {(t, p): off for t, p, off in behind if (t, p, off) not in self._timestamps}

    # -- Prometheus --------------------------------------------------------------------

    def collect(self) -> Iterable[Metric]:
        labels = ["group", "topic", "partition"]
        records = GaugeMetricFamily("cosmic_consumergroup_lag_records",
                                    "Records between the group's committed offset and the "
                                    "partition's end (last stable offset).", labels=labels)
        seconds = GaugeMetricFamily("cosmic_consumergroup_lag_seconds",
                                    "Now minus the timestamp of the next record the group "
                                    "would consume; 0 when caught up.", labels=labels)
        status = GaugeMetricFamily("cosmic_consumergroup_status",
                                   "The group's status (OK, WARN, STALLED, STOPPED): 1 for the "
                                   "current one.", labels=["group", "status"])
        for group in sorted(self.groups.values(), key=lambda g: g.group):
            for p in group.partitions:
                where = [p.group, p.topic, str(p.partition)]
                records.add_metric(where, p.records)
                if p.seconds is not None:
                    seconds.add_metric(where, p.seconds)
            for s in STATUSES:
                status.add_metric([group.group, s], 1.0 if group.status == s else 0.0)
        return [records, seconds, status]
