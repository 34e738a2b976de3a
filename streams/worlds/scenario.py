"""The built-in demo scenario: a star with planets, a moon and an asteroid belt.

Units are astronomical: lengths in AU, time in years, masses in solar masses,
so ``G = 4 pi^2`` and a circular orbit at ``a`` AU has speed ``2 pi / sqrt(a)``.
Every body is created by a ``SpawnBody`` command, as a player would, so the
scenario is just the opening of a world's command log.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from schemas import models

from .state import WORLD_RADIUS

G_ASTRO = 4 * math.pi**2
DAY = 1 / 365.25
STAR_ID = 1
PLANET_IDS = range(10, 15)
MOON_ID = 100
FIRST_ASTEROID_ID = 1000

# name, semi-major axis (AU), mass (Msun), radius (AU)
PLANETS = (
    ("ember", 0.39, 1.7e-7, 1.6e-5),
    ("veil", 0.72, 2.4e-6, 4.0e-5),
    ("cradle", 1.00, 3.0e-6, 4.3e-5),
    ("rust", 1.52, 3.2e-7, 2.3e-5),
    ("titan", 5.20, 9.5e-4, 4.8e-4),
)


def _envelope(world_id: str, player_id: str, body: models.Command, now: datetime,
              command_id: uuid.UUID | None = None) -> models.PlayerCommand:
    return models.PlayerCommand(
        command_id=command_id or uuid.uuid4(), player_id=player_id, world_id=world_id,
        client_ts=now, received_ts=now, command=body,
    )


def _seeded_ids(*seed: int) -> Iterator[uuid.UUID]:
    """Command ids from a seed: a seeded stream is the same commands every time, and a
    world's state (which remembers applied command ids) the same with them. Ids need
    only be unique within a world: that is where a retry is recognised."""
    rng = np.random.default_rng(seed)
    while True:
        yield uuid.UUID(bytes=rng.bytes(16), version=4)


def _vec(v: np.ndarray | tuple[float, float, float]) -> models.Vec3:
    return models.Vec3(x=float(v[0]), y=float(v[1]), z=float(v[2]))


def _orbit(a: float, phase: float, central_mass: float = 1.0,
           inclination: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    speed = math.sqrt(G_ASTRO * central_mass / a)
    pos = np.array([a * math.cos(phase), a * math.sin(phase) * math.cos(inclination),
                    a * math.sin(phase) * math.sin(inclination)])
    vel = np.array([-speed * math.sin(phase), speed * math.cos(phase) * math.cos(inclination),
                    speed * math.cos(phase) * math.sin(inclination)])
    return pos, vel


def star_system(world_id: str, *, asteroids: int = 200, seed: int = 7,
                tick_rate_hz: float = 30.0, dt: float = DAY / 4,
                snapshot_every: int = 100, player_id: str = "scenario") -> list[models.PlayerCommand]:
    """The opening commands of a demo world (deterministic for a given seed)."""
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    ids = _seeded_ids(seed)
    out = [_envelope(world_id, player_id, models.SetWorldParams(
        G=G_ASTRO, softening=1e-5, tick_rate_hz=tick_rate_hz, dt=dt,
        merge_on_contact=True, snapshot_every=snapshot_every), now)]
    out.append(_envelope(world_id, player_id, models.SpawnBody(
        body_id=STAR_ID, kind=models.BodyKind.STAR, mass=1.0, radius=4.65e-3,
        position=_vec((0, 0, 0)), velocity=_vec((0, 0, 0))), now))
    titan = (np.zeros(3), np.zeros(3))
    for body_id, (_, a, mass, radius) in zip(PLANET_IDS, PLANETS, strict=True):
        pos, vel = _orbit(a, rng.uniform(0, 2 * math.pi))
        if body_id == PLANET_IDS[-1]:
            titan = (pos, vel)
        out.append(_envelope(world_id, player_id, models.SpawnBody(
            body_id=body_id, kind=models.BodyKind.PLANET, mass=mass, radius=radius,
            position=_vec(pos), velocity=_vec(vel)), now))
    mpos, mvel = _orbit(0.02, 0.0, central_mass=PLANETS[-1][2])
    out.append(_envelope(world_id, player_id, models.SpawnBody(
        body_id=MOON_ID, kind=models.BodyKind.MOON, mass=4.5e-8, radius=1.7e-5,
        position=_vec(titan[0] + mpos), velocity=_vec(titan[1] + mvel)), now))
    for k in range(asteroids):
        pos, vel = _orbit(rng.uniform(2.2, 3.3), rng.uniform(0, 2 * math.pi),
                          inclination=rng.normal(0, 0.05))
        out.append(_envelope(world_id, player_id, models.SpawnBody(
            body_id=FIRST_ASTEROID_ID + k, kind=models.BodyKind.ASTEROID,
            mass=float(rng.uniform(1e-13, 1e-11)), radius=float(rng.uniform(1e-7, 1e-6)),
            position=_vec(pos), velocity=_vec(vel)), now))
    return [c.model_copy(update={"command_id": next(ids)}) for c in out]


def _invalid(world_id: str, player: str, n: int, spawn_id: int, *, bad_spawn: bool,
             now: datetime, command_id: uuid.UUID | None = None) -> dict[str, Any]:
    """A well-formed command the world must refuse: removing body ``-n`` (no body has a
    negative id), or spawning ``spawn_id`` beyond the world's radius. (Records that break
    the model, such as a negative mass, never reach a world: they are dead letters.)"""
    body: models.Command
    if bad_spawn:
        body = models.SpawnBody(
            body_id=spawn_id, kind=models.BodyKind.ASTEROID, mass=1e-12, radius=1e-6,
            position=_vec((2 * WORLD_RADIUS, 0.0, 0.0)), velocity=_vec((0.0, 3.6, 0.0)))
    else:
        body = models.RemoveBody(body_id=-n)
    return _envelope(world_id, player, body, now, command_id).to_avro()


def player_commands(world_id: str, *, seed: int, asteroids: int = 200,
                    invalid_every: int = 20) -> Iterator[dict[str, object]]:
    """An endless, seeded stream of what players do, as Avro-ready PlayerCommand records.

    Mostly nudges to asteroids, sometimes a new asteroid or a removal, and every
    ``invalid_every``-th command something a worker must refuse (an unknown body,
    a non-positive mass), built raw since the API models would refuse it first.
    """
    rng = np.random.default_rng(seed)
    ids = _seeded_ids(seed, 1)
    next_id = FIRST_ASTEROID_ID + asteroids + 100_000 * (seed % 100_000)
    players = [f"player-{i}" for i in range(8)]
    n = 0
    while True:
        n += 1
        now = datetime.now(UTC)
        player = players[int(rng.integers(len(players)))]
        target = FIRST_ASTEROID_ID + int(rng.integers(asteroids))
        roll = rng.random()
        body: models.Command
        if invalid_every and n % invalid_every == 0:
            bad_spawn = rng.random() >= 0.5
            yield _invalid(world_id, player, n, next_id, bad_spawn=bad_spawn, now=now,
                           command_id=next(ids))
            if bad_spawn:
                next_id += 1
            continue
        if roll < 0.8:
            dv = rng.normal(0, 0.01, 3)
            body = models.ApplyImpulse(body_id=target, dv=_vec(dv))
        elif roll < 0.95:
            pos, vel = _orbit(rng.uniform(2.2, 3.3), rng.uniform(0, 2 * math.pi))
            body = models.SpawnBody(body_id=next_id, kind=models.BodyKind.ASTEROID,
                                    mass=1e-12, radius=5e-7, position=_vec(pos),
                                    velocity=_vec(vel))
            next_id += 1
        else:
            body = models.RemoveBody(body_id=target)
        yield _envelope(world_id, player, body, now, next(ids)).to_avro()


@dataclass(frozen=True, slots=True)
class Move:
    """One command players chose: the Avro-ready record, the body it removes (so the
    chooser stops aiming at it before the world confirms), and whether it was meant
    to be refused."""

    record: dict[str, Any]
    removes: int | None = None
    invalid: bool = False


class Players:
    """What players do next in a world, given the asteroids they can see in it.

    The same mix as :func:`player_commands` (mostly nudges, sometimes a new asteroid
    or a removal, every ``invalid_every``-th command refused on purpose), but aimed
    only at bodies the world has: so a valid-looking command is refused only when
    the world moved on between seeing and acting (a merger, say). New bodies get
    ids above every id seen, so they never collide with an earlier run's bodies.
    """

    def __init__(self, world_id: str, *, seed: int, invalid_every: int = 20) -> None:
        self.world_id = world_id
        self.invalid_every = invalid_every
        self._rng = np.random.default_rng(seed)
        self._names = [f"player-{i}" for i in range(8)]
        self._next_id = FIRST_ASTEROID_ID
        self.chosen = 0
        self.invalid = 0

    def spawn_id(self, highest_seen: int) -> int:
        """A body id no body of the world has had, as far as these players know."""
        body_id = max(self._next_id, highest_seen + 1)
        self._next_id = body_id + 1
        return body_id

    def next(self, asteroids: Sequence[int] | npt.NDArray[np.int64], highest_seen: int) -> Move | None:
        """The next command, or None when the roll wants a target and none is in sight
        (a world that has not shown its bodies yet)."""
        rng, now = self._rng, datetime.now(UTC)
        player = self._names[int(rng.integers(len(self._names)))]
        roll = rng.random()
        if self.invalid_every and (self.chosen + 1) % self.invalid_every == 0:
            bad_spawn = rng.random() >= 0.5
            spawn_id = self.spawn_id(highest_seen) if bad_spawn else 0
            self.chosen += 1
            self.invalid += 1
            return Move(_invalid(self.world_id, player, self.chosen, spawn_id,
                                 bad_spawn=bad_spawn, now=now), invalid=True)
        body: models.Command
        removes = None
        if 0.8 <= roll < 0.95:
            pos, vel = _orbit(rng.uniform(2.2, 3.3), rng.uniform(0, 2 * math.pi))
            body = models.SpawnBody(body_id=self.spawn_id(highest_seen),
                                    kind=models.BodyKind.ASTEROID, mass=1e-12, radius=5e-7,
                                    position=_vec(pos), velocity=_vec(vel))
        elif not len(asteroids):
            return None
        else:
            target = int(asteroids[int(rng.integers(len(asteroids)))])
            if roll < 0.8:
                body = models.ApplyImpulse(body_id=target, dv=_vec(rng.normal(0, 0.01, 3)))
            else:
                body, removes = models.RemoveBody(body_id=target), target
        self.chosen += 1
        return Move(_envelope(self.world_id, player, body, now).to_avro(), removes=removes)


# name, planet, diet, size (m), fertility (/yr), tolerated range (K): life that fits each
# world of the demo system (ember ~450 K, veil ~330 K, cradle ~280 K, rust ~225 K).
LIFE = (
    ("moss", PLANET_IDS[2], models.Diet.PHOTOSYNTH, 0.05, 2.0, 250.0, 310.0),
    ("grazer", PLANET_IDS[2], models.Diet.HERBIVORE, 1.0, 1.5, 240.0, 320.0),
    ("stalker", PLANET_IDS[2], models.Diet.CARNIVORE, 1.2, 0.0, 240.0, 320.0),
    ("thermophile", PLANET_IDS[1], models.Diet.HERBIVORE, 0.3, 1.2, 300.0, 360.0),
    ("lichen", PLANET_IDS[3], models.Diet.PHOTOSYNTH, 0.01, 0.8, 190.0, 250.0),
)


def life(world_id: str, *, seed: int, player_id: str = "gardener") -> list[models.PlayerCommand]:
    """Seed the demo system's planets with species and found a civilization on cradle.

    Ids derive from ``seed`` so each run's species and civilization are new ones.
    """
    now = datetime.now(UTC)
    base = 1_000_000 * (seed % 1_000_000)
    out = [_envelope(world_id, player_id, models.SeedSpecies(
        planet_id=planet, species_id=base + k, initial_population=20_000 if k < 2 else 500,
        traits=models.SpeciesTraits(diet=diet, size=size, fertility=fert, temp_min_k=lo,
                                    temp_max_k=hi)), now)
        for k, (_, planet, diet, size, fert, lo, hi) in enumerate(LIFE)]
    out.append(_envelope(world_id, player_id, models.FoundCivilization(
        planet_id=PLANET_IDS[2], civilization_id=base, name=f"Cradle-{seed % 1000}"), now))
    return out
