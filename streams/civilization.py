"""The civilization app (Faust): civilizations rise, advance and fall with their planets.

Reads the internal planet status stream of the ecosystem app
(``cosmic.living.planets.v1``, keyed by world/planet, tick-ordered per planet),
which carries each ecosystem step's outcome and every ``FoundCivilization``
command at the tick it was applied. Writes ``cosmic.civilization.events.v1``
(CivilizationFounded, TechAdvanced, CivilizationCollapsed) and
``cosmic.commands.rejected.v1``. Exactly once, tables recovered from their
changelogs; the rules are in :mod:`streams.living.civics`.

Run standalone with ``faust -A streams.civilization worker`` or ``python -m
streams.civilization``; ``cosmic up`` runs it as a platform service.
"""

from __future__ import annotations

from typing import Any

import faust

from cosmic import topics
from cosmic.settings import Settings, get_settings
from cosmic.timeutil import to_ms
from schemas.registry.client import RegistryClient
from schemas.serde import SchemaSource
from streams.living import civics, faustapp, outputs
from streams.living.ecosystem_state import Rejection
from streams.living.faust_codec import Undecodable
from streams.living.service import lazy_app


def build_app(settings: Settings, registry: SchemaSource | None = None) -> faust.App:
    """The civilization Faust app, wired to the topics and tables ``settings`` name."""
    registry = registry or RegistryClient.from_settings(settings)
    app = faustapp.make_app(settings, settings.living.civilization_app_id)
    source = faustapp.in_topics(app, settings, registry, topics.PLANET_STATUS)
    outbox = faustapp.Outbox(app, registry, settings)
    # Civilizations by "world/civilization"; living civilizations of a planet by "world/planet".
    civs = app.Table("civilizations", default=None,
                     schema=faustapp.table_schema())
    on_planet = app.Table("civilization-planets", default=None,
                          schema=faustapp.table_schema())

    async def handle(event: Any) -> None:
        record = event.value
        if isinstance(record, Undecodable):
            outbox.dead_letter(event, record)
            await outbox.flush(event)
            return
        if record.name != "PlanetStatus":
            return
        status = record.value
        world_id, tick, ts = str(status["world_id"]), int(status["tick"]), to_ms(status["ts"])
        staged_civs = faustapp.StagedTable(civs, outbox)
        staged_on_planet = faustapp.StagedTable(on_planet, outbox)
        outcome = civics.on_status(status, staged_civs, staged_on_planet)
        staged_civs.commit()
        staged_on_planet.commit()
        if outcome.refused is not None:
            req = status["found"]
            refusal = Rejection(
                command={"command_id": str(req["command_id"]), "player_id": req["player_id"]},
                offset=req["command_offset"], tick=tick, ts=ts,
                reason=outcome.refused.reason, message=outcome.refused.message)
            outbox.send(topics.COMMANDS_REJECTED, world_id.encode(),
                        outputs.rejection(world_id, refusal))
        for change in outcome.changes:
            outbox.send(topics.CIVILIZATION_EVENTS,
                        str(change.civilization.civilization_id).encode(),
                        outputs.civilization_event(change, tick, ts))
        await outbox.flush(event)

    @app.agent(source, name="civilization")
    async def civilization(stream: Any) -> None:
        async for event in stream.events():
            await handle(event)

    return app


# `faust -A streams.civilization worker` finds `app` here, built on first access.
__getattr__ = lazy_app(build_app)


def main(settings: Settings | None = None, loglevel: str = "WARNING") -> None:
    """Run the civilization worker in the foreground until SIGINT/SIGTERM."""
    from streams.living.service import run_worker

    settings = settings or get_settings()
    run_worker(build_app(settings), loglevel, settings)


if __name__ == "__main__":
    main()
