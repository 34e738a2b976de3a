"""Kick-drift-kick leapfrog: second order, symplectic, time-reversible.

Symplectic means energy errors stay bounded and oscillate instead of drifting,
which is what lets a world run for millions of ticks. Each step needs one force
evaluation: the accelerations at the end of a step are those at the start of
the next, so the world caches them (they are a pure function of the state, so
a restored snapshot recomputes exactly the same bits).

The arrays are replaced, not updated in place: views handed out by the world
(``world.positions``) keep the values of the tick they were taken at.
"""

from __future__ import annotations

from collections.abc import Callable

from .types import F64Array

AccelFn = Callable[[F64Array], F64Array]


def kick_drift_kick(
    positions: F64Array,
    velocities: F64Array,
    accelerations: F64Array,
    dt: float,
    accel_fn: AccelFn,
) -> tuple[F64Array, F64Array, F64Array]:
    """One step; returns the new (positions, velocities, accelerations)."""
    half = 0.5 * dt
    v_half = velocities + half * accelerations
    new_positions = positions + dt * v_half
    new_accelerations = accel_fn(new_positions)
    new_velocities = v_half + half * new_accelerations
    return new_positions, new_velocities, new_accelerations
