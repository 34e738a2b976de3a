"""Where replay reads the event log from: Kafka itself, or a log exported to files.

Both sources hand out decoded records of one partition of a topic, with their
original offsets, in offset order. Tick events name the commands they applied
by offset, so a copy of the log is only useful if it keeps those offsets; an
export does (Kafka topics cannot: a fresh topic renumbers from zero and
transaction markers leave gaps), which is what lets an SRE tamper with, trim
or inspect a copy and replay it.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError, StoreError
from cosmic.settings import Settings
from schemas.serde import AvroDeserializer, SchemaSource, SerializationContext

Decoded = tuple[int, int, dict[str, Any]]  # (offset, timestamp ms, record)
# Which records a read decodes, by key (a world id): the others are stepped over unread.
KeyFilter = Callable[[bytes | None], bool]


@dataclass(frozen=True)
class Undecodable:
    """A record a read stepped over because its value would not decode."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    error: str


# Called for every record a read skips. The live path dead-letters such records,
# so skipping is right for commands; whether a skipped tick or snapshot is fatal
# is the caller's call (a verifying replay must not stay silent about it).
OnUndecodable = Callable[[Undecodable], None]

# Short polls: a batch call waits its whole timeout unless it fills up. A read ends
# when the consumer's position reaches the end captured at its start (the position
# also steps over transaction markers); nothing at all for this long means an open
# transaction holds the partition back, and the read fails rather than stop short.
_POLL_S = 0.05
_STUCK_AFTER_S = 60.0


@dataclass(frozen=True)
class LogTopics:
    """The topics replay reads; a copy of the log may live under other names."""

    commands: str = topics.COMMANDS.name
    ticks: str = topics.PHYSICS_TICKS.name
    snapshots: str = topics.STATE_SNAPSHOTS.name
    history: str = topics.STATE_SNAPSHOT_HISTORY.name
    worlds: str = topics.WORLDS.name

    def all(self) -> tuple[str, ...]:
        return (self.commands, self.ticks, self.snapshots, self.history)


class LogSource(Protocol):
    topics: LogTopics
    on_undecodable: OnUndecodable | None

    def partitions(self, topic: str) -> list[int]: ...

    def world_partition(self, world_id: str) -> int: ...

    def read(self, topic: str, partition: int, start: int | None = None,
             stop: int | None = None, key: bytes | None = None,
             keys: KeyFilter | None = None) -> Iterator[Decoded]: ...

    def offset_for_time(self, topic: str, partition: int, ts_ms: int) -> int | None: ...

    def end_offset(self, topic: str, partition: int) -> int: ...


class Readers:
    """Long-lived read_committed consumers, lent out for one read at a time.

    A consumer made for one read spends its first round trips on connecting,
    authenticating and fetching metadata: with SASL on a loaded machine that is
    a good part of a short read (a handover's recovery makes several). A pooled
    one is connected already; it is only assigned, read and unassigned."""

    def __init__(self, settings: Settings, purpose: str = "log") -> None:
        self._settings = settings
        self._purpose = purpose
        self._idle: list[Consumer] = []
        self._lock = threading.Lock()

    def warm(self, n: int, topic: str) -> None:
        """Have ``n`` consumers connected (metadata of ``topic`` fetched) before the first
        read needs them."""
        made = [kafka.reader(self._settings, self._purpose) for _ in range(n)]
        for consumer in made:
            consumer.list_topics(topic, timeout=30)
        with self._lock:
            self._idle.extend(made)

    @contextlib.contextmanager
    def lend(self) -> Iterator[Consumer]:
        with self._lock:
            consumer = self._idle.pop() if self._idle else None
        if consumer is None:
            consumer = kafka.reader(self._settings, self._purpose)
        try:
            yield consumer
        finally:
            try:
                consumer.unassign()
            except (KafkaException, RuntimeError):
                consumer.close()
            else:
                with self._lock:
                    self._idle.append(consumer)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for consumer in idle:
            with contextlib.suppress(KafkaException, RuntimeError):
                consumer.close()


@contextlib.contextmanager
def _reading(settings: Settings, readers: Readers | None) -> Iterator[Consumer]:
    """A consumer for one read: lent by ``readers``, or made for it and closed after."""
    if readers is not None:
        with readers.lend() as consumer:
            yield consumer
        return
    consumer = kafka.reader(settings, "log")
    try:
        yield consumer
    finally:
        consumer.close()


def partition_count(settings: Settings, topic: str) -> int:
    """How many partitions ``topic`` has on the cluster: what a key's partition depends on."""
    md = kafka.admin(settings).list_topics(topic, timeout=30).topics.get(topic)
    if md is None or md.error is not None:
        raise StoreError(f"topic {topic} does not exist")
    return len(md.partitions)


