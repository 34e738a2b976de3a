"""Synthetic players: a platform service that sends player commands at a steady rate.

`cosmic up` runs it so a plain start shows living worlds: it opens a demo world
with the built-in scenario (unless the world already has a snapshot) and then
keeps sending nudges, spawns, removals and the odd invalid command.
"""

from __future__ import annotations

import time

from cosmic import kafka, topics
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext
from streams.worlds import scenario
from streams.worlds.eventlog import KafkaLog


def world_exists(settings: Settings, registry: SchemaSource, world_id: str) -> bool:
    """Whether the snapshot topic holds a snapshot of ``world_id``."""
    key = world_id.encode()
    partition = kafka.partition_for(key, topics.STATE_SNAPSHOTS.partitions)
    log = KafkaLog(settings, registry)
    return any(True for _ in log.read(topics.STATE_SNAPSHOTS.name, partition, key=key))


class SyntheticPlayers(ThreadService):
    name = "players"
    join_timeout_s = 30.0

    def __init__(self, settings: Settings, world_ids: tuple[str, ...] = ("garden-demo",),
                 rate_hz: float = 20.0, seed: int | None = None,
                 registry: SchemaSource | None = None, life_delay_s: float = 20.0) -> None:
        super().__init__()
        self.settings = settings
        self.life_delay_s = life_delay_s
        self.world_ids = world_ids
        self.rate_hz = rate_hz
        # A fresh seed per run, so new body ids do not collide with an earlier run's.
        self.seed = seed if seed is not None else now_ms() % 100_000
        self.registry = registry or RegistryClient.from_settings(settings)
        self.sent = 0

    def progress(self) -> str:
        return f"{self.sent} commands sent to {len(self.world_ids)} world(s)"

    def run(self) -> None:
        encode = AvroSerializer(self.registry, "PlayerCommand")
        ctx = SerializationContext(topics.COMMANDS.name)
        producer = kafka.producer(self.settings, client_id="cosmic-players")
        try:
            for world_id in self.world_ids:
                if not world_exists(self.settings, self.registry, world_id):
                    for cmd in scenario.star_system(world_id):
                        producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                         value=encode(cmd.to_avro(), ctx))
                        self.sent += 1
            streams = [scenario.player_commands(w, seed=self.seed * 1000 + i)
                       for i, w in enumerate(self.world_ids)]
            period = 1.0 / self.rate_hz
            next_at = time.monotonic()
            # Life is seeded once the worlds' physics (and the Faust apps) have had time
            # to start, so the ecosystem knows the planets when the seeds arrive.
            seed_life_at: float | None = next_at + self.life_delay_s
            k = 0
            while not self._stop.is_set():
                if seed_life_at is not None and time.monotonic() >= seed_life_at:
                    seed_life_at = None
                    for world_id in self.world_ids:
                        for cmd in scenario.life(world_id, seed=self.seed):
                            producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                             value=encode(cmd.to_avro(), ctx))
                            self.sent += 1
                world_id = self.world_ids[k % len(self.world_ids)]
                record = next(streams[k % len(streams)])
                producer.produce(topics.COMMANDS.name, key=world_id.encode(),
                                 value=encode(record, ctx))
                producer.poll(0)
                self.sent += 1
                k += 1
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            producer.flush(10)
