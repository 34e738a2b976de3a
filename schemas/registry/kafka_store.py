"""Registry storage in a compacted Kafka topic (``settings.registry.topic``, ``_schemas``).

Each change is one record keyed by the entity it changes (a subject version,
or a subject's compatibility level), so compaction keeps the latest state of
each and a tombstone erases a permanently deleted version. At start the
store reads the topic from the beginning to its end offset; the registry
replays those records to rebuild its state, which is how subjects survive a
restart.

Writes wait for the broker's acknowledgement before the HTTP answer goes out:
a registration the client saw succeed must survive a crash. Registry writes
are rare, so waiting per write costs nothing that matters. One registry
process writes the topic (the embedded default runs exactly one).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import NewTopic

from cosmic import kafka
from cosmic.errors import StoreError
from cosmic.settings import Settings
from schemas.registry.store import Record

_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.insync.replicas": "1"}


def _encode(obj: Record | None) -> bytes | None:
    return None if obj is None else json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class KafkaStore:
    """A :class:`~schemas.registry.store.Store` over one single-partition compacted topic."""

    def __init__(self, settings: Settings, topic: str | None = None, timeout_s: float = 30.0) -> None:
        self.settings = settings
        self.topic = topic or settings.registry.topic
        self.timeout_s = timeout_s
        self._ensure_topic()
        self._producer = kafka.producer(settings, client_id="cosmic-schema-registry", **{"linger.ms": 0})

    def _ensure_topic(self) -> None:
        admin = kafka.admin(self.settings)
        # One partition keeps a total order of changes, which replay relies on.
        new = NewTopic(
            self.topic, num_partitions=1,
            replication_factor=self.settings.kafka.replication_factor, config=_TOPIC_CONFIG,
        )
        try:
            admin.create_topics([new], operation_timeout=self.timeout_s)[self.topic].result(self.timeout_s)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if not (isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise StoreError(f"could not create registry topic {self.topic!r}: {exc}") from None

    def replay(self) -> Iterator[tuple[Record, Record | None]]:
        consumer = kafka.consumer(
            self.settings, group_id="cosmic-schema-registry-replay",
            client_id="cosmic-schema-registry", **{"isolation.level": "read_uncommitted"},
        )
        try:
            tp = TopicPartition(self.topic, 0)
            low, high = self._watermarks(consumer, tp)
            if high <= low:
                return
            consumer.assign([TopicPartition(self.topic, 0, low)])
            records: list[tuple[Record, Record | None]] = []
            position = low
            while position < high:
                msg = consumer.poll(self.timeout_s)
                if msg is None:
                    raise StoreError(
                        f"registry topic {self.topic!r} stopped at offset {position} of {high} during replay"
                    )
                if msg.error():
                    raise StoreError(f"reading registry topic {self.topic!r}: {msg.error()}")
                position = (msg.offset() or 0) + 1
                decoded = self._decode(msg)
                if decoded is not None:
                    records.append(decoded)
        finally:
            consumer.close()
        yield from records

    def _watermarks(self, consumer: Consumer, tp: TopicPartition) -> tuple[int, int]:
        # A topic created a moment ago may not be in this client's metadata yet
        # ("unknown partition"): ask again until the timeout before giving up.
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=self.timeout_s)
                return int(low), int(high)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                retriable = isinstance(err, KafkaError) and err.code() in (
                    KafkaError._UNKNOWN_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART)
                if not retriable or time.monotonic() > deadline:
                    raise StoreError(f"could not read registry topic {self.topic!r}: {exc}") from None
            time.sleep(0.2)

    @staticmethod
    def _decode(msg: Message) -> tuple[Record, Record | None] | None:
        key, value = msg.key(), msg.value()
        if key is None:
            return None
        try:
            return json.loads(key), (None if value is None else json.loads(value))
        except ValueError:
            return None  # a foreign record (e.g. a no-op key from another registry): ignore it

    def append(self, key: Record, value: Record | None) -> None:
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                errors.append(err)

        try:
            self._producer.produce(self.topic, key=_encode(key), value=_encode(value), on_delivery=delivered)
        except (KafkaException, BufferError) as exc:
            raise StoreError(f"could not write to {self.topic!r}: {exc}") from None
        remaining = self._producer.flush(self.timeout_s)
        if remaining or errors:
            reason = errors[0].str() if errors else "not acknowledged in time"
            raise StoreError(f"could not write to {self.topic!r}: {reason}")

    def close(self) -> None:
        self._producer.flush(self.timeout_s)
