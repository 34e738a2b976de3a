"""Rule outputs to the records of the event contracts, with deterministic event ids."""

from __future__ import annotations

import uuid
from typing import Any

from schemas.catalog import full_name

from .civics import CivChange
from .ecosystem_state import EcoEvent, Rejection

# Event ids are uuid5 of what the event is about, so a replay reproduces them and a
# consumer can drop duplicates by id.
_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://cosmicgarden.io/events")


def event_id(*parts: object) -> str:
    return str(uuid.uuid5(_IDS, "/".join(map(str, parts))))


def ecosystem_event(world_id: str, ev: EcoEvent) -> dict[str, Any]:
    return {
        "event_id": event_id("eco", world_id, ev.planet_id, ev.tick, ev.kind, ev.species_id),
        "world_id": world_id, "planet_id": ev.planet_id, "tick": ev.tick, "ts": ev.ts,
        "event": (full_name(ev.kind), ev.body),
    }


def rejection(world_id: str, rej: Rejection) -> dict[str, Any]:
    return {
        "command_id": rej.command["command_id"], "world_id": world_id,
        "player_id": rej.command["player_id"], "reason": rej.reason, "message": rej.message,
        "tick": rej.tick, "command_offset": rej.offset, "ts": rej.ts,
    }


def civilization_event(change: CivChange, tick: int, ts: int) -> dict[str, Any]:
    civ = change.civilization
    return {
        "event_id": event_id("civ", civ.world_id, civ.civilization_id, tick, change.kind,
                             change.body.get("tech"), change.body.get("level")),
        "world_id": civ.world_id, "planet_id": civ.planet_id,
        "civilization_id": civ.civilization_id, "tick": tick, "ts": ts,
        "event": (full_name(change.kind), change.body),
    }
