"""The cheat detector as a service: commands and refusals in, flags out.

It reads ``cosmic.commands.v1`` and ``cosmic.commands.rejected.v1`` in its
own consumer group, runs :mod:`.anomaly`'s rules, and writes each flag to
``cosmic.security.flags.v1`` (the ClickHouse connector lands them for
analysts). A record that does not decode is skipped and counted: the physics
worker already dead-letters bad commands, and a second copy in the DLQ would
only mislead. Offsets are committed after the flags they led to are
delivered, so a restart may raise a flag again, never lose one; the flag id
is the same, and the store keeps one. Windows still open at a restart are
judged on what arrives after it. A new group starts at the end of the topics:
the detector watches what players do now (``start="earliest"`` judges the
whole history instead).
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaException, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext
from schemas.typed import ModelDeserializer

from .anomaly import Detector, Flag, Rules

log = logging.getLogger(__name__)

GROUP = "cosmic-security-detector"


class CheatDetector(ThreadService):
    name = "detector"

    def __init__(self, settings: Settings, registry: SchemaSource | None = None,
                 group_id: str = GROUP, start: Literal["earliest", "latest"] = "latest") -> None:
        super().__init__()
        self.start_at = start
        # Set once the group has given this detector its partitions.
        self.watching = threading.Event()
        self.settings = settings
        self.group_id = group_id
        self.registry = registry or RegistryClient.from_settings(settings)
        self.detector = Detector(Rules.from_settings(settings.security))
        self.commands = 0
        self.refusals = 0
        self.skipped = 0
        self.flags: list[Flag] = []

    def progress(self) -> str:
        return (f"{self.commands} commands and {self.refusals} refusals watched, "
                f"{len(self.flags)} flags raised, {self.skipped} undecodable skipped")

    def run(self) -> None:
        decode_command = ModelDeserializer(self.registry, models.PlayerCommand)
        decode_refusal = ModelDeserializer(self.registry, models.CommandRejected)
        encode = AvroSerializer(self.registry, "SecurityFlag")
        flag_ctx = SerializationContext(topics.SECURITY_FLAGS.name)
        consumer = kafka.consumer(self.settings, self.group_id, client_id="cosmic-detector",
                                  **{"auto.offset.reset": self.start_at})
        producer = kafka.producer(self.settings, client_id="cosmic-detector")
        consumer.subscribe([topics.COMMANDS.name, topics.COMMANDS_REJECTED.name],
                           on_assign=self._on_assign)
        try:
            while not self._stop.is_set():
                batch = consumer.consume(500, timeout=0.5)
                for msg in batch:
                    self._take(msg, decode_command, decode_refusal)
                self.detector.advance(now_ms())
                flags = self.detector.close()
                for f in flags:
                    producer.produce(topics.SECURITY_FLAGS.name, key=f.player_id.encode(),
                                     value=encode(f.record(now_ms()), flag_ctx))
                    log.warning("flagged player %s in %s: %s (score %.1f)", f.player_id,
                                f.world_id, f.kind.value, f.score)
                if flags and producer.flush(30) > 0:
                    raise KafkaException("flags were not delivered within 30 s")
                self.flags += flags
                if batch:
                    consumer.commit(asynchronous=False)
        finally:
            consumer.close()
            producer.flush(10)

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Pin where a partition without a committed offset starts, before the first
        fetch: what is produced after ``watching`` is set is judged."""
        if self.start_at == "latest":
            committed = {(tp.topic, tp.partition): tp.offset
                         for tp in consumer.committed(parts, timeout=30)}
            for tp in parts:
                if committed.get((tp.topic, tp.partition), OFFSET_INVALID) < 0:
                    tp.offset = consumer.get_watermark_offsets(tp, timeout=30)[1]
            consumer.assign(parts)
        self.watching.set()

    def _take(self, msg: Message, decode_command: ModelDeserializer[models.PlayerCommand],
              decode_refusal: ModelDeserializer[models.CommandRejected]) -> None:
        if msg.error() is not None:
            log.warning("detector: consumer error %s", msg.error())
            return
        ts = msg.timestamp()[1]
        ctx = SerializationContext(msg.topic() or "")
        try:
            if msg.topic() == topics.COMMANDS.name:
                self.detector.command(decode_command(msg.value(), ctx), ts)
                self.commands += 1
            else:
                self.detector.refusal(decode_refusal(msg.value(), ctx), ts)
                self.refusals += 1
        except SerializationError:
            self.skipped += 1
