"""Bans and revoked tokens on ``cosmic.security.revocations.v1``, followed by every gateway.

The topic is compacted and keyed ``player:<id>`` or ``token:<jti>``: the latest
record per key is the state, a tombstone lifts it. :class:`RevocationFollower`
reads it from the start into a :class:`~.tokens.Denylist` and then keeps up
as records arrive, so a ban written by ``cosmic auth ban`` reaches every
gateway well within a second (a record wakes the consumer at once; it polls the
broker every 10 ms). :func:`publish` writes one.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Literal

from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from schemas.serde import AvroDeserializer, AvroSerializer, SchemaSource, SerializationContext

from .tokens import Denylist

log = logging.getLogger(__name__)
Kind = Literal["player", "token"]


def key_of(kind: Kind, subject: str) -> bytes:
    return f"{kind}:{subject}".encode()


def publish(settings: Settings, registry: SchemaSource, kind: Kind, subject: str, *,
            reason: str = "", issued_by: str = "operator", until_s: float | None = None,
            lift: bool = False, topic: str = topics.REVOCATIONS.name) -> int:
    """Write a ban/revocation (or, with ``lift``, its tombstone); the epoch ms it was written."""
    producer = kafka.producer(settings, client_id="cosmic-revocations")
    written = int(time.time() * 1000)
    value = None
    if not lift:
        record = {"kind": kind.upper(), "subject": subject,
                  "revoked_ts": datetime.fromtimestamp(written / 1000, UTC),
                  "until_ts": None if until_s is None else datetime.fromtimestamp(until_s, UTC),
                  "reason": reason, "issued_by": issued_by}
        value = AvroSerializer(registry, "Revocation")(
            record, SerializationContext(topics.REVOCATIONS.name))
    errors: list[KafkaError] = []
    producer.produce(topic, key=key_of(kind, subject), value=value,
                     on_delivery=lambda err, _msg: errors.append(err) if err else None)
    producer.flush(30)
    if errors:
        from cosmic.errors import TopicError
        raise TopicError(f"the revocation was not written: {errors[0]}")
    return written


class RevocationFollower(ThreadService):
    """A thread that keeps a denylist equal to the revocations topic."""

    name = "revocations"
    join_timeout_s = 10.0

    def __init__(self, settings: Settings, registry: SchemaSource, denylist: Denylist,
                 topic: str = topics.REVOCATIONS.name) -> None:
        super().__init__()
        self.settings = settings
        self.denylist = denylist
        self.topic = topic
        self._decode = AvroDeserializer(registry)
        self._ctx = SerializationContext(topics.REVOCATIONS.name)
        self._ready = threading.Event()
        self.applied = 0

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether every revocation written before the start has been applied."""
        return self._ready.wait(timeout_s)

    def run(self) -> None:
        consumer = kafka.reader(self.settings, "revocations", **{"fetch.wait.max.ms": 10})
        try:
            meta = consumer.list_topics(self.topic, timeout=30).topics[self.topic]
            parts = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in meta.partitions]
            ends = {p.partition: consumer.get_watermark_offsets(p, timeout=30)[1] for p in parts}
            consumer.assign(parts)
            while not self._stop.is_set():
                msg = consumer.poll(0.25)  # returns as soon as a record is there
                if msg is not None:
                    self._apply(msg)
                if not self._ready.is_set() and all(
                        end == 0 or tp.offset >= end for tp, end in zip(
                            consumer.position(parts), ends.values(), strict=True)):
                    self._ready.set()
        finally:
            consumer.close()

    def _apply(self, msg: Message) -> None:
        if (err := msg.error()) is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("revocations: %s", err)
            return
        key = (msg.key() or b"").decode(errors="replace")
        kind, _, subject = key.partition(":")
        if kind not in ("player", "token") or not subject:
            log.warning("revocations: a record with key %r is not a revocation", key)
            return
        if msg.value() is None:
            self.denylist.lift(kind, subject)
            self.applied += 1
            return
        try:
            record = self._decode(msg.value(), self._ctx)
        except Exception:  # noqa: BLE001 - logged and skipped, never fatal for the gateway
            log.warning("revocations: an undecodable record at offset %s", msg.offset())
            return
        until = record["until_ts"]
        until_s = None if until is None else until.timestamp()
        if kind == "player":
            self.denylist.ban(subject, until_s)
        else:
            self.denylist.revoke(subject, until_s)
        self.applied += 1
