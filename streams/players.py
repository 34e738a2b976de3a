"""Synthetic players: a platform service that plays the demo worlds at a steady rate.

`cosmic up` runs it so a plain start shows living worlds. Players act on the
world they see, as a frontend would: they load a world's latest snapshot, follow
its state deltas, and aim nudges and removals at asteroids that exist and give
new asteroids ids nobody has used. A world with no snapshot yet is opened with
the built-in scenario; one left by an earlier run is played as it is. A share of
commands (one in ``invalid_every``) is invalid on purpose, so rejections are
always exercised; every other rejection is a race with the world.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from schemas import columnar, models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SchemaSource, SerializationContext
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.deltas import DeltaMirror
from streams.worlds.eventlog import KafkaLog, raw_messages
from streams.worlds.state import KIND_CODE

ASTEROID = KIND_CODE["ASTEROID"]


class SeenWorld:
    """The bodies of one world as its snapshot and deltas show them to a player."""

    def __init__(self) -> None:
        self.mirror = DeltaMirror()
        self.tick = -1  # the state seen holds after this tick
        self.highest_id = -1  # over every body ever seen, removed ones too
        # Bodies these players removed: not aimed at again while the world still shows them.
        self._doomed: set[int] = set()

    def load_snapshot(self, record: dict[str, Any]) -> None:
        self.mirror = DeltaMirror()
        self.mirror.apply(columnar.unpack_bodies(record), (), float(record["sim_time"]))
        self.tick = int(record["tick"])
        self._note_ids()

    def apply_delta(self, record: dict[str, Any]) -> None:
        """Fold in a StateDelta; ones at or before the tick already seen change nothing."""
        if int(record["tick"]) <= self.tick:
            return
        self.mirror.apply_record(record)
        self.tick = int(record["tick"])
        self._note_ids()
        self._doomed &= set(self.mirror.ids.tolist())

    def spawned(self, body_id: int) -> None:
        self.highest_id = max(self.highest_id, body_id)

    def removing(self, body_id: int) -> None:
        self._doomed.add(body_id)

    def asteroids(self) -> npt.NDArray[np.int64]:
        """Ids of the asteroids in sight that nobody here is removing."""
        ids = self.mirror.ids[self.mirror.kinds == ASTEROID]
        if self._doomed:
            ids = ids[~np.isin(ids, np.fromiter(self._doomed, np.int64))]
        return ids

    def _note_ids(self) -> None:
        if len(self.mirror):
            self.highest_id = max(self.highest_id, int(self.mirror.ids[-1]))


def latest_snapshot(settings: Settings, registry: SchemaSource,
                    world_id: str) -> tuple[dict[str, Any], int] | None:
    """The newest snapshot of ``world_id`` and its timestamp (ms), or None if it has none."""
    key = world_id.encode()
    partition = KafkaLog(settings, registry).world_partition(world_id)
    last = None
    # Only the last one is decoded: the compacted topic may still hold many per world.
    for msg in raw_messages(settings, topics.STATE_SNAPSHOTS.name, partition):
        if msg.key() == key:
            last = msg
    if last is None:
        return None
    record = AvroDeserializer(registry)(last.value(), SerializationContext(topics.STATE_SNAPSHOTS.name))
    return record, last.timestamp()[1]


class SyntheticPlayers(ThreadService):
    name = "players"
    join_timeout_s = 30.0

    def __init__(self, settings: Settings, world_ids: tuple[str, ...] = ("garden-demo",),
                 rate_hz: float = 20.0, seed: int | None = None,
                 registry: SchemaSource | None = None, life_delay_s: float = 20.0,
                 invalid_every: int = 20, asteroids: int = 200) -> None:
        super().__init__()
        self.settings = settings
        self.life_delay_s = life_delay_s
        self.world_ids = world_ids
        self.rate_hz = rate_hz
        self.asteroids = asteroids  # in the opening of a new world
        # A fresh seed per run: species and civilizations get new ids each run.
        self.seed = seed if seed is not None else now_ms() % 100_000
        self.registry = registry or RegistryClient.from_settings(settings)
        self.sent = 0
        self.players = {w: scenario.Players(w, seed=self.seed * 1000 + i,
                                            invalid_every=invalid_every)
                        for i, w in enumerate(world_ids)}
        self.seen = {w: SeenWorld() for w in world_ids}
        self._ring = signing.KeyRing.for_settings(settings)

    def _signed(self, record: dict[str, Any]) -> dict[str, Any]:
        # A platform service, trusted as the operator tools are: it opens the demo worlds
        # (world parameters are operator actions) and plays the world's own bodies.
        return signing.sign_record(record, models.Role.OPERATOR, self._ring)

    @property
    def invalid(self) -> int:
        return sum(p.invalid for p in self.players.values())

    def progress(self) -> str:
        # The share is of the players' own commands: openings and life are always valid.
        chosen = sum(p.chosen for p in self.players.values())
        share = self.invalid / chosen if chosen else 0.0
        bodies = sum(len(s.mirror) for s in self.seen.values())
        return (f"{self.sent} commands sent to {len(self.world_ids)} world(s), {chosen} by "
                f"players, {self.invalid} of those deliberately invalid ({share:.1%}); "
                f"{bodies} bodies in sight")

    def _follow(self, encode: AvroSerializer, producer: Producer) -> Consumer:
        """Load each world's latest snapshot (opening the world if it has none) and
        return a reader of the deltas since, positioned so none is missed."""
        log = KafkaLog(self.settings, self.registry)
        probe = kafka.reader(self.settings, "players-probe")
        starts: dict[int, int] = {}
        ctx = SerializationContext(topics.COMMANDS.name)
        try:
            for world_id in self.world_ids:
                partition = log.world_partition(world_id)
                found = latest_snapshot(self.settings, self.registry, world_id)
                tp = TopicPartition(topics.STATE_DELTAS.name, partition)
                # Taken before the world is opened, so its first delta is after it.
                _, high = probe.get_watermark_offsets(tp, timeout=30)
                start = high
                if found is None:
                    for cmd in scenario.star_system(world_id, asteroids=self.asteroids):
                        if isinstance(cmd.command, models.SpawnBody):
                            # Not seen until the world's first delta; taken already.
                            self.seen[world_id].spawned(cmd.command.body_id)
                        producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                         value=encode(self._signed(cmd.to_avro()), ctx))
                        self.sent += 1
                else:
                    record, ts = found
                    self.seen[world_id].load_snapshot(record)
                    since = log.offset_for_time(tp.topic, partition, ts)
                    start = high if since is None else since
                starts[partition] = min(starts.get(partition, start), start)
        finally:
            probe.close()
        deltas = kafka.reader(self.settings, "players")
        deltas.assign([TopicPartition(topics.STATE_DELTAS.name, p, o) for p, o in starts.items()])
        return deltas

    def _catch_up(self, deltas: Consumer, decode: AvroDeserializer) -> None:
        ctx = SerializationContext(topics.STATE_DELTAS.name)
        for msg in deltas.consume(1000, timeout=0):
            if (err := msg.error()) is not None:
                raise KafkaException(err)
            seen = self.seen.get((msg.key() or b"").decode(errors="replace"))
            if seen is None:
                continue
            try:
                seen.apply_delta(decode(msg.value(), ctx))
            except SerializationError:
                continue  # not a delta we can read: the next ones still tell what exists

    def run(self) -> None:
        encode = AvroSerializer(self.registry, "PlayerCommand")
        decode = AvroDeserializer(self.registry)
        ctx = SerializationContext(topics.COMMANDS.name)
        producer = kafka.producer(self.settings, client_id="cosmic-players")
        deltas = None
        try:
            deltas = self._follow(encode, producer)
            period = 1.0 / self.rate_hz
            next_at = time.monotonic()
            # Life is seeded once the worlds' physics (and the Faust apps) have had time
            # to start, so the ecosystem knows the planets when the seeds arrive.
            seed_life_at: float | None = next_at + self.life_delay_s
            k = 0
            while not self._stop.is_set():
                self._catch_up(deltas, decode)
                if seed_life_at is not None and time.monotonic() >= seed_life_at:
                    seed_life_at = None
                    for world_id in self.world_ids:
                        for cmd in scenario.life(world_id, seed=self.seed):
                            producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                             value=encode(self._signed(cmd.to_avro()), ctx))
                            self.sent += 1
                world_id = self.world_ids[k % len(self.world_ids)]
                k += 1
                seen = self.seen[world_id]
                move = self.players[world_id].next(seen.asteroids(), seen.highest_id)
                if move is not None:
                    if move.removes is not None:
                        seen.removing(move.removes)
                    producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                     value=encode(self._signed(move.record), ctx))
                    self.sent += 1
                producer.poll(0)
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            if deltas is not None:
                deltas.close()
            producer.flush(10)
