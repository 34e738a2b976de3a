"""The pure rules of living worlds: climate, growth, predation, extinction, speciation, migration."""

from __future__ import annotations

import itertools

import pytest

from streams.living import climate, ecology
from streams.living.ecology import Habitat, Population, Traits

HERBIVORE = Traits("HERBIVORE", 1.0, 1.5, 240.0, 320.0)
CARNIVORE = Traits("CARNIVORE", 1.0, 0.0, 240.0, 320.0)
EARTH_K = 278.6


def habitat(*pops: Population, temp_k: float = EARTH_K, seed: str = "w/10") -> Habitat:
    return Habitat(temp_k, seed, {p.species_id: p for p in pops})


def pop(sid: int, traits: Traits, n: float) -> Population:
    return Population(sid, traits, n, int(n))


def test_temperature_falls_with_distance_and_rises_with_star_mass() -> None:
    sun = [(1.0, (0.0, 0.0, 0.0))]
    assert climate.temperature_k((1.0, 0, 0), sun) == pytest.approx(EARTH_K)
    assert climate.temperature_k((4.0, 0, 0), sun) == pytest.approx(EARTH_K / 2)
    assert climate.temperature_k((1.0, 0, 0), [(2.0, (0, 0, 0))]) > EARTH_K
    assert climate.band(EARTH_K) is climate.Band.TEMPERATE
    assert climate.band(climate.temperature_k((5.2, 0, 0), sun)) is climate.Band.FROZEN
    assert climate.band(climate.temperature_k((0.39, 0, 0), sun)) is climate.Band.SCORCHING
    assert climate.band(climate.temperature_k((1.0, 0, 0), [])) is climate.Band.DARK


def test_fitness_is_one_inside_the_range_and_fades_outside() -> None:
    assert climate.fitness(280, 240, 320) == 1.0
    assert 0 < climate.fitness(330, 240, 320) < 1
    assert climate.fitness(400, 240, 320) == 0.0


def test_logistic_growth_approaches_carrying_capacity_without_overshoot() -> None:
    h = habitat(pop(1, HERBIVORE, 100))
    k = ecology.capacity(HERBIVORE, 1.0) * (1 - ecology.BASE_DEATH_RATE / HERBIVORE.fertility)
    counts = []
    for t in range(200):
        ecology.step(h, 0.25, t, speciation=False)
        counts.append(h.species[1].count)
    assert all(b >= a for a, b in itertools.pairwise(counts))
    assert counts[-1] == pytest.approx(k, rel=1e-3)
    assert max(counts) <= k * 1.0001


def test_a_poor_climate_lowers_the_capacity() -> None:
    good, poor = habitat(pop(1, HERBIVORE, 100)), habitat(pop(1, HERBIVORE, 100), temp_k=335)
    for t in range(200):
        ecology.step(good, 0.25, t, speciation=False)
        ecology.step(poor, 0.25, t, speciation=False)
    assert 0 < poor.species[1].count < good.species[1].count / 2


def _local_maxima(xs: list[float]) -> list[int]:
    return [i for i in range(1, len(xs) - 1) if xs[i - 1] < xs[i] >= xs[i + 1]]


def test_predators_and_prey_oscillate_with_predators_lagging() -> None:
    k = ecology.capacity(HERBIVORE, 1.0)
    h = habitat(pop(1, HERBIVORE, 0.5 * k), pop(2, CARNIVORE, 0.02 * k))
    prey, pred = [], []
    for t in range(600):
        ecology.step(h, 0.1, t, speciation=False)
        prey.append(h.species[1].count)
        pred.append(h.species[2].count)
    prey_peaks, pred_peaks = _local_maxima(prey), _local_maxima(pred)
    assert len(prey_peaks) >= 3 and len(pred_peaks) >= 3  # cycles, not a monotone approach
    # Each predator boom follows a prey boom, within half a cycle.
    period = prey_peaks[1] - prey_peaks[0]
    assert 0 < pred_peaks[0] - prey_peaks[0] < period / 2 + 1
    # Prey are held well below what they would reach alone.
    assert max(prey[-100:]) < 0.8 * k


def test_species_die_out_in_a_climate_they_cannot_bear() -> None:
    h = habitat(pop(1, HERBIVORE, 1000), temp_k=500)
    changes = [c for t in range(100) for c in ecology.step(h, 0.5, t)]
    extinct = [c for c in changes if c.kind == "SpeciesExtinct"]
    assert [c.body for c in extinct] == [{"species_id": 1, "cause": "temperature"}]
    assert h.species == {}


