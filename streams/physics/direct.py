"""Tiled direct-sum gravity on the CPU (numba).

Why the loops look the way they do: each thread owns a tile of ``TILE`` target
bodies and streams every source body past it. The innermost loop runs over the
tile's *targets*, so its iterations are independent and LLVM vectorizes it
(AVX-512: 8 bodies per instruction) without being allowed to reorder any sum.
Every body's force is therefore accumulated by one thread, over sources in
index order 0..n-1: the result is bit-identical to the scalar loop, run after
run and thread count after thread count. No ``fastmath``: reassociation would
let the compiler pick a summation order, and fused multiply-adds would make the
bits depend on the CPU.

Pair forces use Plummer softening, ``a_i = G sum_j m_j d_ij / (|d_ij|^2 + eps^2)^1.5``.
The self pair has ``d = 0`` and contributes nothing; with ``eps = 0`` the
``r2 > 0`` select keeps it from becoming ``0 * inf``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .types import F64Array

# 64 targets x 6 accumulators x 8 bytes = 3 KiB: stays in L1 next to the stream of sources.
TILE = 64


# Below this many bodies a force evaluation takes tens of microseconds: waking the
# thread pool costs as much, and on a busy machine a parallel region can wait a whole
# scheduler tick (~4 ms) for its second thread. Small worlds therefore run serially;
# the per-body arithmetic is the same function, so the bits are the same either way.
PARALLEL_MIN_BODIES = 512


@njit(inline="always", error_model="numpy", boundscheck=False)
def _tile_forces(x, y, z, m, G, eps2, xi, yi, zi, i0, out, ax, ay, az):
    # The pair-force loop every direct-sum step runs, for the targets xi, yi, zi (the
    # bodies i0.. of x, y, z): sources stream past in index order, accumulators ax, ay, az
    # (at least as long as the tile) are zeroed here. Inlined into each caller, so the
    # compiled loop, and every rounding in it, is the one each caller always had.
    n = x.shape[0]
    cnt = xi.shape[0]
    for k in range(cnt):
        ax[k] = 0.0
        ay[k] = 0.0
        az[k] = 0.0
    for j in range(n):
        xj = x[j]
        yj = y[j]
        zj = z[j]
        mj = m[j]
        for k in range(cnt):
            dx = xj - xi[k]
            dy = yj - yi[k]
            dz = zj - zi[k]
            r2 = dx * dx + dy * dy + dz * dz + eps2
            inv = 1.0 / np.sqrt(r2)
            w = mj * inv * inv * inv
            w = w if r2 > 0.0 else 0.0
            ax[k] += w * dx
            ay[k] += w * dy
            az[k] += w * dz
    for k in range(cnt):
        out[i0 + k, 0] = G * ax[k]
        out[i0 + k, 1] = G * ay[k]
        out[i0 + k, 2] = G * az[k]


@njit(error_model="numpy", boundscheck=False, cache=True)
def _accel_tile(x, y, z, m, G, eps2, i0, i1, out):
    # The tile's targets copied next to their accumulators (contiguous, apart from the
    # source columns the loop streams).
    cnt = i1 - i0
    _tile_forces(x, y, z, m, G, eps2, x[i0:i1].copy(), y[i0:i1].copy(), z[i0:i1].copy(), i0,
                 out, np.empty(cnt), np.empty(cnt), np.empty(cnt))


@njit(error_model="numpy", boundscheck=False, cache=True)
def _potential_tile(x, y, z, m, G, eps2, i0, i1, phi):
    # phi_i = -G sum_{j != i} m_j / sqrt(r^2 + eps^2); the self pair is excluded by index
    # (not by r2 > 0) because with softening it would add a spurious -G m_i / eps.
    n = x.shape[0]
    cnt = i1 - i0
    xi = x[i0:i1].copy()
    yi = y[i0:i1].copy()
    zi = z[i0:i1].copy()
    acc = np.zeros(cnt)
    for j in range(n):
        xj = x[j]
        yj = y[j]
        zj = z[j]
        mj = m[j]
        for k in range(cnt):
            dx = xj - xi[k]
            dy = yj - yi[k]
            dz = zj - zi[k]
            r2 = dx * dx + dy * dy + dz * dz + eps2
            w = mj / np.sqrt(r2)
            w = w if (j != i0 + k and r2 > 0.0) else 0.0
            acc[k] += w
    for k in range(cnt):
        phi[i0 + k] = -G * acc[k]


@njit(parallel=True, boundscheck=False, cache=True)
def _accel_parallel(x, y, z, m, G, eps2, out):
    n = x.shape[0]
    for t in prange((n + TILE - 1) // TILE):
        _accel_tile(x, y, z, m, G, eps2, t * TILE, min(t * TILE + TILE, n), out)


@njit(boundscheck=False, cache=True)
def _accel_serial(x, y, z, m, G, eps2, out):
    n = x.shape[0]
    for t in range((n + TILE - 1) // TILE):
        _accel_tile(x, y, z, m, G, eps2, t * TILE, min(t * TILE + TILE, n), out)


@njit(parallel=True, boundscheck=False, cache=True)
def _potential_parallel(x, y, z, m, G, eps2, phi):
    n = x.shape[0]
    for t in prange((n + TILE - 1) // TILE):
        _potential_tile(x, y, z, m, G, eps2, t * TILE, min(t * TILE + TILE, n), phi)


@njit(boundscheck=False, cache=True)
def _potential_serial(x, y, z, m, G, eps2, phi):
    n = x.shape[0]
    for t in range((n + TILE - 1) // TILE):
        _potential_tile(x, y, z, m, G, eps2, t * TILE, min(t * TILE + TILE, n), phi)


def _columns(positions: F64Array) -> tuple[F64Array, F64Array, F64Array]:
    # Three contiguous columns let the inner loop use plain vector loads (O(n) copy, O(n^2) work).
    return (
        np.ascontiguousarray(positions[:, 0]),
        np.ascontiguousarray(positions[:, 1]),
        np.ascontiguousarray(positions[:, 2]),
    )


def accelerations(positions: F64Array, masses: F64Array, G: float, softening: float) -> F64Array:
    """Softened gravitational accelerations of every body, shape (n, 3)."""
    out = np.empty((positions.shape[0], 3), dtype=np.float64)
    if positions.shape[0] == 0:
        return out
    x, y, z = _columns(positions)
    kernel = _accel_parallel if positions.shape[0] >= PARALLEL_MIN_BODIES else _accel_serial
    kernel(x, y, z, masses, float(G), float(softening) ** 2, out)
    return out


def potentials(positions: F64Array, masses: F64Array, G: float, softening: float) -> F64Array:
    """Softened gravitational potential at every body from all the others, shape (n,)."""
    phi = np.empty(positions.shape[0], dtype=np.float64)
    if positions.shape[0] == 0:
        return phi
    x, y, z = _columns(positions)
    kernel = _potential_parallel if positions.shape[0] >= PARALLEL_MIN_BODIES else _potential_serial
    kernel(x, y, z, masses, float(G), float(softening) ** 2, phi)
    return phi


@njit(error_model="numpy", boundscheck=False, cache=True)
def _accel_tile_into(x, y, z, m, G, eps2, i0, i1, out, ax, ay, az):
    # _accel_tile with the caller's scratch accumulators and the targets read in place
    # instead of fresh arrays per tile (a small world's step is otherwise mostly allocation).
    _tile_forces(x, y, z, m, G, eps2, x[i0:i1], y[i0:i1], z[i0:i1], i0, out, ax, ay, az)


@njit(error_model="numpy", boundscheck=False, cache=True)
def _kdk_steps(pos, vel, acc, m, G, eps2, dt, steps):
    # The whole of ``steps`` kick-drift-kick steps in one compiled call, for small worlds
    # whose step would otherwise be mostly interpreter and numpy-call overhead. Every
    # operation is the one integrator.kick_drift_kick and accelerations() do, in the same
    # order, rounded the same way (no fastmath, so no fused multiply-add): bit-identical.
    # Takes the current state and returns new arrays (a world's arrays are never mutated).
    n = pos.shape[0]
    half = 0.5 * dt
    p = pos.copy()
    v = vel.copy()
    a = acc.copy()
    x = np.empty(n)
    y = np.empty(n)
    z = np.empty(n)
    ax = np.empty(TILE)
    ay = np.empty(TILE)
    az = np.empty(TILE)
    for _ in range(steps):
        for i in range(n):
            for d in range(3):
                vh = v[i, d] + half * a[i, d]
                v[i, d] = vh
                p[i, d] = p[i, d] + dt * vh
            x[i] = p[i, 0]
            y[i] = p[i, 1]
            z[i] = p[i, 2]
        for t in range((n + TILE - 1) // TILE):
            _accel_tile_into(x, y, z, m, G, eps2, t * TILE, min(t * TILE + TILE, n), a,
                             ax, ay, az)
        for i in range(n):
            for d in range(3):
                v[i, d] = v[i, d] + half * a[i, d]
    return p, v, a


def kdk_steps(
    positions: F64Array, velocities: F64Array, accelerations: F64Array, masses: F64Array,
    G: float, softening: float, dt: float, steps: int,
) -> tuple[F64Array, F64Array, F64Array]:
    """``steps`` leapfrog steps with direct-sum forces, serially, in one compiled call.

    The same bits as ``steps`` calls of :func:`.integrator.kick_drift_kick` with
    :func:`accelerations`; for worlds below :data:`PARALLEL_MIN_BODIES`.
    """
    result: tuple[F64Array, F64Array, F64Array] = _kdk_steps(
        positions, velocities, accelerations, masses, float(G), float(softening) ** 2,
        float(dt), int(steps))
    return result
