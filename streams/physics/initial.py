"""Ready-made initial conditions: a Plummer sphere and a two-body Kepler orbit.

Used by the tests, the benchmarks and the worker's built-in scenario. Both are
pure functions of their arguments (a seeded generator), so they are
reproducible everywhere.
"""

from __future__ import annotations

import math

import numpy as np

from .types import F64Array, I64Array


def plummer_sphere(
    n: int, *, seed: int = 0, G: float = 1.0, total_mass: float = 1.0, max_radius: float = 20.0
) -> tuple[I64Array, F64Array, F64Array, F64Array]:
    """``(ids, masses, positions, velocities)`` of an equal-mass Plummer sphere in equilibrium.

    Hénon units when ``G = total_mass = 1``: scale radius ``3 pi / 16``, virial
    radius 1, total energy -1/4, crossing time ``2 sqrt(2)``. Positions and
    velocities are sampled after Aarseth, Hénon & Wielen (1974); radii beyond
    ``max_radius`` scale radii are redrawn (the distribution's tail would
    otherwise put a few bodies hundreds of radii out); the centre of mass is
    moved to rest at the origin.
    """
    rng = np.random.default_rng(seed)
    a = 3.0 * math.pi / 16.0
    r = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        x1 = rng.uniform(1e-12, 1.0, todo.size)
        r_try = 1.0 / np.sqrt(x1 ** (-2.0 / 3.0) - 1.0)
        ok = r_try <= max_radius
        r[todo[ok]] = r_try[ok]
        todo = todo[~ok]
    # Speed as a fraction q of the local escape speed, by rejection from g(q) = q^2 (1 - q^2)^3.5.
    q = np.empty(n)
    todo = np.arange(n)
    while todo.size:
        q_try = rng.uniform(0.0, 1.0, todo.size)
        ok = rng.uniform(0.0, 0.1, todo.size) < q_try**2 * (1.0 - q_try**2) ** 3.5
        q[todo[ok]] = q_try[ok]
        todo = todo[~ok]
    v_esc = np.sqrt(2.0) * (1.0 + r**2) ** -0.25
    positions = _isotropic(rng, n) * (r * a)[:, None]
    velocities = _isotropic(rng, n) * (q * v_esc * math.sqrt(G * total_mass / a))[:, None]
    masses = np.full(n, total_mass / n)
    positions -= positions.mean(axis=0)
    velocities -= velocities.mean(axis=0)
    return np.arange(n, dtype=np.int64), masses, positions, velocities


def _isotropic(rng: np.random.Generator, n: int) -> F64Array:
    cos_t = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * math.pi, n)
    sin_t = np.sqrt(1.0 - cos_t**2)
    return np.stack((sin_t * np.cos(phi), sin_t * np.sin(phi), cos_t), axis=1)


def kepler_pair(
    m1: float = 1.0, m2: float = 1e-3, a: float = 1.0, e: float = 0.0, G: float = 1.0
) -> tuple[I64Array, F64Array, F64Array, F64Array, float]:
    """Two bodies on a Kepler orbit starting at pericentre, centre of mass at rest.

    Returns ``(ids, masses, positions, velocities, period)`` with
    ``period = 2 pi sqrt(a^3 / (G (m1 + m2)))``.
    """
    mu = G * (m1 + m2)
    r_peri = a * (1.0 - e)
    v_peri = math.sqrt(mu * (1.0 + e) / r_peri)
    rel_pos = np.array([r_peri, 0.0, 0.0])
    rel_vel = np.array([0.0, v_peri, 0.0])
    f1 = m2 / (m1 + m2)
    positions = np.stack((-f1 * rel_pos, (1.0 - f1) * rel_pos))
    velocities = np.stack((-f1 * rel_vel, (1.0 - f1) * rel_vel))
    period = 2.0 * math.pi * math.sqrt(a**3 / mu)
    return np.array([1, 2], dtype=np.int64), np.array([m1, m2]), positions, velocities, period
