"""One world's ecosystem: the tick-ordered join, commands, destruction; and civilization rules."""

from __future__ import annotations

import copy
from typing import Any

from streams.living import civics
from streams.living import testing as script
from streams.living.ecosystem_state import (
    EcoEvent,
    EcoParams,
    EcosystemWorld,
    PlanetStatus,
    Rejection,
)

W = "w-unit"
PARAMS = EcoParams(step_every=5, time_scale=50.0)


def log(n_ticks: int = 40) -> list[tuple[str, int, dict[str, Any]]]:
    """(kind, offset, record): seeds applied at tick 3, one bad seed, a founding at tick 30."""
    bodies = script.solar_system(2)
    cmds = [script.seed(W, 10, 1, 500), script.seed(W, 1, 2, 500), script.seed(W, 99, 3, 500),
            script.found(W, 10, 7)]
    out: list[tuple[str, int, dict[str, Any]]] = [("cmd", i, c) for i, c in enumerate(cmds[:3])]
    for n in range(1, n_ticks + 1):
        last = 2 if n == 3 else (3 if n == 30 else None)
        if n == 25:
            out.append(("cmd", 3, cmds[3]))
        out.append(("tick", 0, script.tick(W, n, last_offset=last)))
        out.append(("delta", 0, script.delta(W, n, bodies if n == 1 else {})))
    return out


def run(records: list[tuple[str, int, dict[str, Any]]], world: EcosystemWorld | None = None
        ) -> tuple[EcosystemWorld, list[Any]]:
    world = world or EcosystemWorld(W, PARAMS)
    outputs: list[Any] = []
    for kind, offset, rec in records:
        if kind == "cmd":
            outputs += world.on_command(offset, rec)
        elif kind == "tick":
            outputs += world.on_tick(rec)
        else:
            outputs += world.on_delta(rec)
    return world, outputs


def test_seeds_apply_at_their_tick_and_bad_ones_are_rejected_with_a_reason() -> None:
    _, outputs = run(log())
    rejections = [o for o in outputs if isinstance(o, Rejection)]
    assert [(r.reason, r.tick, r.offset) for r in rejections] == [
        ("NOT_PERMITTED", 3, 1), ("UNKNOWN_PLANET", 3, 2)]
    assert "STAR" in rejections[0].message
    emerged = [o for o in outputs if isinstance(o, EcoEvent) and o.kind == "SpeciesEmerged"]
    assert [(e.planet_id, e.tick, e.body["species_id"]) for e in emerged] == [(10, 3, 1)]
    changed = [o for o in outputs if isinstance(o, EcoEvent) and o.kind == "PopulationChanged"]
    assert changed and all(e.tick % 5 == 1 for e in changed)  # on ecosystem steps only
    assert changed[0].body["previous"] == 500 and changed[0].body["current"] > 500


def test_founding_requests_carry_the_planet_at_their_tick() -> None:
    _, outputs = run(log())
    requests = [o.record for o in outputs if isinstance(o, PlanetStatus) and o.record["found"]]
    assert len(requests) == 1
    r = requests[0]
    assert (r["tick"], r["planet_id"], r["found"]["civilization_id"], r["known"]) == (30, 10, 7, True)
    assert r["population"] > 500


def test_the_result_does_not_depend_on_the_order_topics_are_read_in() -> None:
    records = log()
    in_order = run(records)[1]
    # Every tick before its delta and its commands: the join must wait for both.
    shuffled = ([r for r in records if r[0] == "tick"] + [r for r in records if r[0] == "delta"]
                + [r for r in records if r[0] == "cmd"])
    assert run(shuffled)[1] == in_order
    # Commands last, deltas first.
    reordered = ([r for r in records if r[0] == "delta"] + [r for r in records if r[0] == "tick"]
                 + [r for r in records if r[0] == "cmd"])
    assert run(reordered)[1] == in_order


def test_state_survives_a_round_trip_through_its_table_form() -> None:
    records = log()
    world, first = run(records[:50])
    restored = EcosystemWorld(W, PARAMS, copy.deepcopy(world.to_dict()),
                              {pid: type(p).from_dict(copy.deepcopy(p.to_dict()))
                               for pid, p in world.planets.items()})
    rest = run(records[50:], restored)[1]
    assert first + rest == run(records)[1]