def test_a_carnivore_without_prey_starves() -> None:
    h = habitat(pop(2, CARNIVORE, 1000))
    changes = [c for t in range(100) for c in ecology.step(h, 0.5, t)]
    assert {"species_id": 2, "cause": "starvation"} in [c.body for c in changes]


def test_healthy_populations_do_not_go_extinct() -> None:
    h = habitat(pop(1, HERBIVORE, 50))
    changes = [c for t in range(100) for c in ecology.step(h, 0.5, t)]
    assert not [c for c in changes if c.kind == "SpeciesExtinct"]


def _run(seed: str, n: float, steps: int = 400) -> list[ecology.Change]:
    h = habitat(pop(1, HERBIVORE, n), seed=seed)
    return [c for t in range(steps) for c in ecology.step(h, 0.5, t)]


def test_speciation_fires_in_large_populations_and_is_seeded() -> None:
    changes = _run("w/10", 1e5)
    emerged = [c for c in changes if c.kind == "SpeciesEmerged"]
    assert emerged, "a large population over 200 years speciates"
    first = emerged[0].body
    assert first["parent_species_id"] == 1
    assert first["species_id"] >= ecology.EMERGED_ID_BASE
    assert first["traits"] != HERBIVORE.to_record()  # mutated
    assert first["traits"]["diet"] == "HERBIVORE"
    # The same log gives the same species, a different planet other ones.
    assert _run("w/10", 1e5) == changes
    assert [c.body for c in _run("w/11", 1e5) if c.kind == "SpeciesEmerged"] != [
        c.body for c in emerged]


def test_no_speciation_below_the_minimum_population() -> None:
    # Huge animals: the planet feeds fewer of them than speciation needs.
    h = habitat(Population(1, Traits("HERBIVORE", 1e6, 1.0, 240, 320), 10, 10))
    assert ecology.capacity(h.species[1].traits, 1.0) < ecology.SPECIATION_MIN_POPULATION
    changes = [c for t in range(400) for c in ecology.step(h, 0.5, t)]
    assert not [c for c in changes if c.kind == "SpeciesEmerged"]


def test_population_changes_are_reported_only_when_meaningful() -> None:
    p = pop(1, HERBIVORE, 1000)
    p.count = 1020  # 2%: not worth an event
    assert ecology.report(p) is None
    p.count = 1100
    change = ecology.report(p)
    assert change is not None and change.body == {"species_id": 1, "previous": 1000, "current": 1100}
    assert ecology.report(p) is None  # reported value moved along


def test_migration_settles_close_planets_the_species_can_bear() -> None:
    home = habitat(pop(1, HERBIVORE, 10_000), seed="w/10")
    near = Habitat(EARTH_K, "w/11")
    hot = Habitat(600.0, "w/12")
    far = Habitat(EARTH_K, "w/13")
    positions = {10: (1.0, 0, 0), 11: (1.01, 0, 0), 12: (1.0, 0.01, 0), 13: (2.0, 0, 0)}
    arrived = ecology.migrate({10: home, 11: near, 12: hot, 13: far}, positions, 1.0)
    assert [pid for pid, _ in arrived] == [11]
    assert 0 < near.species[1].count < 10_000
    assert home.species[1].count + near.species[1].count == pytest.approx(10_000)
    assert not hot.species and not far.species


def test_the_dice_depend_only_on_their_seed() -> None:
    assert ecology.uniform("a", 1, 2) == ecology.uniform("a", 1, 2)
    assert ecology.uniform("a", 1, 2) != ecology.uniform("a", 1, 3)
    assert all(0 <= ecology.uniform(i) < 1 for i in range(1000))


def test_demo_life_is_seeded_where_it_can_live() -> None:
    from streams.worlds import scenario

    sun = [(1.0, (0.0, 0.0, 0.0))]
    orbits = {pid: a for pid, (_, a, _, _) in zip(scenario.PLANET_IDS, scenario.PLANETS, strict=True)}
    cmds = scenario.life("w", seed=42)
    seeds = [c.command for c in cmds if c.command.type == "SeedSpecies"]
    assert len({s.species_id for s in seeds}) == len(seeds) == len(scenario.LIFE)
    for s in seeds:
        temp = climate.temperature_k((orbits[s.planet_id], 0.0, 0.0), sun)
        assert climate.fitness(temp, s.traits.temp_min_k, s.traits.temp_max_k) > 0.5, s
    founding = [c.command for c in cmds if c.command.type == "FoundCivilization"]
    assert len(founding) == 1 and founding[0].planet_id == scenario.PLANET_IDS[2]
    # Ids are new each run (players pick a fresh seed), so a replayed log never collides.
    assert {s.species_id for s in seeds}.isdisjoint(
        {c.command.species_id for c in scenario.life("w", seed=43) if c.command.type == "SeedSpecies"})
