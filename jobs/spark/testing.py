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


class LakeWriter:
    """Events written into a lake as the archive connector would, chunk after chunk.

    Each :meth:`write` takes one topic's events (any order; they are sorted by their own
    time) that all come after those of the previous chunk of that topic, and gives them
    consecutive offsets per partition (round robin); the Kafka timestamp is the event
    time. Memory holds one chunk: a day of millions of events is written hour by hour.
    """

    def __init__(self, lake: Path, names: Iterable[str], partitions: int = 1,
                 settings: Settings | None = None) -> None:
        self.routes: dict[str, Topic] = {name: topics.get(name) for name in names}
        self.partitions = partitions
        self.written = 0
        self._sink = ArchiveSink(settings or Settings(), self.routes, lake=lake,
                                 policy=RolloverPolicy(max_bytes=1 << 40, max_age_s=1e9))
        self._sink.open()
        self._next = {name: dict.fromkeys(range(partitions), 0) for name in self.routes}
        self._seen = dict.fromkeys(self.routes, 0)

    def write(self, name: str, events: Iterable[Event]) -> None:
        topic = self.routes[name]
        field = _TIME_FIELD.get(name, "ts")
        next_offset = self._next[name]
        batch = Batch()
        for ev in sorted(events, key=lambda e: e[field]):
            p = self._seen[name] % self.partitions
            self._seen[name] += 1
            offset = next_offset[p]
            next_offset[p] += 1
            batch.items.append(Item(topic.name, topic, p, offset, ev[field], None, ev))
            batch.positions[(topic.name, p)] = offset + 1
        self._sink.write(batch)
        self.written += len(batch.items)

    def close(self) -> int:
        """Commit the open files (manifests and all); how many events were written."""
        self._sink.drain()
        self._sink.close()
        return self.written


def write_lake(lake: Path, events: dict[str, Iterable[Event]], partitions: int = 1,
               settings: Settings | None = None) -> int:
    """Write events (by topic name) into ``lake`` as the archive connector would; returns how many.

    Each topic's events are sorted by their own time and given consecutive
    offsets per partition (round robin); the Kafka timestamp is the event time.
    """
    writer = LakeWriter(lake, events, partitions, settings)
    for name, evs in events.items():
        writer.write(name, evs)
    return writer.close()


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]
