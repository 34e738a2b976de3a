"""Population dynamics of one planet: pure functions of (state, elapsed years, seeds).

Per species on a planet, one step of ``dt`` years applies:

* logistic growth ``r N (1 - N / K)`` for species that live off the land
  (photosynthesizers, herbivores, omnivores at half capacity), with ``r`` and
  ``K`` scaled by how well the species fits the planet's temperature;
* Lotka-Volterra predation between species on the same planet: the predator
  eats ``a N P`` prey and turns a size-weighted fraction of it into offspring;
  pure carnivores have no other food and die at a fixed rate;
* extinction below :data:`EXTINCTION_THRESHOLD` individuals;
* speciation: a large population splits off a mutated daughter species with a
  probability per year; the dice are seeded from (world, planet, species,
  tick), never from a clock, so a replay draws the same numbers.

Attack rates are normalised by the prey's carrying capacity, so the dynamics
do not depend on the absolute size of populations. Everything returns
:class:`Change` records for the caller to turn into events.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field, replace
from typing import Any

from .climate import fitness

EXTINCTION_THRESHOLD = 2.0
# Carrying capacity of a 1 m species perfectly fit to its planet; smaller ones are
# more numerous (Damuth's law: density ~ size^-0.75).
BASE_CAPACITY = 1.0e6
BASE_DEATH_RATE = 0.1  # per year, for every species
UNFIT_DEATH_RATE = 0.5  # per year, extra, scaled by how unfit the climate is
CARNIVORE_MORTALITY = 0.4  # per year
ATTACK = 10.0  # prey eaten per predator per year, relative to prey capacity
EFFICIENCY = 0.5  # fraction of eaten biomass turned into predator biomass
SPECIATION_RATE = 0.02  # per species per year, once large enough
SPECIATION_MIN_POPULATION = 500.0
DAUGHTER_SHARE = 0.1  # of the parent population founds the daughter species
MAX_SPECIES_PER_PLANET = 12
MAX_SUBSTEP_YEARS = 0.02  # integration step: keeps Euler stable for these rates
# PopulationChanged only when the population moved this much since the last report.
REPORT_RELATIVE = 0.05
REPORT_ABSOLUTE = 10
# Ids of species born by speciation live above this, apart from players' ids.
EMERGED_ID_BASE = 1 << 62

# Who eats whom (predator diet -> prey diets).
EATS: dict[str, frozenset[str]] = {
    "CARNIVORE": frozenset({"HERBIVORE", "OMNIVORE"}),
    "OMNIVORE": frozenset({"HERBIVORE"}),
    "HERBIVORE": frozenset({"PHOTOSYNTH"}),
    "PHOTOSYNTH": frozenset(),
}


@dataclass(frozen=True, slots=True)
class Traits:
    diet: str
    size: float
    fertility: float
    temp_min_k: float
    temp_max_k: float

    def to_record(self) -> dict[str, Any]:
        return {"diet": self.diet, "size": self.size, "fertility": self.fertility,
                "temp_min_k": self.temp_min_k, "temp_max_k": self.temp_max_k}

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Traits:
        return cls(str(r["diet"]), float(r["size"]), float(r["fertility"]),
                   float(r["temp_min_k"]), float(r["temp_max_k"]))


@dataclass(slots=True)
class Population:
    species_id: int
    traits: Traits
    count: float
    reported: int  # the population the last event told the world
    parent: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"species_id": self.species_id, "traits": self.traits.to_record(),
                "count": self.count, "reported": self.reported, "parent": self.parent}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Population:
        return cls(int(d["species_id"]), Traits.from_record(d["traits"]), float(d["count"]),
                   int(d["reported"]), d.get("parent"))


@dataclass(frozen=True, slots=True)
class Change:
    """Something a step did, for the event log: ``kind`` is an EcosystemEvent body name."""

    kind: str  # PopulationChanged | SpeciesExtinct | SpeciesEmerged
    species_id: int
    body: dict[str, Any]


@dataclass(slots=True)
class Habitat:
    """What a step needs to know about the planet besides its species."""

    temp_k: float
    seed: str  # world and planet, for the dice
    species: dict[int, Population] = field(default_factory=dict)


def uniform(*parts: object) -> float:
    """A number in [0, 1) that depends only on ``parts`` (the rules' only source of chance)."""
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return (struct.unpack("<Q", digest)[0] >> 11) / float(1 << 53)


def fit(pop: Population, temp_k: float) -> float:
    return fitness(temp_k, pop.traits.temp_min_k, pop.traits.temp_max_k)


def capacity(traits: Traits, fit_value: float) -> float:
    """Carrying capacity of a species living off the land on a planet it fits this well."""
    k = BASE_CAPACITY * fit_value / max(traits.size, 1e-6) ** 0.75
    return k * (0.5 if traits.diet == "OMNIVORE" else 1.0)


def _rates(species: list[Population], counts: list[float], temp_k: float) -> list[float]:
    """dN/dt for every species, given the counts."""
    fits = [fit(p, temp_k) for p in species]
    caps = [capacity(p.traits, f) for p, f in zip(species, fits, strict=True)]
    out = []
    for i, p in enumerate(species):
        n = counts[i]
        death = BASE_DEATH_RATE + UNFIT_DEATH_RATE * (1.0 - fits[i])
        if p.traits.diet == "CARNIVORE":
            d = -CARNIVORE_MORTALITY * n - death * n
        else:
            r = p.traits.fertility * fits[i]
            k = caps[i]
            d = r * n * (1.0 - n / k) - death * n if k > 0 else -death * n
        out.append(d)
    for j, pred in enumerate(species):
        prey_diets = EATS[pred.traits.diet]
        for i, prey in enumerate(species):
            if i == j or prey.traits.diet not in prey_diets or caps[i] <= 0:
                continue
            eaten = ATTACK / caps[i] * counts[i] * counts[j]
            out[i] -= eaten
            out[j] += EFFICIENCY * eaten * min(1.0, prey.traits.size / pred.traits.size)
    return out


def integrate(species: list[Population], temp_k: float, dt: float) -> list[float]:
    """Counts after ``dt`` years (midpoint steps of at most MAX_SUBSTEP_YEARS; never negative)."""
    counts = [p.count for p in species]
    if dt <= 0 or not species:
        return counts
    steps = max(1, math.ceil(dt / MAX_SUBSTEP_YEARS))
    h = dt / steps
    for _ in range(steps):
        k1 = _rates(species, counts, temp_k)
        mid = [max(0.0, c + 0.5 * h * d) for c, d in zip(counts, k1, strict=True)]
        k2 = _rates(species, mid, temp_k)
        counts = [max(0.0, c + h * d) for c, d in zip(counts, k2, strict=True)]
    return counts


def _cause(p: Population, habitat: Habitat) -> str:
    if fit(p, habitat.temp_k) == 0.0:
        return "temperature"
    others = [q for q in habitat.species.values() if q.species_id != p.species_id]
    if any(p.traits.diet in EATS[q.traits.diet] for q in others):
        return "predation"
    if EATS[p.traits.diet] and p.traits.diet == "CARNIVORE":
        return "starvation"
    return "decline"


def mutate(traits: Traits, *seed: object) -> Traits:
    """A daughter species' traits: size, fertility and temperature range drift a little."""
    def u(name: str) -> float:
        return uniform(*seed, name) - 0.5  # in [-0.5, 0.5)
    shift = 30.0 * u("temp")
    width = max(1.0, (traits.temp_max_k - traits.temp_min_k) * (1.0 + 0.4 * u("width")))
    low = max(0.0, traits.temp_min_k + shift)
    return replace(
        traits,
        size=max(1e-3, traits.size * (1.0 + 0.4 * u("size"))),
        fertility=max(0.0, traits.fertility * (1.0 + 0.4 * u("fertility"))),
        temp_min_k=low, temp_max_k=low + width,
    )


def emerged_id(*seed: object) -> int:
    return EMERGED_ID_BASE + int(uniform(*seed, "id") * (1 << 53))


def report(p: Population) -> Change | None:
    """A PopulationChanged when the count moved meaningfully since the last report."""
    current = int(p.count)
    moved = abs(current - p.reported)
    if moved == 0 or moved < max(REPORT_RELATIVE * p.reported, REPORT_ABSOLUTE):
        return None
    change = Change("PopulationChanged", p.species_id,
                    {"species_id": p.species_id, "previous": p.reported, "current": current})
    p.reported = current
    return change


def step(habitat: Habitat, dt: float, tick: int, *, speciation: bool = True) -> list[Change]:
    """Advance every species of a planet by ``dt`` years at ``tick``; mutates ``habitat``."""
    species = [habitat.species[k] for k in sorted(habitat.species)]
    for p, n in zip(species, integrate(species, habitat.temp_k, dt), strict=True):
        p.count = n
    changes: list[Change] = []
    for p in species:
        if p.count < EXTINCTION_THRESHOLD:
            changes.append(Change("SpeciesExtinct", p.species_id,
                                  {"species_id": p.species_id, "cause": _cause(p, habitat)}))
    for c in changes:
        del habitat.species[c.species_id]
    for p in species:
        if p.species_id not in habitat.species:
            continue
        if (speciation and len(habitat.species) < MAX_SPECIES_PER_PLANET
                and p.count >= SPECIATION_MIN_POPULATION
                and uniform(habitat.seed, p.species_id, tick, "speciate")
                < 1.0 - math.exp(-SPECIATION_RATE * dt)):
            seed = (habitat.seed, p.species_id, tick)
            child_id = emerged_id(*seed)
            if child_id not in habitat.species:
                share = p.count * DAUGHTER_SHARE
                p.count -= share
                child = Population(child_id, mutate(p.traits, *seed), share, int(share),
                                   p.species_id)
                habitat.species[child_id] = child
                changes.append(Change("SpeciesEmerged", child_id, {
                    "species_id": child_id, "parent_species_id": p.species_id,
                    "population": int(share), "traits": child.traits.to_record()}))
        if (reported := report(p)) is not None:
            changes.append(reported)
    return changes


# -- migration between planets -----------------------------------------------------

MIGRATION_RANGE_AU = 0.05
MIGRATION_RATE = 0.05  # fraction per year at zero distance
MIGRATION_MIN_POPULATION = 100.0


def migrate(habitats: dict[int, Habitat], positions: dict[int, tuple[float, float, float]],
            dt: float) -> list[tuple[int, Population]]:
    """Move a share of each large population to close planets whose climate it can bear.

    Returns (planet, population) for species that arrived somewhere new; flows
    are computed from the counts before any move, in id order, so the result
    does not depend on iteration order.
    """
    moves: list[tuple[int, int, int, float]] = []  # (from, to, species, amount)
    ids = sorted(p for p in habitats if p in positions)
    for a in ids:
        for b in ids:
            if a == b:
                continue
            d = math.dist(positions[a], positions[b])
            if d >= MIGRATION_RANGE_AU:
                continue
            share = MIGRATION_RATE * (1.0 - d / MIGRATION_RANGE_AU) * dt
            for sid in sorted(habitats[a].species):
                p = habitats[a].species[sid]
                if p.count >= MIGRATION_MIN_POPULATION and fit(p, habitats[b].temp_k) > 0:
                    moves.append((a, b, sid, min(0.5, share) * p.count))
    arrived: list[tuple[int, Population]] = []
    for a, b, sid, amount in moves:
        src = habitats[a].species.get(sid)
        if src is None:
            continue
        src.count -= amount
        dst = habitats[b].species.get(sid)
        if dst is None:
            dst = Population(sid, src.traits, 0.0, 0, src.parent)
            habitats[b].species[sid] = dst
            arrived.append((b, dst))
        dst.count += amount
    return arrived
