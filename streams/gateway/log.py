"""The gateway's Kafka side: one reader for every world, one command producer.

:class:`DeltaReader` is one ``read_committed`` consumer of
``cosmic.state.deltas.v1`` (every partition, by assignment: it commits
nothing, a restarted gateway rebuilds from the log). On start it reads each
world's latest ``WorldSnapshot`` (the compacted topic), then reads deltas from
``lookback_s`` back; a world's deltas at or below its snapshot's tick are
skipped. A ticking world snapshots every few seconds, so its snapshot is inside
the lookback and it is seen whole; a world whose latest snapshot is older is
hibernated or retired (its snapshot is its state), except a world that ticks
slower than one snapshot per lookback: its bodies are exact again once each has
been in a delta. Every tick it
folds in becomes a :class:`~.world.Tick` handed to the core on its loop.

The same consumer follows ``cosmic.physics.ticks.v1`` and
``cosmic.commands.rejected.v1`` for the outcomes of the commands this gateway
admits (:mod:`.outcomes`), from their ends as of :meth:`DeltaReader.start`:
the service starts it before its faces listen, so every admitted command's
tick and rejection come after that point. Ticks that consumed no command are
dropped here; the rest, and every rejection, go to the outcome table. While
tracing is on, the trace contexts of a delta's headers ride on its tick.

:class:`CommandLog` produces validated commands idempotently to their world's
home partition and resolves when the broker has them; while tracing is on, each
under a ``send`` span whose context goes in the record's headers.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Protocol

from confluent_kafka import KafkaError, Message, TopicPartition

from cosmic import kafka, topics, tracing
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from schemas import models
from schemas.serde import AvroDeserializer, AvroSerializer, SchemaSource, SerializationContext
from streams.worlds.eventlog import KafkaLog

from .errors import Unavailable
from .world import Grid, Tick, WorldFeed

log = logging.getLogger(__name__)

_OUTCOME_TOPICS = (topics.PHYSICS_TICKS.name, topics.COMMANDS_REJECTED.name)


class OutcomeSink(Protocol):
    """Where ticks and rejections go (:class:`~.outcomes.Outcomes`), on the loop."""

    def tick(self, record: dict[str, Any]) -> None: ...

    def rejection(self, record: dict[str, Any], partition: int) -> None: ...


class DeltaReader(ThreadService):
    """Reads every world's deltas in a thread of its own and publishes their ticks;
    follows ticks and rejections for the outcome table."""

    name = "gateway-deltas"
    join_timeout_s = 30.0

    def __init__(self, settings: Settings, registry: SchemaSource, grid: Grid,
                 publish: Any, loop: asyncio.AbstractEventLoop,
                 outcomes: OutcomeSink | None = None) -> None:
        super().__init__()
        self.settings = settings
        self.registry = registry
        self.grid = grid
        self._publish = publish
        self._loop = loop
        self._decode = AvroDeserializer(registry)
        self._ctx = SerializationContext(topics.STATE_DELTAS.name)
        self._outcomes = outcomes
        self._outcome_ctx = {t: SerializationContext(t) for t in _OUTCOME_TOPICS}
        self._outcomes_from: list[TopicPartition] = []
        self.worlds: dict[str, WorldFeed] = {}
        self.ticks = 0
        self.undecodable = 0
        self._ready = threading.Event()
        self.tracer = tracing.tracer("streams.gateway")

    def start(self) -> None:
        """Fix where ticks and rejections are followed from (their ends now; blocks
        for a metadata round trip), then read in a thread of its own."""
        if self._outcomes is not None:
            self._outcomes_from = _ends(self.settings, _OUTCOME_TOPICS)
        super().start()

    def wait_ready(self, timeout_s: float) -> bool:
        return self._ready.wait(timeout_s)

    def run(self) -> None:
        source = KafkaLog(self.settings, self.registry)
        start_ms = now_ms() - int(self.settings.gateway.lookback_s * 1000)
        for partition in source.partitions(topics.STATE_SNAPSHOTS.name):
            latest: dict[str, dict[str, Any]] = {}
            for _, _, record in source.read(topics.STATE_SNAPSHOTS.name, partition):
                latest[record["world_id"]] = record
            for world_id, record in latest.items():
                feed = self.worlds[world_id] = WorldFeed(world_id, self.grid)
                self._hand_over(feed.start_from_snapshot(record))
        consumer = kafka.reader(self.settings, "gateway")
        try:
            parts = []
            for partition in source.partitions(topics.STATE_DELTAS.name):
                # The end as a number, asked before the time lookup: OFFSET_END would
                # resolve only when the first fetch is made (late, if the broker is slow
                # to answer), and deltas appended after ready would be skipped.
                tp = TopicPartition(topics.STATE_DELTAS.name, partition)
                end = kafka.high_watermark(consumer, tp)
                offset = source.offset_for_time(topics.STATE_DELTAS.name, partition, start_ms)
                parts.append(TopicPartition(topics.STATE_DELTAS.name, partition,
                                            end if offset is None else offset))
            consumer.assign(parts + self._outcomes_from)
            self._ready.set()
            while not self._stop.is_set():
                for msg in consumer.consume(1000, timeout=0.05):
                    self._fold(msg)
        finally:
            consumer.close()

    def _fold(self, msg: Message) -> None:
        if (err := msg.error()) is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("deltas: %s", err)
            return
        if msg.topic() in self._outcome_ctx:
            self._follow(msg)
            return
        try:
            record = self._decode(msg.value(), self._ctx)
        except Exception:  # noqa: BLE001 - a bad record is skipped, counted, never fatal
            self.undecodable += 1
            return
        world_id = record["world_id"]
        feed = self.worlds.get(world_id)
        if feed is None:
            feed = self.worlds[world_id] = WorldFeed(world_id, self.grid)
        traces = () if self.tracer is None else tracing.extract_all(msg.headers())
        tick = feed.apply(record, traces)
        if tick is not None:
            self._hand_over(tick)

    def _hand_over(self, tick: Tick) -> None:
        self.ticks += 1
        self._loop.call_soon_threadsafe(self._publish, tick)

    def _follow(self, msg: Message) -> None:
        assert self._outcomes is not None
        topic = msg.topic() or ""
        try:
            record = self._decode(msg.value(), self._outcome_ctx[topic])
        except Exception:  # noqa: BLE001 - a bad record is skipped, counted, never fatal
            self.undecodable += 1
            return
        if topic == topics.PHYSICS_TICKS.name:
            if record.get("first_command_offset") is None:
                return  # consumed no command: decides nothing
            self._loop.call_soon_threadsafe(self._outcomes.tick, record)
        else:
            self._loop.call_soon_threadsafe(self._outcomes.rejection, record,
                                            msg.partition() or 0)


class CommandLog:
    """Appends commands to ``cosmic.commands.v1`` at their world's home partition."""

    def __init__(self, settings: Settings, registry: SchemaSource,
                 loop: asyncio.AbstractEventLoop, timeout_s: float = 10.0,
                 topic: str = topics.COMMANDS.name) -> None:
        self.topic = topic  # another (a private copy) only for benches and tests
        self._producer = kafka.producer(settings, client_id="cosmic-gateway")
        self._encode = AvroSerializer(registry, "PlayerCommand")
        self._ctx = SerializationContext(topics.COMMANDS.name)
        self._loop = loop
        self._timeout_s = timeout_s
        self._partitions = topics.COMMANDS.partitions
        self._stop = threading.Event()
        self.tracer = tracing.tracer("streams.gateway")
        self._thread = threading.Thread(target=self._poll, name="gateway-commands", daemon=True)
        self._thread.start()

    async def append(self, command: models.PlayerCommand, avro: bytes | None = None
                     ) -> tuple[int, int]:
        """Append a command the guard admitted (and signed); (partition, offset)."""
        done: asyncio.Future[tuple[int, int]] = self._loop.create_future()
        partition = kafka.home_partition(command.world_id, self._partitions)
        value = command_value(self._encode, self._ctx, command, avro)
        # Under the current span (the core's SubmitCommand); ended when the broker answers.
        span = None if self.tracer is None else self.tracer.start_span(
            f"send {self.topic}", kind=tracing.PRODUCER, attributes=tracing.messaging(
                "send", self.topic, **{tracing.MESSAGING_PARTITION: str(partition)}))

        def delivered(err: KafkaError | None, msg: Message) -> None:
            result: Any = (Unavailable(f"the command log refused the command: {err}")
                           if err is not None else (msg.partition(), msg.offset()))
            if span is not None:
                if err is not None:
                    tracing.failed(span, str(err))
                else:
                    span.set_attribute(tracing.MESSAGING_OFFSET, msg.offset() or 0)
                span.end()
            self._loop.call_soon_threadsafe(_settle, done, result)

        extra: dict[str, Any] = {} if span is None else {"headers": tracing.inject(span)}
        try:
            self._producer.produce(self.topic, key=command.world_id.encode(), value=value,
                                   partition=partition, on_delivery=delivered, **extra)
        except BaseException as exc:
            if span is not None:
                tracing.end_all([span], f"not produced: {exc}")
            raise
        try:
            return await asyncio.wait_for(done, self._timeout_s)
        except TimeoutError:
            raise Unavailable(f"the command log did not confirm within {self._timeout_s:g}s") from None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self._producer.flush(10)

    def _poll(self) -> None:
        while not self._stop.is_set():
            self._producer.poll(0.05)


def command_value(encode: AvroSerializer, ctx: SerializationContext,
                  command: models.PlayerCommand, avro: bytes | None) -> bytes:
    """A command's bytes on the topic: ``avro`` (the guard's encoding of the signed record,
    made once for its signature) framed, or else the command encoded here."""
    if avro is not None:
        return encode.framed(avro, ctx)
    return encode(command.to_avro(), ctx)


def _ends(settings: Settings, names: tuple[str, ...]) -> list[TopicPartition]:
    """Every partition of ``names`` at its end now: what is appended later is read."""
    consumer = kafka.reader(settings, "gateway-ends")
    try:
        out = []
        for name in names:
            md = consumer.list_topics(name, timeout=30).topics[name]
            for partition in sorted(md.partitions):
                tp = TopicPartition(name, partition)
                _, high = consumer.get_watermark_offsets(tp, timeout=30, cached=False)
                out.append(TopicPartition(name, partition, high))
        return out
    finally:
        consumer.close()


def _settle(future: asyncio.Future[tuple[int, int]], result: Any) -> None:
    if future.done():
        return
    if isinstance(result, BaseException):
        future.set_exception(result)
    else:
        future.set_result(result)
