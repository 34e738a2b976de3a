"""The ecosystem app's row: scripted worlds on private topics, judged by the rules alone.

The cell's worlds are scripted as the physics worker would log them (a star and
two planets each, species seeded on the planets): the seeds go to the private
commands topic before any instance runs, then the feed produces each world's
ticks and deltas. The ecosystem rules (``EcosystemWorld``) run over the same log
in this process and name every event and planet status the app must commit, in
order: world ``w``'s events are ``1..n`` in the rules' order, its statuses
``1..m``, and each committed record is matched to its number by its id.
Progress is counted in statuses, which come at a steady rate (one per planet
per step), where events come in bursts. The app commits its outputs in Kafka
transactions; a read_uncommitted reader beside the read_committed one sees the
aborted records too, the proof that a kill landed inside a transaction.
"""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import NewTopic

from cosmic import kafka, topics
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.living import outputs
from streams.living import testing as script
from streams.living.ecosystem_state import EcoEvent, EcoParams, EcosystemWorld, PlanetStatus
from streams.living.faustapp import topic_name

from .cell import Row, Verdict
from .verify import tally

_WORLDS = 4
_PARTITIONS = 3
# Two species per planet, seeded before the first tick: every step has events to make.
_SEEDS = ((10, 1, 4000), (10, 2, 900), (11, 3, 2500), (11, 4, 700))


def status_id(record: dict[str, Any]) -> str:
    """A planet status's identity: one per planet per step."""
    return f"status/{record['planet_id']}/{record['tick']}"


class _Outputs:
    """The app's private output topics (events and planet statuses) as committed, or as
    written (read_uncommitted)."""

    def __init__(self, consumer: Consumer, events: str, statuses: str) -> None:
        self.consumer = consumer
        self.statuses_topic = statuses
        # (world, event id) or (world/status, status id), in each partition's order
        self.records: list[tuple[str, str]] = []
        self.status_ms: list[int] = []  # the broker's time of each status
        self.count = 0
        self._decode: AvroDeserializer | None = None
        # Pinned as numbers: a partition nothing is read from reports no position.
        self.start = [TopicPartition(t, p, kafka.high_watermark(consumer, TopicPartition(t, p)))
                      for t in (events, statuses) for p in range(_PARTITIONS)]
        consumer.assign(self.start)

    def decoding(self, registry: RegistryClient) -> _Outputs:
        self._decode = AvroDeserializer(registry)
        return self

    def poll(self, timeout: float = 0.0) -> None:
        for msg in self.consumer.consume(2000, timeout=timeout):
            self._take(msg)

    def _take(self, msg: Message) -> None:
        if msg.error() is not None:
            return
        self.count += 1
        status = msg.topic() == self.statuses_topic
        if status:
            self.status_ms.append(msg.timestamp()[1])
        if self._decode is not None:
            rec = self._decode(msg.value(), SerializationContext(msg.topic() or ""))
            w = str(rec["world_id"])
            self.records.append((f"{w}/status", status_id(rec)) if status
                                else (w, str(rec["event_id"])))

    def drain(self) -> None:
        """Read to the end of every partition (what is there now)."""
        start = {(tp.topic, tp.partition): tp.offset for tp in self.start}
        for _ in range(200):
            positions = self.consumer.position(self.consumer.assignment())
            if all(max(tp.offset, start[tp.topic, tp.partition])
                   >= kafka.high_watermark(self.consumer, tp) for tp in positions):
                return
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()


