"""The ecosystem app (Faust): life on the planets of every world, advanced by physics ticks.

Reads ``cosmic.commands.v1`` (``SeedSpecies``, ``FoundCivilization``),
``cosmic.physics.ticks.v1``, ``cosmic.state.deltas.v1`` and
``cosmic.state.snapshots.v1``, all keyed by world id, so one partition number
holds everything about a world. Writes ``cosmic.ecosystem.events.v1``
(PopulationChanged, SpeciesExtinct, SpeciesEmerged, PlanetDestroyed),
``cosmic.commands.rejected.v1`` and the internal planet status stream the
civilization app follows. Processing is exactly once: outputs, table
changelogs and consumer offsets commit in one Kafka transaction (see
:class:`streams.living.faustapp.Outbox` for why the app sends them itself).
Outputs keep the key the topic registry names (planet id, world id) but go
to the partition number of the world they came from, like the physics
worker's records: one world's life stays on one partition of every topic.

The rules live in :mod:`streams.living` and know nothing of Kafka; the agent
loads a world's state from the tables, hands it the record and saves it.

Run standalone with ``faust -A streams.ecosystem worker`` or ``python -m
streams.ecosystem``; ``cosmic up`` runs it as a platform service.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

import faust

from cosmic import topics
from cosmic.settings import Settings, get_settings
from schemas.registry.client import RegistryClient
from schemas.serde import SchemaSource
from streams.living import faustapp, outputs
from streams.living.ecosystem_state import (
    EcoEvent,
    EcoParams,
    EcosystemWorld,
    Planet,
    PlanetStatus,
    planet_key,
)
from streams.living.faust_codec import Undecodable
from streams.living.service import lazy_app


def build_app(settings: Settings, registry: SchemaSource | None = None) -> faust.App:
    """The ecosystem Faust app, wired to the topics and tables ``settings`` name."""
    registry = registry or RegistryClient.from_settings(settings)
    app = faustapp.make_app(settings, settings.living.ecosystem_app_id)
    params = EcoParams(step_every=settings.living.step_every,
                       time_scale=settings.living.time_scale)
    source = faustapp.in_topics(app, settings, registry, topics.COMMANDS, topics.PHYSICS_TICKS,
                                topics.STATE_DELTAS, topics.STATE_SNAPSHOTS)
    outbox = faustapp.Outbox(app, registry, settings)
    # World (bodies, join buffers, clock) by world id; life by "world/planet".
    worlds = app.Table("ecosystem-worlds", default=None,
                       schema=faustapp.table_schema())
    planets = app.Table("ecosystem-planets", default=None,
                        schema=faustapp.table_schema())

    def load(world_id: str, worlds: MutableMapping[str, Any],
             planets: MutableMapping[str, Any]) -> EcosystemWorld:
        state = worlds.get(world_id)
        ids = (state or {}).get("planets", [])
        loaded = {pid: Planet.from_dict(d) for pid in ids
                  if (d := planets.get(planet_key(world_id, pid))) is not None}
        return EcosystemWorld(world_id, params, state, loaded)

    def save(world: EcosystemWorld, worlds: MutableMapping[str, Any],
             planets: MutableMapping[str, Any]) -> None:
        worlds[world.world_id] = world.to_dict()
        for pid in sorted(world.dirty):
            planets[planet_key(world.world_id, pid)] = world.planets[pid].to_dict()

    async def handle(event: Any) -> None:
        record = event.value
        if isinstance(record, Undecodable):
            outbox.dead_letter(event, record)
            await outbox.flush(event)
            return
        value = record.value
        world_id = str(value["world_id"])
        staged_worlds = faustapp.StagedTable(worlds, outbox)
        staged_planets = faustapp.StagedTable(planets, outbox)
        world = load(world_id, staged_worlds, staged_planets)
        if record.name == "PlayerCommand":
            produced = world.on_command(event.message.offset, value)
        elif record.name == "PhysicsTick":
            produced = world.on_tick(value)
        elif record.name == "StateDelta":
            produced = world.on_delta(value)
        elif record.name == "WorldSnapshot":
            world.on_snapshot(value)
            produced = []
        else:
            return  # a record type this app does not follow
        save(world, staged_worlds, staged_planets)
        staged_worlds.commit()
        staged_planets.commit()
        for out in produced:
            if isinstance(out, EcoEvent):
                outbox.send(topics.ECOSYSTEM_EVENTS, str(out.planet_id).encode(),
                            outputs.ecosystem_event(world_id, out))
            elif isinstance(out, PlanetStatus):
                key = planet_key(world_id, out.record["planet_id"]).encode()
                outbox.send(topics.PLANET_STATUS, key, out.record)
            else:
                outbox.send(topics.COMMANDS_REJECTED, world_id.encode(),
                            outputs.rejection(world_id, out))
        await outbox.flush(event)

    @app.agent(source, name="ecosystem")
    async def ecosystem(stream: Any) -> None:
        async for event in stream.events():
            await handle(event)

    return app


# `faust -A streams.ecosystem worker` finds `app` here, built on first access.
__getattr__ = lazy_app(build_app)


def main(settings: Settings | None = None, loglevel: str = "WARNING") -> None:
    """Run the ecosystem worker in the foreground until SIGINT/SIGTERM."""
    from streams.living.service import run_worker

    settings = settings or get_settings()
    run_worker(build_app(settings), loglevel, settings)


if __name__ == "__main__":
    main()
