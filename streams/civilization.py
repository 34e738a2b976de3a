"""The civilization app (Faust): civilizations rise, advance and fall with their planets.

Reads the internal planet status stream of the ecosystem app
(``cosmic.living.planets.v1``, keyed by world/planet, tick-ordered per planet),
which carries each ecosystem step's outcome and every ``FoundCivilization``
command at the tick it was applied. Writes ``cosmic.civilization.events.v1``
(CivilizationFounded, TechAdvanced, CivilizationCollapsed) and
``cosmic.commands.rejected.v1``. Exactly once, tables recovered from their
changelogs; the rules are in :mod:`streams.living.civ_rules`.

Run standalone with ``faust -A streams.civilization worker`` or ``python -m
streams.civilization``; ``cosmic up`` runs it as a platform service.
"""

from __future__ import annotations

from typing import Any

import faust

from cosmic import topics
from cosmic.settings import Settings, get_settings
from schemas.registry.client import RegistryClient
from schemas.serde import SchemaSource
from streams.living import civ_rules, faustapp, records
from streams.living.serde import Undecodable
from streams.living.world import _ms


def build_app(settings: Settings, registry: SchemaSource | None = None) -> faust.App:
    """The civilization Faust app, wired to the topics and tables ``settings`` name."""
    registry = registry or RegistryClient.from_settings(settings)
    app = faustapp.make_app(settings, settings.living.civilization_app_id)
    source = faustapp.in_topics(app, settings, registry, topics.PLANET_STATUS)
    events = faustapp.out_topic(app, settings, registry, topics.CIVILIZATION_EVENTS)
    rejected = faustapp.out_topic(app, settings, registry, topics.COMMANDS_REJECTED)
    dlq = faustapp.dlq_topic(app, settings)
    # Civilizations by "world/civilization"; living civilizations of a planet by "world/planet".
    civs = app.Table("civilizations", default=None, key_serializer="json",
                     value_serializer="json")
    on_planet = app.Table("civilization-planets", default=None, key_serializer="json",
                          value_serializer="json")

    async def handle(event: Any) -> None:
        record = event.value
        if isinstance(record, Undecodable):
            await faustapp.dead_letter(dlq, event, record.error)
            return
        if record.name != "PlanetStatus":
            return
        status = record.value
        world_id, pid, tick = str(status["world_id"]), int(status["planet_id"]), int(status["tick"])
        ts = _ms(status["ts"])
        changes: list[civ_rules.CivChange] = []
        living: list[int] = list(on_planet.get(f"{world_id}/{pid}") or [])
        if (req := status.get("found")) is not None:
            civ_key = f"{world_id}/{req['civilization_id']}"
            refused = civ_rules.judge_founding(status, civs.get(civ_key) is not None)
            if refused is not None:
                await rejected.send(key=world_id.encode(), value={
                    "command_id": str(req["command_id"]), "world_id": world_id,
                    "player_id": req["player_id"], "reason": refused.reason,
                    "message": refused.message, "tick": tick,
                    "command_offset": req["command_offset"], "ts": ts})
            else:
                founded = civ_rules.found(status)
                changes.append(founded)
                civs[civ_key] = founded.civilization.to_dict()
                living.append(founded.civilization.civilization_id)
        for cid in sorted(set(living)):
            civ = civ_rules.Civilization.from_dict(civs[f"{world_id}/{cid}"])
            changes += civ_rules.advance(civ, status)
            civs[f"{world_id}/{cid}"] = civ.to_dict()
        on_planet[f"{world_id}/{pid}"] = sorted(
            cid for cid in set(living) if not civs[f"{world_id}/{cid}"]["collapsed"])
        for change in changes:
            await events.send(key=str(change.civilization.civilization_id).encode(),
                              value=records.civilization_event(change, tick, ts))

    @app.agent(source, name="civilization")
    async def civilization(stream: Any) -> None:
        async for event in stream.events():
            await handle(event)

    return app


_built: dict[str, faust.App] = {}


def __getattr__(attr: str) -> Any:
    # `faust -A streams.civilization worker` looks for a module-level `app`; build it
    # only when asked, so importing this module has no side effects.
    if attr == "app":
        if "app" not in _built:
            _built["app"] = build_app(get_settings())
        return _built["app"]
    raise AttributeError(attr)


def main(settings: Settings | None = None) -> None:
    """Run the civilization worker in the foreground until SIGINT/SIGTERM."""
    from streams.living.service import run_worker

    run_worker(build_app(settings or get_settings()))


if __name__ == "__main__":
    main()