def test_a_merged_planet_is_destroyed_with_its_life() -> None:
    records = log(12)
    star_grew = {1: (script.STAR, 1.01, (0.0, 0.0, 0.0))}
    records.append(("tick", 0, script.tick(W, 13)))
    records.append(("delta", 0, script.delta(W, 13, star_grew, removed=(10,))))
    records.append(("tick", 0, script.tick(W, 14)))
    records.append(("delta", 0, script.delta(W, 14, {}, removed=(11,))))
    world, outputs = run(records)
    events = [(o.planet_id, o.kind, o.body) for o in outputs if isinstance(o, EcoEvent) and o.tick >= 13]
    assert events == [
        (10, "SpeciesExtinct", {"species_id": 1, "cause": "planet destroyed"}),
        (10, "PlanetDestroyed", {"cause": "collision", "merged_into": 1}),
        # Planet 11, 0.02 AU away, had been settled by migrants from 10.
        (11, "SpeciesExtinct", {"species_id": 1, "cause": "planet destroyed"}),
        (11, "PlanetDestroyed", {"cause": "removed", "merged_into": None}),
    ]
    settled = [o for o in outputs if isinstance(o, EcoEvent) and o.planet_id == 11
               and o.kind == "PopulationChanged"]
    assert settled[0].body["previous"] == 0 and settled[0].body["species_id"] == 1
    statuses = [o.record for o in outputs if isinstance(o, PlanetStatus) and o.record["tick"] == 13]
    assert statuses and statuses[0]["destroyed"]
    # Seeding a destroyed planet is refused.
    late = world.on_command(9, script.seed(W, 10, 5, 100))
    late += world.on_tick(script.tick(W, 15, last_offset=9))
    late += world.on_delta(script.delta(W, 15, {}))
    assert [o.reason for o in late if isinstance(o, Rejection)] == ["UNKNOWN_PLANET"]


# -- civilizations -------------------------------------------------------------------

def status(pop: int, *, tick: int = 1, years: float = 1.0, found: bool = False,
           destroyed: bool = False, known: bool = True, species: int = 1) -> dict[str, Any]:
    return {"world_id": W, "planet_id": 10, "tick": tick, "known": known,
            "destroyed": destroyed, "temperature_k": 280.0, "population": pop,
            "carrying_capacity": 1e6, "species_count": species, "dominant_species_id": 1,
            "years": years, "ts": 0,
            "found": {"command_id": "c", "player_id": "p", "civilization_id": 7, "name": "Ur",
                      "command_offset": 3} if found else None}


def test_founding_needs_a_known_planet_with_enough_life() -> None:
    assert civics.judge_founding(status(10, found=True), False).reason == "NOT_PERMITTED"
    assert civics.judge_founding(status(10**5, found=True, known=False), False).reason == "UNKNOWN_PLANET"
    assert civics.judge_founding(status(10**5, found=True), True).reason == "DUPLICATE_ID"
    assert civics.judge_founding(status(10**5, found=True), False) is None
    founded = civics.found(status(10**5, found=True))
    assert founded.body == {"name": "Ur", "founder_player_id": "p", "species_id": 1}


def test_technology_advances_faster_with_more_people_and_in_order() -> None:
    def advances(pop: int, years: int) -> list[dict[str, Any]]:
        civ = civics.found(status(pop, found=True)).civilization
        return [c.body for t in range(years) for c in civics.advance(civ, status(pop, tick=t))]

    big, small = advances(10**6, 40), advances(2_000, 40)
    assert len(big) > len(small) > 0
    assert [b["tech"] for b in big[:3]] == ["agriculture", "metallurgy", "writing"]
    assert all(b["level"] == 1 for b in big[: len(civics.TECHS)])


def test_civilizations_collapse_when_their_ecosystem_fails() -> None:
    civ = civics.found(status(10**5, found=True)).civilization
    civics.advance(civ, status(3 * 10**5))
    out = civics.advance(civ, status(50))
    assert [(c.kind, c.body) for c in out] == [
        ("CivilizationCollapsed", {"reason": "famine: the ecosystem failed", "peak_population": 3 * 10**5})]
    assert civics.advance(civ, status(10**5)) == []  # once collapsed, stays so
    gone = civics.found(status(10**5, found=True)).civilization
    assert civics.advance(gone, status(0, destroyed=True, species=0))[0].body["reason"] == "planet destroyed"
