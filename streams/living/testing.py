"""Scripted world logs for tests: the physics records a tiny world would produce.

A star at the origin and planets on fixed circles, as ``PhysicsTick``,
``StateDelta`` and ``PlayerCommand`` records (Avro-ready dicts), so the
ecosystem and civilization apps can be driven without running physics.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from schemas import columnar
from schemas.catalog import full_name

STAR, PLANET, MOON, ASTEROID = range(4)
# body id -> (kind, mass, position)
Bodies = dict[int, tuple[int, float, tuple[float, float, float]]]

TEMPERATE = {"diet": "HERBIVORE", "size": 1.0, "fertility": 1.5,
             "temp_min_k": 240.0, "temp_max_k": 320.0}


def solar_system(world_planets: int = 2) -> Bodies:
    """Body 1: a Sun; bodies 10, 11, ...: Earth-like planets at 1.0, 1.02, ... AU."""
    bodies: Bodies = {1: (STAR, 1.0, (0.0, 0.0, 0.0))}
    for k in range(world_planets):
        bodies[10 + k] = (PLANET, 3e-6, (1.0 + 0.02 * k, 0.0, 0.0))
    return bodies


def tick(world_id: str, n: int, *, dt: float = 0.01, last_offset: int | None = None,
         ts: int = 1_700_000_000_000) -> dict[str, Any]:
    return {
        "world_id": world_id, "tick": n, "sim_time": n * dt,
        "command_partition": None if last_offset is None else 0,
        "first_command_offset": last_offset, "last_command_offset": last_offset,
        "n_applied": 0, "n_rejected": 0, "body_count": 0, "total_energy": 0.0,
        "state_hash": "0" * 16, "step_duration_us": 1, "ts": ts + n,
    }


def delta(world_id: str, n: int, bodies: Bodies, removed: tuple[int, ...] = (), *,
          dt: float = 0.01, ts: int = 1_700_000_000_000) -> dict[str, Any]:
    ids = sorted(bodies)
    cols = columnar.Bodies(
        ids=np.array(ids, np.int64), kinds=np.array([bodies[i][0] for i in ids], np.uint8),
        masses=np.array([bodies[i][1] for i in ids]), radii=np.full(len(ids), 1e-5),
        positions=np.array([bodies[i][2] for i in ids], np.float64).reshape(-1, 3),
        velocities=np.zeros((len(ids), 3)),
    )
    return {"world_id": world_id, "tick": n, "sim_time": n * dt, "ts": ts + n,
            **columnar.delta_fields(cols, np.array(removed, np.int64), "FLOAT32")}


def _command(world_id: str, name: str, body: dict[str, Any], player: str) -> dict[str, Any]:
    return {"command_id": str(uuid.uuid4()), "player_id": player, "world_id": world_id,
            "client_ts": 1_700_000_000_000, "received_ts": 1_700_000_000_000,
            "command": (full_name(name), body)}


def seed(world_id: str, planet_id: int, species_id: int, population: int,
         traits: dict[str, Any] | None = None, player: str = "tester") -> dict[str, Any]:
    return _command(world_id, "SeedSpecies", {
        "planet_id": planet_id, "species_id": species_id, "traits": traits or TEMPERATE,
        "initial_population": population}, player)


def found(world_id: str, planet_id: int, civilization_id: int, name: str = "Ur",
          player: str = "tester") -> dict[str, Any]:
    return _command(world_id, "FoundCivilization", {
        "planet_id": planet_id, "civilization_id": civilization_id, "name": name}, player)
