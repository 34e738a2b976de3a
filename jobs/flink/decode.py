"""From our Confluent wire-format bytes to the job's window events.

The Kafka source hands the job raw bytes (Flink's ``raw`` format); this module
decodes them with :mod:`schemas.serde` against the registry, reading every
writer's schema as the reader schema of the topic's registered type, and maps
each record to the :mod:`jobs.flink.windows` events it implies. What cannot be
decoded raises :class:`~cosmic.errors.SerializationError`; the job
dead-letters it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from cosmic import topics
from cosmic.errors import SerializationError
from cosmic.timeutil import to_ms
from cosmic.topics import Topic
from jobs.flink.windows import Civilization, Command, Event, Population, Rejection, Tick
from schemas.catalog import short_name
from schemas.serde import AvroDeserializer, SchemaSource, SerializationContext

# The topics the job reads by default; a route maps a Kafka topic to what it carries.
TOPICS: tuple[Topic, ...] = (topics.PHYSICS_TICKS, topics.COMMANDS, topics.COMMANDS_REJECTED,
                             topics.ECOSYSTEM_EVENTS, topics.CIVILIZATION_EVENTS)


class UnsupportedTopic(SerializationError):
    """A route names a registered topic whose records the job does not measure."""


def _body(value: Any) -> tuple[str, dict[str, Any]]:
    # Unions of records decode as (full record name, record) pairs.
    name, body = value
    return short_name(str(name)), body


def _tick(r: dict[str, Any]) -> list[Event]:
    return [Tick(r["world_id"], to_ms(r["ts"]), int(r["step_duration_us"]), int(r["n_applied"]),
                 int(r["n_rejected"]))]


def _command(r: dict[str, Any]) -> list[Event]:
    # Event time is when the gateway received it: the client's clock is untrusted.
    kind, _ = _body(r["command"])
    return [Command(r["world_id"], to_ms(r["received_ts"]), kind, r["player_id"])]


def _rejection(r: dict[str, Any]) -> list[Event]:
    return [Rejection(r["world_id"], to_ms(r["ts"]), str(r["reason"]))]


def _ecosystem(r: dict[str, Any]) -> list[Event]:
    kind, body = _body(r["event"])
    world, ts, tick, planet = r["world_id"], to_ms(r["ts"]), int(r["tick"]), int(r["planet_id"])
    if kind == "PopulationChanged":
        return [Population(world, ts, tick, planet, int(body["species_id"]), int(body["current"]))]
    if kind == "SpeciesEmerged":
        return [Population(world, ts, tick, planet, int(body["species_id"]),
                           int(body["population"]))]
    if kind == "SpeciesExtinct":
        return [Population(world, ts, tick, planet, int(body["species_id"]), 0)]
    if kind == "PlanetDestroyed":
        return [Population(world, ts, tick, planet, None, 0)]
    return []


def _civilization(r: dict[str, Any]) -> list[Event]:
    kind, _ = _body(r["event"])
    if kind not in ("CivilizationFounded", "CivilizationCollapsed"):
        return []  # tech and resource events do not change what the job counts
    return [Civilization(r["world_id"], to_ms(r["ts"]), int(r["tick"]), int(r["civilization_id"]),
                         kind == "CivilizationFounded")]


_MAPPERS: dict[str, Callable[[dict[str, Any]], list[Event]]] = {
    topics.PHYSICS_TICKS.value: _tick,
    topics.COMMANDS.value: _command,
    topics.COMMANDS_REJECTED.value: _rejection,
    topics.ECOSYSTEM_EVENTS.value: _ecosystem,
    topics.CIVILIZATION_EVENTS.value: _civilization,
}


class EventDecoder:
    """``decoder(topic, value_bytes) -> events`` for the routed topics."""

    def __init__(self, registry: SchemaSource, routes: Mapping[str, Topic]) -> None:
        self._routes: dict[str, tuple[AvroDeserializer, Callable[..., list[Event]]]] = {}
        for name, carries in routes.items():
            if carries.value not in _MAPPERS:
                raise UnsupportedTopic(
                    f"{name}: the live-metrics job cannot measure {carries.value} records")
            self._routes[name] = (AvroDeserializer(registry, carries.value), _MAPPERS[carries.value])

    def __call__(self, topic: str, value: bytes | None) -> list[Event]:
        try:
            deserialize, to_events = self._routes[topic]
        except KeyError:
            raise UnsupportedTopic(f"no route for topic {topic!r}") from None
        if value is None:
            return []
        record = deserialize(value, SerializationContext(topic))
        try:
            return to_events(record)
        except (KeyError, TypeError, ValueError) as exc:
            raise SerializationError(f"{topic}: record lacks what the job needs: {exc}") from exc