def raw_messages(settings: Settings, topic: str, partition: int, start: int | None = None,
                 stop: int | None = None, readers: Readers | None = None) -> Iterator[Message]:
    """Committed messages of one partition from ``start`` up to ``stop`` (inclusive) or
    the end as it was when the read began, undecoded, in offset order."""
    tp = TopicPartition(topic, partition)
    with _reading(settings, readers) as consumer:
        low, high = consumer.get_watermark_offsets(tp, timeout=30)
        end = high if stop is None else min(high, stop + 1)
        begin = low if start is None or start == OFFSET_BEGINNING else max(start, low)
        if begin >= end:
            return
        consumer.assign([TopicPartition(topic, partition, begin)])
        last_progress = time.monotonic()
        while True:
            msgs = consumer.consume(1000, timeout=_POLL_S)
            if msgs:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > _STUCK_AFTER_S:
                (pos,) = consumer.position([tp])
                raise StoreError(
                    f"reading {topic}[{partition}] stalled at offset {pos.offset} before its "
                    f"end {end}: an open transaction may be holding it back")
            for msg in msgs:
                if (err := msg.error()) is not None:
                    raise KafkaException(err)
                # A lent consumer may still hand out what it fetched for its last read.
                if msg.topic() != topic or msg.partition() != partition or (
                        msg.offset() or 0) < begin:
                    continue
                if (msg.offset() or 0) >= end:
                    return
                yield msg
            (pos,) = consumer.position([tp])
            if pos.offset >= end:
                return


class KafkaLog:
    """Committed records straight from the cluster (``read_committed``)."""

    def __init__(self, settings: Settings, registry: SchemaSource,
                 log_topics: LogTopics | None = None, readers: Readers | None = None) -> None:
        self.settings = settings
        self.topics = log_topics or LogTopics()
        self.on_undecodable: OnUndecodable | None = None
        # Pooled, connected consumers (a worker's recoveries); None: one made per read.
        self.readers = readers
        self._decode = AvroDeserializer(registry)
        # Commands are read as the live worker reads them: resolved to PlayerCommand.
        self._decode_command = AvroDeserializer(registry, "PlayerCommand")

    def partitions(self, topic: str) -> list[int]:
        md = kafka.admin(self.settings).list_topics(topic, timeout=30).topics.get(topic)
        if md is None or md.error is not None:
            raise StoreError(f"topic {topic} does not exist")
        return sorted(md.partitions)

    def world_partition(self, world_id: str) -> int:
        """Where a world's records live: its key's partition, as every producer chooses it."""
        return kafka.partition_for(world_id.encode(), len(self.partitions(self.topics.commands)))

    def read(self, topic: str, partition: int, start: int | None = None,
             stop: int | None = None, key: bytes | None = None,
             keys: KeyFilter | None = None) -> Iterator[Decoded]:
        """Records from ``start`` up to ``stop`` (inclusive) or the end; undecodable ones
        are skipped and reported to ``on_undecodable``; ``key`` and ``keys`` filter before
        decoding."""
        ctx = SerializationContext(topic)
        decode = self._decode_command if topic == self.topics.commands else self._decode
        for msg in raw_messages(self.settings, topic, partition, start, stop, self.readers):
            if (key is not None and msg.key() != key) or (keys is not None and not keys(msg.key())):
                continue
            offset = msg.offset() or 0
            try:
                record = decode(msg.value(), ctx)
            except SerializationError as exc:
                self._skipped(Undecodable(topic, partition, offset, msg.key(), str(exc)))
                continue
            yield offset, msg.timestamp()[1], record

    def _skipped(self, bad: Undecodable) -> None:
        if self.on_undecodable is not None:
            self.on_undecodable(bad)

    def offset_for_time(self, topic: str, partition: int, ts_ms: int) -> int | None:
        with _reading(self.settings, self.readers) as consumer:
            (tp,) = consumer.offsets_for_times(
                [TopicPartition(topic, partition, max(0, ts_ms))], timeout=30)
        return tp.offset if tp.offset >= 0 else None

    def end_offset(self, topic: str, partition: int) -> int:
        """Where the partition's next record will go (its high watermark)."""
        with _reading(self.settings, self.readers) as consumer:
            return int(consumer.get_watermark_offsets(TopicPartition(topic, partition),
                                                      timeout=30)[1])


