"""Civilizations: pure rules over the planet status stream of the ecosystem app.

A civilization is founded on a planet whose population (all species) is at
least :data:`MIN_FOUNDING_POPULATION` at the tick the founding command was
applied. It accumulates knowledge each ecological year in proportion to the
log of its planet's population and to how well the planet feeds it (carrying
capacity over population), and reaches technologies in a fixed order, with
each level dearer than the last. It collapses when its planet is destroyed or
its ecosystem fails (population below :data:`COLLAPSE_POPULATION` or no
species left). No clock and no dice: the same statuses give the same events.
"""

from __future__ import annotations

import math
from collections.abc import MutableMapping
from dataclasses import asdict, dataclass
from typing import Any

MIN_FOUNDING_POPULATION = 1_000
COLLAPSE_POPULATION = 100
TECHS = ("agriculture", "metallurgy", "writing", "industry", "computing", "spaceflight")
KNOWLEDGE_PER_ADVANCE = 5.0  # the n-th advance (from 0) costs (n + 1) times this


@dataclass
class Civilization:
    world_id: str
    civilization_id: int
    planet_id: int
    name: str
    knowledge: float = 0.0
    advances: int = 0
    peak_population: int = 0
    collapsed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Civilization:
        return cls(**d)


@dataclass(frozen=True, slots=True)
class CivChange:
    kind: str  # CivilizationFounded | TechAdvanced | CivilizationCollapsed
    civilization: Civilization
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class FoundRefused:
    reason: str  # a CommandRejected reason
    message: str


def judge_founding(status: dict[str, Any], exists: bool) -> FoundRefused | None:
    """Why a founding request (in ``status["found"]``) must be refused, or None."""
    req = status["found"]
    pid = status["planet_id"]
    if exists:
        return FoundRefused("DUPLICATE_ID", f"civilization {req['civilization_id']} already exists")
    if not status["known"]:
        return FoundRefused("UNKNOWN_PLANET", f"no planet or moon {pid} in world {status['world_id']}")
    if status["destroyed"]:
        return FoundRefused("UNKNOWN_PLANET", f"planet {pid} was destroyed")
    if status["population"] < MIN_FOUNDING_POPULATION:
        return FoundRefused("NOT_PERMITTED", (
            f"planet {pid} has {status['population']} individuals; founding a civilization "
            f"needs {MIN_FOUNDING_POPULATION}"))
    return None


def found(status: dict[str, Any]) -> CivChange:
    req = status["found"]
    civ = Civilization(status["world_id"], int(req["civilization_id"]), int(status["planet_id"]),
                       str(req["name"]), peak_population=int(status["population"]))
    return CivChange("CivilizationFounded", civ, {
        "name": civ.name, "founder_player_id": req["player_id"],
        "species_id": status.get("dominant_species_id")})


def collapse_reason(status: dict[str, Any]) -> str | None:
    if status["destroyed"]:
        return "planet destroyed"
    if status["species_count"] == 0:
        return "ecosystem collapse: no species left"
    if status["population"] < COLLAPSE_POPULATION:
        return "famine: the ecosystem failed"
    return None


def advance(civ: Civilization, status: dict[str, Any]) -> list[CivChange]:
    """What one planet status does to a living civilization on that planet; mutates ``civ``."""
    if civ.collapsed:
        return []
    pop = int(status["population"])
    civ.peak_population = max(civ.peak_population, pop)
    reason = collapse_reason(status)
    if reason is not None:
        civ.collapsed = True
        return [CivChange("CivilizationCollapsed", civ,
                          {"reason": reason, "peak_population": civ.peak_population})]
    fed = min(1.0, float(status["carrying_capacity"]) / max(pop, 1))
    civ.knowledge += float(status["years"]) * math.log10(1 + pop) * fed
    out = []
    while civ.knowledge >= KNOWLEDGE_PER_ADVANCE * (civ.advances + 1):
        civ.knowledge -= KNOWLEDGE_PER_ADVANCE * (civ.advances + 1)
        tech = TECHS[civ.advances % len(TECHS)]
        level = civ.advances // len(TECHS) + 1
        civ.advances += 1
        out.append(CivChange("TechAdvanced", civ, {"tech": tech, "level": level}))
    return out


@dataclass(frozen=True, slots=True)
class StatusOutcome:
    changes: list[CivChange]
    refused: FoundRefused | None


def on_status(status: dict[str, Any], civs: MutableMapping[str, Any],
              on_planet: MutableMapping[str, Any]) -> StatusOutcome:
    """Apply one planet status to the civilization tables (any mutable mappings).

    ``civs``: "world/civilization" -> Civilization dict; ``on_planet``:
    "world/planet" -> ids of the living civilizations there.
    """
    world_id, pid = str(status["world_id"]), int(status["planet_id"])
    changes: list[CivChange] = []
    refused = None
    living: list[int] = list(on_planet.get(f"{world_id}/{pid}") or [])
    if (req := status.get("found")) is not None:
        civ_key = f"{world_id}/{req['civilization_id']}"
        refused = judge_founding(status, civs.get(civ_key) is not None)
        if refused is None:
            founded = found(status)
            changes.append(founded)
            civs[civ_key] = founded.civilization.to_dict()
            living.append(founded.civilization.civilization_id)
    still = []
    for cid in sorted(set(living)):
        civ = Civilization.from_dict(civs[f"{world_id}/{cid}"])
        changes += advance(civ, status)
        civs[f"{world_id}/{cid}"] = civ.to_dict()
        if not civ.collapsed:
            still.append(cid)
    on_planet[f"{world_id}/{pid}"] = still
    return StatusOutcome(changes, refused)
