"""Synthetic game history written into a lake, for the warehouse's tests and benchmark.

Events are built as the serde decodes them (unions as ``(record name, body)``
pairs, times as epoch milliseconds) and written through the archive
connector's own sink, so the files, folders and manifests are exactly what
production writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.archive import ArchiveSink
from connectors.base import Batch, Item
from connectors.lake import RolloverPolicy
from cosmic import topics
from cosmic.settings import Settings
from cosmic.timeutil import to_ms
from cosmic.topics import Topic
from schemas.catalog import full_name

Event = dict[str, Any]
TRAITS = {"diet": "PHOTOSYNTH", "size": 1.0, "fertility": 0.5, "temp_min_k": 250.0,
          "temp_max_k": 320.0}


def at(day: date, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=UTC)


def _uuid(seed: int | None) -> str:
    return str(uuid.UUID(int=seed) if seed is not None else uuid.uuid4())


def command(player: str, world: str, ts: datetime, name: str = "ApplyImpulse",
            body: dict[str, Any] | None = None, seed: int | None = None) -> Event:
    if body is None:
        body = {"body_id": 1, "dv": {"x": 0.0, "y": 0.0, "z": 0.0}}
    return {"command_id": _uuid(seed), "player_id": player, "world_id": world,
            "client_ts": to_ms(ts), "received_ts": to_ms(ts), "command": (full_name(name), body)}


def seed_species(player: str, world: str, ts: datetime, planet: int, species: int,
                 population: int) -> Event:
    return command(player, world, ts, "SeedSpecies", {
        "planet_id": planet, "species_id": species, "traits": TRAITS,
        "initial_population": population})


def tick(world: str, n: int, ts: datetime, bodies: int = 3, step_us: int = 100,
         applied: int = 0) -> Event:
    return {"world_id": world, "tick": n, "sim_time": n * 0.01, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": applied,
            "n_rejected": 0, "body_count": bodies, "total_energy": -1.0,
            "state_hash": "0" * 16, "step_duration_us": step_us, "ts": to_ms(ts)}


def ecosystem(world: str, planet: int, ts: datetime, name: str, body: dict[str, Any],
              n: int = 0) -> Event:
    return {"event_id": _uuid(None), "world_id": world, "planet_id": planet, "tick": n,
            "ts": to_ms(ts), "event": (full_name(name), body)}


def population(world: str, planet: int, ts: datetime, species: int, previous: int,
               current: int) -> Event:
    return ecosystem(world, planet, ts, "PopulationChanged",
                     {"species_id": species, "previous": previous, "current": current})


def emerged(world: str, planet: int, ts: datetime, species: int, parent: int | None,
            pop: int) -> Event:
    return ecosystem(world, planet, ts, "SpeciesEmerged", {
        "species_id": species, "parent_species_id": parent, "population": pop,
        "traits": TRAITS})


def extinct(world: str, planet: int, ts: datetime, species: int, cause: str = "cold") -> Event:
    return ecosystem(world, planet, ts, "SpeciesExtinct", {"species_id": species, "cause": cause})


def civilization(world: str, planet: int, civ: int, ts: datetime, name: str,
                 body: dict[str, Any], n: int = 0) -> Event:
    return {"event_id": _uuid(None), "world_id": world, "planet_id": planet,
            "civilization_id": civ, "tick": n, "ts": to_ms(ts),
            "event": (full_name(name), body)}


def founded(world: str, planet: int, civ: int, ts: datetime, name: str = "Ur",
            founder: str | None = None, species: int | None = None) -> Event:
    return civilization(world, planet, civ, ts, "CivilizationFounded",
                        {"name": name, "founder_player_id": founder, "species_id": species})


def collapsed(world: str, planet: int, civ: int, ts: datetime) -> Event:
    return civilization(world, planet, civ, ts, "CivilizationCollapsed",
                        {"reason": "famine", "peak_population": 1000})


_TIME_FIELD = {topics.COMMANDS.name: "received_ts"}


def write_lake(lake: Path, events: dict[str, Iterable[Event]], partitions: int = 1,
               settings: Settings | None = None) -> int:
    """Write events (by topic name) into ``lake`` as the archive connector would; returns how many.

    Each topic's events are sorted by their own time and given consecutive
    offsets per partition (round robin); the Kafka timestamp is the event time.
    """
    routes: dict[str, Topic] = {name: topics.get(name) for name in events}
    sink = ArchiveSink(settings or Settings(), routes, lake=lake,
                       policy=RolloverPolicy(max_bytes=1 << 40, max_age_s=1e9))
    sink.open()
    n = 0
    for name, evs in events.items():
        topic = routes[name]
        field = _TIME_FIELD.get(name, "ts")
        ordered = sorted(evs, key=lambda e: e[field])
        next_offset = dict.fromkeys(range(partitions), 0)
        batch = Batch()
        for i, ev in enumerate(ordered):
            p = i % partitions
            offset = next_offset[p]
            next_offset[p] += 1
            batch.items.append(Item(topic.name, topic, p, offset, ev[field], None, ev))
            batch.positions[(topic.name, p)] = offset + 1
        sink.write(batch)
        n += len(ordered)
    sink.drain()
    sink.close()
    return n


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