# One exported record: the raw bytes as they were on the topic, with their coordinates.
EXPORT_SCHEMA = fastavro.parse_schema({
    "type": "record", "name": "ExportedRecord", "namespace": "io.cosmicgarden.export",
    "doc": "One Kafka record as it was on its topic, for offline replay.",
    "fields": [
        {"name": "topic", "type": "string", "doc": "Source topic."},
        {"name": "partition", "type": "int", "doc": "Source partition."},
        {"name": "offset", "type": "long", "doc": "Offset in the source partition."},
        {"name": "timestamp", "type": "long", "doc": "Record timestamp, ms since the epoch."},
        {"name": "key", "type": ["null", "bytes"], "doc": "Record key."},
        {"name": "value", "type": ["null", "bytes"], "doc": "Record value (wire format)."},
    ],
})


def export_file(directory: Path, topic: str) -> Path:
    return directory / f"{topic}.avro"


class ExportedLog:
    """A log exported by ``cosmic log export``: one Avro container file per topic."""

    def __init__(self, directory: Path, registry: SchemaSource,
                 log_topics: LogTopics | None = None) -> None:
        self.directory = Path(directory)
        self.topics = log_topics or LogTopics()
        self.on_undecodable: OnUndecodable | None = None
        self._decode = AvroDeserializer(registry)
        self._decode_command = AvroDeserializer(registry, "PlayerCommand")
        self._cache: dict[str, list[dict[str, Any]]] = {}

    def _records(self, topic: str) -> list[dict[str, Any]]:
        if topic not in self._cache:
            path = export_file(self.directory, topic)
            if not path.exists():
                raise StoreError(f"exported log has no {path.name} in {self.directory}")
            with path.open("rb") as f:
                rows = [r for r in fastavro.reader(f, reader_schema=EXPORT_SCHEMA)
                        if isinstance(r, dict)]
            rows.sort(key=lambda r: (r["partition"], r["offset"]))
            self._cache[topic] = rows
        return self._cache[topic]

    def partitions(self, topic: str) -> list[int]:
        return sorted({r["partition"] for r in self._records(topic)})

    def world_partition(self, world_id: str) -> int:
        key = world_id.encode()
        for r in self._records(self.topics.commands):
            if r["key"] == key:
                return int(r["partition"])
        raise StoreError(f"the exported log in {self.directory} has no commands of {world_id}")

    def read(self, topic: str, partition: int, start: int | None = None,
             stop: int | None = None, key: bytes | None = None,
             keys: KeyFilter | None = None) -> Iterator[Decoded]:
        ctx = SerializationContext(topic)
        decode = self._decode_command if topic == self.topics.commands else self._decode
        for r in self._records(topic):
            if r["partition"] != partition or (start is not None and r["offset"] < start):
                continue
            if stop is not None and r["offset"] > stop:
                return
            if (key is not None and r["key"] != key) or (keys is not None and not keys(r["key"])):
                continue
            try:
                record = decode(r["value"], ctx)
            except SerializationError as exc:
                if self.on_undecodable is not None:
                    self.on_undecodable(
                        Undecodable(topic, partition, r["offset"], r["key"], str(exc)))
                continue
            yield r["offset"], r["timestamp"], record

    def offset_for_time(self, topic: str, partition: int, ts_ms: int) -> int | None:
        for r in self._records(topic):
            if r["partition"] == partition and r["timestamp"] >= ts_ms:
                return int(r["offset"])
        return None

    def end_offset(self, topic: str, partition: int) -> int:
        offsets = [int(r["offset"]) for r in self._records(topic) if r["partition"] == partition]
        return max(offsets, default=-1) + 1


def export_world(settings: Settings, world_id: str, directory: Path,
                 log_topics: LogTopics | None = None) -> dict[str, int]:
    """Copy one world's records (commands, ticks, snapshot history) with their offsets into
    ``directory``, one Avro container file per topic; return records written per topic."""
    log_topics = log_topics or LogTopics()
    directory.mkdir(parents=True, exist_ok=True)
    key = world_id.encode()
    counts: dict[str, int] = {}
    for topic in (log_topics.commands, log_topics.ticks, log_topics.history):
        n_parts = len(kafka.admin(settings).list_topics(topic, timeout=30).topics[topic].partitions)
        partition = kafka.partition_for(key, n_parts)
        rows = [
            {"topic": topic, "partition": partition, "offset": msg.offset(),
             "timestamp": msg.timestamp()[1], "key": msg.key(), "value": msg.value()}
            for msg in raw_messages(settings, topic, partition) if msg.key() == key
        ]
        tmp = export_file(directory, topic).with_suffix(".tmp")
        with tmp.open("wb") as f:
            fastavro.writer(f, EXPORT_SCHEMA, rows)
        tmp.replace(export_file(directory, topic))
        counts[topic] = len(rows)
    return counts
