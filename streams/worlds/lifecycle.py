"""Worlds as an operator sees them: create, list, show and retire, in code and by CLI.

A world exists once its first command is applied; its lifecycle (active,
hibernating, quarantined, retired) is what the owning worker last wrote to the
compacted ``cosmic.worlds.v1``. Creating and retiring go through the command
log like everything else, so a replay explains them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from cosmic import kafka, topics
from cosmic.errors import CosmicError
from cosmic.settings import Settings
from schemas import models
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext
from streams.security import signing

from . import scenario
from .eventlog import KafkaLog


class WorldError(CosmicError):
    """A lifecycle request that cannot be carried out (no such world, it exists already...)."""


@dataclass(frozen=True)
class WorldInfo:
    world_id: str
    status: str
    tick: int
    body_count: int
    partition: int
    backend: str
    reason: str
    worker_id: str
    updated: datetime

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> WorldInfo:
        ts = rec["ts"]
        return cls(rec["world_id"], rec["status"], rec["tick"], rec["body_count"],
                   rec["command_partition"], rec["backend"], rec["reason"], rec["worker_id"],
                   ts if isinstance(ts, datetime) else datetime.fromtimestamp(ts / 1000, UTC))


def list_worlds(settings: Settings, registry: SchemaSource) -> list[WorldInfo]:
    """The latest status of every world, by id."""
    source = KafkaLog(settings, registry)
    latest: dict[str, dict[str, Any]] = {}
    for partition in source.partitions(topics.WORLDS.name):
        for _, _, rec in source.read(topics.WORLDS.name, partition):
            if isinstance(rec, dict) and "status" in rec:
                latest[str(rec["world_id"])] = rec
    return [WorldInfo.from_record(latest[w]) for w in sorted(latest)]


def show_world(settings: Settings, registry: SchemaSource, world_id: str) -> WorldInfo:
    source = KafkaLog(settings, registry)
    part = kafka.home_partition(world_id, len(source.partitions(topics.WORLDS.name)))
    found = [rec for _, _, rec in source.read(topics.WORLDS.name, part, key=world_id.encode())
             if isinstance(rec, dict) and rec.get("world_id") == world_id]
    if not found:
        raise WorldError(f"no world {world_id!r} (no status in {topics.WORLDS.name})")
    return WorldInfo.from_record(found[-1])


def _send(settings: Settings, registry: SchemaSource, commands: list[models.PlayerCommand]) -> None:
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    producer = kafka.producer(settings, client_id="cosmic-world")
    ring = signing.KeyRing.for_settings(settings)  # `cosmic world` is an operator tool
    for cmd in commands:
        signed = signing.sign(cmd, models.Role.OPERATOR, ring)
        producer.produce(topics.COMMANDS.name, key=cmd.world_id.encode(),
                         value=encode(signed.to_avro(), ctx))
    if producer.flush(30) > 0:
        raise WorldError("could not deliver the commands to Kafka within 30 s")


def create_world(settings: Settings, registry: SchemaSource, world_id: str, *,
                 preset: str = "star-system", asteroids: int = 200, tick_rate_hz: float = 30.0,
                 snapshot_every: int = 100) -> int:
    """Send a new world's opening commands; refuse an id that is already a world."""
    try:
        show_world(settings, registry, world_id)
    except WorldError:
        pass
    else:
        raise WorldError(f"world {world_id!r} exists already")
    if preset == "star-system":
        commands = scenario.star_system(world_id, asteroids=asteroids, tick_rate_hz=tick_rate_hz,
                                        snapshot_every=snapshot_every, player_id="operator")
    elif preset == "empty":
        commands = scenario.star_system(world_id, asteroids=0, tick_rate_hz=tick_rate_hz,
                                        snapshot_every=snapshot_every, player_id="operator")[:1]
    else:
        raise WorldError(f"unknown preset {preset!r} (star-system, empty)")
    _send(settings, registry, commands)
    return len(commands)


def retire_world(settings: Settings, registry: SchemaSource, world_id: str, reason: str) -> None:
    """Ask the owning worker to end the world: a final snapshot, then no more ticks."""
    info = show_world(settings, registry, world_id)
    if info.status == "RETIRED":
        raise WorldError(f"world {world_id!r} is retired already")
    now = datetime.now(UTC)
    _send(settings, registry, [models.PlayerCommand(
        command_id=uuid.uuid4(), player_id="operator", world_id=world_id, client_ts=now,
        received_ts=now, command=models.RetireWorld(reason=reason or "retired by an operator"))])