class EcosystemRow(Row):
    name = "ecosystem"
    transactional = True
    # Each input record does not make one output: the rules say how many.
    one_output_per_input = False
    faults = ("sigterm", "sigkill", "registry-outage")  # the others: matrix.KNOWN_FAILING

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:8]
        living = self.settings.living.model_copy(update={
            "topic_prefix": f"chaos.{run}.", "ecosystem_app_id": f"chaos-eco-{run}",
            "civilization_app_id": f"chaos-civ-{run}", "step_every": 5,
            "session_timeout_s": 6.0, "start_from": "earliest"})
        self.settings = self.settings.model_copy(update={"living": living})
        self.prefix, self.app_id = living.topic_prefix, living.ecosystem_app_id
        admin = kafka.admin(self.settings)
        made = admin.create_topics([NewTopic(topic_name(self.settings, t), _PARTITIONS, 1)
                                    for t in topics.ALL])
        for f in made.values():
            f.result(30)
        self.registry = RegistryClient.from_settings(self.settings)
        self.worlds = [f"chaos-{run}-w{i}" for i in range(_WORLDS)]
        # Each world's ticks, one input record a tick and one a delta, interleaved (seeded).
        per_world = max(2, self.cell.size // (2 * _WORLDS))
        rng = random.Random(self.cell.seed)
        order = [w for w in self.worlds for _ in range(per_world)]
        rng.shuffle(order)
        bodies = script.solar_system(2)
        commands = {w: [script.seed(w, *s) for s in _SEEDS] for w in self.worlds}
        offsets = self._produce_commands(commands)
        count = dict.fromkeys(self.worlds, 0)
        self.input: list[tuple[topics.Topic, str, dict[str, Any]]] = []
        for w in order:
            count[w] += 1
            n = count[w]
            applied = offsets[w][-1] if n == 2 else None  # the seeds apply at tick 2
            self.input.append((topics.PHYSICS_TICKS, w, script.tick(w, n, last_offset=applied)))
            self.input.append((topics.STATE_DELTAS, w,
                               script.delta(w, n, bodies if n == 1 else {})))
        self.expected_ids = self._oracle(commands, offsets)
        out = (topic_name(self.settings, topics.ECOSYSTEM_EVENTS),
               topic_name(self.settings, topics.PLANET_STATUS))
        self.committed = _Outputs(kafka.reader(self.settings, "chaos-eco-committed"),
                                  *out).decoding(self.registry)
        self.uncommitted = _Outputs(kafka.reader(self.settings, "chaos-eco-uncommitted",
                                                 **{"isolation.level": "read_uncommitted"}),
                                    *out)

    def _produce_commands(self, commands: dict[str, list[dict[str, Any]]]
                          ) -> dict[str, list[int]]:
        """The seeds, one at a time (so each world's offsets come in order)."""
        name = topic_name(self.settings, topics.COMMANDS)
        encode = AvroSerializer(self.registry, "PlayerCommand")
        producer = kafka.producer(self.settings)
        offsets: dict[str, list[int]] = {w: [] for w in commands}
        for w, cmds in commands.items():
            for c in cmds:
                def done(err: Any, msg: Message, w: str = w) -> None:
                    if err is not None:
                        raise RuntimeError(f"seed not delivered: {err}")
                    offsets[w].append(int(msg.offset() or 0))
                producer.produce(name, key=w.encode(), value=encode(c, SerializationContext(name)),
                                 on_delivery=done)
                if producer.flush(30) != 0:
                    raise RuntimeError("seeds not delivered within 30 s")
        return offsets

    def _oracle(self, commands: dict[str, list[dict[str, Any]]],
                offsets: dict[str, list[int]]) -> dict[str, list[str]]:
        """Each world's event and status ids, in order, as the rules make them from the
        same log."""
        params = EcoParams(step_every=self.settings.living.step_every,
                           time_scale=self.settings.living.time_scale)
        worlds = {w: EcosystemWorld(w, params) for w in self.worlds}
        out: dict[str, list[str]] = {k: [] for w in self.worlds for k in (w, f"{w}/status")}

        def take(w: str, produced: list[Any]) -> None:
            for o in produced:
                if isinstance(o, EcoEvent):
                    out[w].append(str(outputs.ecosystem_event(w, o)["event_id"]))
                elif isinstance(o, PlanetStatus):
                    out[f"{w}/status"].append(status_id(o.record))

        for w in self.worlds:
            for offset, cmd in zip(offsets[w], commands[w], strict=True):
                take(w, worlds[w].on_command(offset, cmd))
        for topic, w, rec in self.input:
            world = worlds[w]
            take(w, world.on_tick(rec) if topic is topics.PHYSICS_TICKS else world.on_delta(rec))
        return out

    def feed(self) -> Iterator[int]:
        producer = kafka.producer(self.settings)
        encoders = {t.name: AvroSerializer(self.registry, t.value)
                    for t in (topics.PHYSICS_TICKS, topics.STATE_DELTAS)}
        for n, (topic, w, rec) in enumerate(self.input, 1):
            name = topic_name(self.settings, topic)
            producer.produce(name, key=w.encode(),
                             value=encoders[topic.name](rec, SerializationContext(name)))
            producer.poll(0)
            yield n
        if producer.flush(60) != 0:
            raise RuntimeError("ticks and deltas not delivered within 60 s")

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        return (["living", "run", "ecosystem", "--loglevel", "INFO"],
                {"COSMIC_METRICS__PORT": "0"})

    # Progress is counted in planet statuses: one per planet per step, so they grow with
    # the input (events come in bursts, and less often as populations settle).
    @property
    def expected(self) -> int:
        return sum(len(ids) for k, ids in self.expected_ids.items() if k.endswith("/status"))

    def output(self, since_ms: int | None = None) -> int:
        self.committed.poll()
        self.uncommitted.poll()
        return sum(1 for ts in self.committed.status_ms if since_ms is None or ts >= since_ms)

    def await_open_transaction(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        low: int | None = None
        while time.monotonic() < deadline:
            self.output()  # polls both readers
            ahead = self.uncommitted.count - self.committed.count
            if low is not None and ahead > low:
                return
            low = ahead if low is None else min(low, ahead)
            time.sleep(0.002)

    def verify(self) -> Verdict:
        self.committed.drain()
        self.uncommitted.drain()
        number = {(w, e): k for w, ids in self.expected_ids.items()
                  for k, e in enumerate(ids, 1)}
        # An event the rules never made counts as unexpected (number 0 is never expected).
        seen = [(w, number.get((w, e), 0)) for w, e in self.committed.records]
        return Verdict(tally({w: range(1, len(ids) + 1) for w, ids in self.expected_ids.items()},
                             seen),
                       aborted=self.uncommitted.count - self.committed.count)

    def cleanup(self) -> None:
        for reader in ("committed", "uncommitted"):
            if hasattr(self, reader):
                getattr(self, reader).close()
        if hasattr(self, "registry"):
            self.registry.close()
        if not hasattr(self, "prefix"):
            return
        admin = kafka.admin(self.settings)
        ours = [t for t in admin.list_topics(timeout=30).topics
                if t.startswith(self.prefix) or t.startswith(self.app_id)]
        if ours:
            for f in admin.delete_topics(ours, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # cleanup must not mask the verdict
                    f.result(30)
