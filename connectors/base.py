"""The loop every connector shares: consume -> decode -> batch -> write -> commit.

A :class:`Connector` owns one consumer group over a set of topics and one
:class:`Sink` (the store side). Records are decoded with the catalog schema of
what each topic carries; undecodable ones go to the DLQ and the loop carries
on. A batch closes at ``batch_rows`` records or ``batch_interval_s`` seconds
and is handed to the sink; offsets are committed only once the sink says the
records are durable. Each sink keeps its own record of what it already holds
(:meth:`Sink.resume_positions`), so a crash between write and commit neither
loses nor duplicates: on assignment the consumer seeks to the store's
position, and records below it are skipped.

A store outage surfaces as :class:`~connectors.errors.StoreUnavailable`: the
write is retried with capped exponential backoff, logged and counted, and
nothing is consumed meanwhile, so nothing is dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from connectors.errors import StoreRejected, StoreUnavailable
from connectors.metrics import ConnectorMetrics
from cosmic import kafka, topics
from cosmic import metrics as process_metrics
from cosmic.errors import ConfigError, CosmicError
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.topics import Topic
from schemas import catalog
from schemas.dlq import DeadLettered, DeadLetterQueue, decode_or_dead_letter
from schemas.errors import RegistryError
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SchemaSource

log = logging.getLogger(__name__)

TP = tuple[str, int]
T = TypeVar("T")
_LAG_EVERY_S = 5.0
# New consumers after a fatal error (Connector._after_fatal): at most this many within the
# window; one more is raised (the connector stops).
_RENEW_MAX = 3
_RENEW_WINDOW_S = 600.0
_RENEW_PAUSE_S = 1.0
_FIRST_BACKOFF_S = 0.2


@dataclass(frozen=True, slots=True)
class Item:
    """One decoded record and where it came from."""

    topic: str          # the Kafka topic it was read from
    carries: Topic      # what that topic carries (schema, table)
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: Any
    message: Message | None = None  # the original, for the DLQ should the store refuse it


@dataclass
class Batch:
    items: list[Item] = field(default_factory=list)
    # Next offset per partition past everything consumed, dead letters included:
    # what the store records and what is committed once the batch is durable.
    positions: dict[TP, int] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)

    def drop(self, gone: Collection[TP]) -> None:
        self.items = [i for i in self.items if (i.topic, i.partition) not in gone]
        for tp in gone:
            self.positions.pop(tp, None)


class Sink(ABC):
    """The store side of a connector."""

    name: str = "sink"

    @abstractmethod
    def open(self) -> str:
        """Connect (and check the schema is in place); return one line saying how it stores."""

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def resume_positions(self, tps: Collection[TP]) -> dict[TP, int]:
        """The next offset the store expects for each partition it holds records of."""

    @abstractmethod
    def write(self, batch: Batch) -> dict[TP, int]:
        """Store the batch; return the positions now durable (safe to commit)."""

    def poll_durable(self) -> dict[TP, int]:
        """Positions that became durable without a write (time-based rollover)."""
        return {}

    def drain(self) -> dict[TP, int]:
        """Make everything written durable before a clean stop."""
        return {}

    def release(self, tps: Collection[TP]) -> None:
        """Forget partitions this process no longer owns (rebalance)."""
        return None


def check_routes(connector: str, routes: Mapping[str, Topic], handled: Collection[Topic]) -> None:
    """Refuse routes to topics this connector has no table for, naming the ones it has."""
    names = {t.name for t in handled}
    wrong = sorted(f"{k}={t.name}" for k, t in routes.items() if t.name not in names)
    if wrong:
        raise ConfigError(f"the {connector} connector cannot store {', '.join(wrong)}; "
                          f"it stores {', '.join(sorted(names))}")


class _Stopping(CosmicError):
    """Raised inside a backoff wait when the connector is told to stop."""


class Connector(ThreadService):
    """A platform service running one sink's consume-write-commit loop in a thread."""

    def __init__(self, settings: Settings, sink: Sink, routes: Mapping[str, Topic], *,
                 group_id: str, registry: SchemaSource | None = None,
                 dlq_topic: Topic = topics.DLQ, instance_id: str | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.sink = sink
        self.name = sink.name
        self.routes = dict(routes)
        self.group_id = group_id
        self.metrics = ConnectorMetrics(sink.name)
        self.store_note = "starting"
        self._store_line = ""
        self._announced = False
        self._registry = registry
        self._dlq_topic = dlq_topic
        self._instance_id = instance_id
        self._floor: dict[TP, int] = {}
        self._pending = Batch()
        self._writes = 0
        self._consumer: Consumer | None = None
        self._dlq: DeadLetterQueue | None = None
        self._renewed: list[float] = []  # when consumers were made anew (monotonic)

    # -- PlatformService (start/stop/failure come from ThreadService) ----------------

    def progress(self) -> str:
        note = self.store_note
        if self._store_line and note == self._store_line:
            if self._announced:
                note = note.split(":", 1)[0]  # said in full once; the short form after
            self._announced = True
        return f"{self.metrics.summary()} [{note}]"

    def metrics_text(self) -> str:
        return self.metrics.prometheus_text()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        """The loop, in the calling thread, until :meth:`stop` (or an error)."""
        owned = RegistryClient.from_settings(self.settings) if self._registry is None else None
        try:
            with process_metrics.registered(self.metrics):
                self._run(owned or self._registry)
        finally:
            if owned is not None:
                owned.close()

    def _run(self, registry: SchemaSource | None) -> None:
        assert registry is not None
        # Topics without a value schema (the DLQ's raw bytes) are passed on undecoded.
        decoders = {t: AvroDeserializer(registry, carries.value)
                    if carries.name in catalog.TOPIC_SCHEMAS else None
                    for t, carries in self.routes.items()}
        try:
            self._store_line = self._retry(self.sink.open, "open the store")
        except _Stopping:
            return
        self.store_note = self._store_line
        log.info("connector %s: %s", self.name, self._store_line)
        producer = kafka.producer(self.settings, client_id=f"cosmic-connector-{self.name}")
        dlq = self._dlq = DeadLetterQueue(producer, self._dlq_topic)
        try:
            while True:
                consumer = self._subscribe()
                clean = False
                try:
                    self._consume(consumer, producer, decoders, dlq)
                    clean = True
                    return
                except KafkaException as exc:
                    self._after_fatal(exc)
                finally:
                    self._consumer = None
                    # A fatal consumer refuses to close cleanly too: its error is the one.
                    with contextlib.suppress(*(() if clean else (KafkaException,))):
                        consumer.close()
        except _Stopping:
            log.info("connector %s stopped while the store was away; nothing committed", self.name)
        finally:
            producer.flush(10)
            self.sink.close()

    def _subscribe(self) -> Consumer:
        static = {"group.instance.id": self._instance_id} if self._instance_id else {}
        consumer = kafka.consumer(
            self.settings, self.group_id, client_id=f"cosmic-connector-{self.name}",
            # A store outage stops polling for as long as it lasts; without this the
            # group would evict us after 5 minutes and rebalance for nothing.
            **{"max.poll.interval.ms": 3_600_000, "session.timeout.ms": 10_000},
            # Static membership: a restarted instance takes its partitions back at
            # once instead of waiting for its dead predecessor's session to expire.
            **static,
        )
        self._consumer = consumer
        consumer.subscribe(list(self.routes), on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_revoke)
        return consumer

    def _consume(self, consumer: Consumer, producer: Any,
                 decoders: dict[str, AvroDeserializer | None], dlq: DeadLetterQueue) -> None:
        cfg = self.settings.connectors
        next_lag = 0.0
        while not self._stop.is_set():
            room = max(1, cfg.batch_rows - len(self._pending.items))
            for msg in consumer.consume(min(room, 1000), timeout=0.2):
                self._add(msg, decoders, dlq)
            batch = self._pending
            full = len(batch.items) >= cfg.batch_rows
            due = time.monotonic() - batch.opened >= cfg.batch_interval_s
            if batch.positions and (full or due):
                self._flush(consumer, producer)
            elif not batch.positions:
                batch.opened = time.monotonic()
            self._commit(consumer, self.sink.poll_durable())
            if time.monotonic() >= next_lag:
                self._refresh_lag(consumer)
                next_lag = time.monotonic() + _LAG_EVERY_S
        # A clean stop: what is pending is written once more, then made durable.
        if self._pending.positions:
            self._flush(consumer, producer)
        self._commit(consumer, self.sink.drain())

    def _after_fatal(self, exc: KafkaException) -> None:
        """A fatal consumer error: give every partition up as a revocation would, so a new
        consumer starts from the store's positions; raise ``exc`` where it is not fatal,
        or too many new consumers were made lately.

        After a broker restart a static member's own rejoin can fence it ("fenced by
        other consumer with same group.instance.id") though no other instance has its
        id: the consumer is then dead for good, and the connector would sit idle."""
        err = exc.args[0]
        if self._stop.is_set() or not (err.fatal() or err.code() == KafkaError._FATAL):
            raise exc
        now = time.monotonic()
        self._renewed = [t for t in self._renewed if now - t < _RENEW_WINDOW_S]
        if len(self._renewed) >= _RENEW_MAX:
            raise exc
        self._renewed.append(now)
        log.warning("connector %s: consumer failed (%s); a new one resumes from the store",
                    self.name, err.str())
        gone = set(self._floor) | set(self._pending.positions)
        self._pending.drop(gone)
        self.sink.release(gone)
        self._floor.clear()
        self.metrics.lag.clear()
        if self._stop.wait(_RENEW_PAUSE_S):
            raise _Stopping("renew the consumer")

    def _add(self, msg: Message, decoders: dict[str, AvroDeserializer | None],
             dlq: DeadLetterQueue) -> None:
        err = msg.error()
        if err is not None:
            # A fatal error reaches consume() as a _FATAL event whose own flag is not set.
            if err.fatal() or err.code() == KafkaError._FATAL:
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                # e.g. a topic not created yet: the client retries by itself.
                log.warning("connector %s: %s", self.name, err.str())
            return
        topic, partition, offset = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
        tp = (topic, partition)
        if offset < self._floor.get(tp, -1):
            self.metrics.skipped += 1  # the store already has it
            return
        self._pending.positions[tp] = offset + 1
        if msg.value() is None:
            return
        decode = decoders[topic]
        if decode is None:
            self._pending.items.append(Item(topic, self.routes[topic], partition, offset,
                                            msg.timestamp()[1], msg.key(), raw_record(msg), msg))
            return
        result = self._retry(lambda: decode_or_dead_letter(msg, decode, dlq), "decode a record")
        if isinstance(result, DeadLettered):
            self.metrics.dead_letters += 1
            log.warning("dead-lettered %s[%d]@%d: %s", topic, partition, offset, result.error)
            return
        self._pending.items.append(Item(topic, self.routes[topic], partition, offset,
                                        msg.timestamp()[1], msg.key(), result.value, msg))

    def _flush(self, consumer: Consumer, producer: Any) -> None:
        batch, self._pending = self._pending, Batch()
        attempts = 0

        def write() -> dict[TP, int]:
            nonlocal attempts
            attempts += 1
            # Dead letters first: the store's position covers their offsets, so they
            # must be in Kafka before the store says they were handled.
            if producer.flush(30) > 0:
                raise StoreUnavailable("dead-letter topic did not acknowledge within 30s")
            if attempts > 1:
                # The failed attempt may have landed (a lost reply to a commit):
                # ask the store what it holds and write only the rest.
                held = self.sink.resume_positions(list(batch.positions))
                batch.items = [i for i in batch.items
                               if i.offset >= held.get((i.topic, i.partition), -1)]
            return self._write_isolating(batch, producer)

        started = time.perf_counter()
        durable = self._retry(write, "write a batch")
        self.metrics.store_write.labels(self.name).observe(time.perf_counter() - started)
        self._writes += 1
        self.metrics.rows_written += len(batch.items)
        self.metrics.batches += 1
        crash_at = self.settings.connectors.crash_after_write
        if crash_at and self._writes >= crash_at:
            # Test hook: die the hardest way between the write and the commit.
            os.kill(os.getpid(), signal.SIGKILL)
        for tp, pos in batch.positions.items():
            self._floor[tp] = max(self._floor.get(tp, -1), pos)
        self._commit(consumer, durable)

    def _write_isolating(self, batch: Batch, producer: Any) -> dict[TP, int]:
        """Write the batch; if the store refuses values, bisect and dead-letter the culprits.

        Halves are written in order, the left one with only its own positions,
        so a partition's stored position never passes a record not yet stored.
        """
        try:
            return self.sink.write(batch)
        except StoreRejected as exc:
            if len(batch.items) > 1:
                mid = len(batch.items) // 2
                left = Batch(batch.items[:mid], _positions(batch.items[:mid]))
                self._write_isolating(left, producer)
                return self._write_isolating(Batch(batch.items[mid:], batch.positions), producer)
            for item in batch.items:
                log.warning("store refused %s[%d]@%d; dead-lettered: %s",
                            item.topic, item.partition, item.offset, exc)
                if item.message is None or self._dlq is None:
                    raise
                self._dlq.send(item.message, exc)
                self.metrics.dead_letters += 1
            if producer.flush(30) > 0:
                raise StoreUnavailable("dead-letter topic did not acknowledge within 30s") from None
            return self.sink.write(Batch([], batch.positions))

    def _commit(self, consumer: Consumer, positions: dict[TP, int]) -> None:
        if not positions:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in positions.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            self.metrics.commits += 1
        except KafkaException as exc:
            # Harmless: the store's own positions decide where a restart resumes.
            log.warning("connector %s: offset commit failed: %s", self.name, exc)

    def _retry(self, fn: Callable[[], T], what: str) -> T:
        delay = _FIRST_BACKOFF_S
        while True:
            try:
                result = fn()
                if delay > _FIRST_BACKOFF_S:
                    self.store_note = self._store_line
                    log.info("connector %s: store answered again", self.name)
                return result
            except (StoreUnavailable, RegistryError) as exc:
                self.metrics.retries += 1
                self.store_note = f"retrying: {exc}"
                log.warning("connector %s could not %s (%s); retrying in %.1fs",
                            self.name, what, exc, delay)
                if self._stop.wait(delay):
                    raise _Stopping(what) from None
                delay = min(delay * 2, self.settings.connectors.backoff_max_s)

    # -- rebalance -----------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        resume = self._retry(lambda: self.sink.resume_positions(tps), "read resume positions")
        try:
            committed = {(c.topic, c.partition): c.offset
                         for c in consumer.committed(partitions, timeout=10)}
        except KafkaException as exc:
            log.warning("connector %s: cannot read committed offsets: %s", self.name, exc)
            committed = {}
        behind: dict[TP, int] = {}
        for p in partitions:
            tp = (p.topic, p.partition)
            pos = resume.get(tp)
            if pos is not None:
                # The store knows best: it may be past the last commit (a crash in
                # between). A commit past the store means records the store never
                # keeps (dead letters, tombstones) ended the partition: skip them too.
                if pos > committed.get(tp, -1):
                    behind[tp] = pos
                pos = max(pos, committed.get(tp, -1))
                p.offset = pos
                self._floor[tp] = pos
        log.info("connector %s assigned %s, resuming at %s", self.name, tps, resume)
        consumer.assign(partitions)
        # Catch the group's offsets up with the store, so lag reads true even for a
        # partition that gets no new record.
        self._commit(consumer, behind)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {(p.topic, p.partition) for p in partitions}
        # Pending records of these partitions were never committed: the next owner
        # reads them again, and the store's positions keep that free of duplicates.
        self._pending.drop(gone)
        self.sink.release(gone)
        for tp in gone:
            self._floor.pop(tp, None)
            self.metrics.lag.pop(tp, None)

    def _refresh_lag(self, consumer: Consumer) -> None:
        try:
            assigned = consumer.assignment()
            for tp in consumer.position(assigned) if assigned else []:
                _, high = consumer.get_watermark_offsets(tp, timeout=2, cached=False)
                pos = tp.offset if tp.offset >= 0 else self._floor.get((tp.topic, tp.partition))
                if pos is not None and high >= 0:
                    self.metrics.lag[(tp.topic, tp.partition)] = max(0, high - pos)
        except KafkaException as exc:
            log.debug("lag refresh failed: %s", exc)


def _positions(items: list[Item]) -> dict[TP, int]:
    out: dict[TP, int] = {}
    for item in items:
        out[(item.topic, item.partition)] = item.offset + 1
    return out


def raw_record(msg: Message) -> dict[str, Any]:
    """A message kept as it came: key, value and headers as bytes, its timestamp."""
    headers = msg.headers() or []
    pairs = headers.items() if isinstance(headers, dict) else headers
    return {
        "key": msg.key(), "value": msg.value(), "timestamp_ms": msg.timestamp()[1],
        "headers": [{"name": str(k), "value": v.encode() if isinstance(v, str) else v}
                    for k, v in pairs],
    }
