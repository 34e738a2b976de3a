"""Physical invariants of the engine: energy, momentum, Kepler's third law."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streams.physics import World, kepler_pair, plummer_sphere
from streams.physics.direct import accelerations


def _numpy_accelerations(pos: np.ndarray, m: np.ndarray, G: float, eps: float) -> np.ndarray:
    d = pos[None, :, :] - pos[:, None, :]
    r2 = (d**2).sum(axis=2) + eps**2
    np.fill_diagonal(r2, np.inf)
    return G * (d * (m[None, :] / r2**1.5)[:, :, None]).sum(axis=1)


def test_direct_kernel_matches_a_plain_numpy_sum() -> None:
    rng = np.random.default_rng(3)
    pos = rng.standard_normal((300, 3))
    m = rng.uniform(0.5, 2.0, 300)
    ours = accelerations(pos, m, 2.5, 0.05)
    ref = _numpy_accelerations(pos, m, 2.5, 0.05)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=1e-14)


def test_plummer_sphere_energy_error_below_1e4_over_1000_steps() -> None:
    # 1,000 equal-mass bodies in Hénon units (E = -1/4, crossing time 2.83), Plummer
    # softening 0.02, dt = 1/128: 1,000 steps span 7.8 time units, ~2.8 crossing times.
    ids, m, x, v = plummer_sphere(1000, seed=1)
    world = World.from_arrays(ids, m, x, v, softening=0.02, solver="direct", backend="cpu")
    e0 = world.total_energy()
    assert e0 == pytest.approx(-0.25, rel=0.1)  # the sampler really made a Plummer sphere
    world.step(1.0 / 128.0, steps=1000)
    assert world.tick == 1000
    assert abs(world.total_energy() / e0 - 1.0) < 1e-4


def test_total_momentum_conserved_to_1e12() -> None:
    ids, m, x, v = plummer_sphere(500, seed=2)
    v = v + np.array([0.3, -0.1, 0.2])  # a moving cluster: momentum far from zero
    world = World.from_arrays(ids, m, x, v, softening=0.01, solver="direct", backend="cpu")
    p0 = world.momentum()
    scale = float(np.sum(m * np.linalg.norm(v, axis=1)))
    world.step(1.0 / 128.0, steps=300)
    assert np.linalg.norm(world.momentum() - p0) / np.linalg.norm(p0) < 1e-12
    assert np.linalg.norm(world.momentum() - p0) / scale < 1e-12


@pytest.mark.parametrize("e", [0.0, 0.5])
def test_kepler_orbit_period_within_1e3(e: float) -> None:
    ids, m, x, v, period = kepler_pair(m1=1.0, m2=1e-3, a=1.0, e=e)
    world = World.from_arrays(ids, m, x, v, solver="direct", backend="cpu")
    steps_per_orbit = 2000
    dt = period / steps_per_orbit
    # Find the first upward crossing of y = 0 by the relative orbit after half a period,
    # interpolating linearly inside the step that crosses.
    world.step(dt, steps=steps_per_orbit // 2)
    prev_y = float(world.positions[1, 1] - world.positions[0, 1])
    crossing = math.nan
    for _ in range(steps_per_orbit):
        world.step(dt)
        y = float(world.positions[1, 1] - world.positions[0, 1])
        if prev_y < 0.0 <= y:
            crossing = world.time - dt * y / (y - prev_y)
            break
        prev_y = y
    assert abs(crossing / period - 1.0) < 1e-3


def test_tree_world_keeps_energy_within_1e3() -> None:
    ids, m, x, v = plummer_sphere(2000, seed=4)
    world = World.from_arrays(ids, m, x, v, softening=0.02, solver="tree", theta=0.5, backend="cpu")
    e0 = world.total_energy(exact=True)
    world.step(1.0 / 128.0, steps=100)
    assert abs(world.total_energy(exact=True) / e0 - 1.0) < 1e-3
