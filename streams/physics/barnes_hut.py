"""Barnes-Hut forces on the CPU: a grouped tree walk with quadrupole cells (numba).

The walk is done per *group* of nearby bodies (a tree node of at most
``GROUP_SIZE`` bodies), not per body (Barnes 1990): one walk decides, for the
whole group, which cells are far enough to use as a multipole and which leaves
must be summed body by body; each accepted term is then applied to all the
group's bodies in a vectorized loop. A cell is accepted when
``size < theta * d`` with ``d`` the distance from its centre of mass to the
*nearest point of the group's bounding box*, so every body in the group sees
the cell at an angle no wider than a per-body walk would accept: the grouping
only ever makes the force more accurate.

Accepted cells contribute monopole + quadrupole terms (softened by replacing
``r^2`` with ``r^2 + eps^2``); opened leaves contribute exact softened pairs.
Each group is handled by one thread and its terms are summed in walk order, so
forces are bit-identical from run to run.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import direct, octree
from .types import F64Array

GROUP_SIZE = 256  # bodies sharing one walk; measured fastest here (and larger groups are more accurate)


@njit(cache=True)
def _groups(start, end, first_child, parent, group_size):
    m = start.shape[0]
    flags = np.zeros(m, dtype=np.bool_)
    for p in range(m):
        small = end[p] - start[p] <= group_size or first_child[p] < 0
        par = parent[p]
        top = par < 0 or (end[par] - start[par] > group_size and first_child[par] >= 0)
        flags[p] = small and top
    return np.nonzero(flags)[0]


@njit(error_model="numpy", boundscheck=False, cache=True)
def _walk_group(pos, mass, start, end, first_child, skip, size, node_mass, com, quad,
                groups, theta2, eps2, acc, phi, work, gi):
    # One group's walk: every term it adds is summed by this call alone, in walk order.
    g = groups[gi]
    gs = start[g]
    ge = end[g]
    cnt = ge - gs
    xi = pos[gs:ge, 0].copy()
    yi = pos[gs:ge, 1].copy()
    zi = pos[gs:ge, 2].copy()
    bx0 = xi.min()
    bx1 = xi.max()
    by0 = yi.min()
    by1 = yi.max()
    bz0 = zi.min()
    bz1 = zi.max()
    ax = np.zeros(cnt)
    ay = np.zeros(cnt)
    az = np.zeros(cnt)
    pot = np.zeros(cnt)
    pairs = 0  # body-cell and body-body terms, for the benchmark's interactions/s
    node = 0
    while node >= 0:
        cx = com[node, 0]
        cy = com[node, 1]
        cz = com[node, 2]
        ddx = max(bx0 - cx, 0.0, cx - bx1)
        ddy = max(by0 - cy, 0.0, cy - by1)
        ddz = max(bz0 - cz, 0.0, cz - bz1)
        d2 = ddx * ddx + ddy * ddy + ddz * ddz
        s = size[node]
        ancestor = start[node] <= gs and ge <= end[node]
        if (not ancestor) and s * s < theta2 * d2:
            mc = node_mass[node]
            qxx = quad[node, 0]
            qxy = quad[node, 1]
            qxz = quad[node, 2]
            qyy = quad[node, 3]
            qyz = quad[node, 4]
            qzz = quad[node, 5]
            for k in range(cnt):
                dx = cx - xi[k]
                dy = cy - yi[k]
                dz = cz - zi[k]
                r2 = dx * dx + dy * dy + dz * dz + eps2
                inv = 1.0 / np.sqrt(r2)
                inv2 = inv * inv
                inv3 = inv * inv2
                inv5 = inv3 * inv2
                qx = qxx * dx + qxy * dy + qxz * dz
                qy = qxy * dx + qyy * dy + qyz * dz
                qz = qxz * dx + qyz * dy + qzz * dz
                dqd = dx * qx + dy * qy + dz * qz
                f = mc * inv3 + 2.5 * dqd * inv5 * inv2
                ax[k] += f * dx - qx * inv5
                ay[k] += f * dy - qy * inv5
                az[k] += f * dz - qz * inv5
                pot[k] += mc * inv + 0.5 * dqd * inv5
            pairs += cnt
            node = skip[node]
        elif first_child[node] < 0:
            for j in range(start[node], end[node]):
                xj = pos[j, 0]
                yj = pos[j, 1]
                zj = pos[j, 2]
                mj = mass[j]
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
                    # The self pair is excluded from the potential by index.
                    pot[k] += mj * inv if (j != gs + k and r2 > 0.0) else 0.0
            pairs += cnt * (end[node] - start[node])
            node = skip[node]
        else:
            node = first_child[node]
    for k in range(cnt):
        acc[gs + k, 0] = ax[k]
        acc[gs + k, 1] = ay[k]
        acc[gs + k, 2] = az[k]
        phi[gs + k] = -pot[k]
    work[gi] = pairs


@njit(parallel=True, boundscheck=False, cache=True)
def _walk_parallel(pos, mass, start, end, first_child, skip, size, node_mass, com, quad,
                   groups, theta2, eps2, acc, phi, work):
    for gi in prange(groups.shape[0]):
        _walk_group(pos, mass, start, end, first_child, skip, size, node_mass, com, quad,
                    groups, theta2, eps2, acc, phi, work, gi)


@njit(boundscheck=False, cache=True)
def _walk_serial(pos, mass, start, end, first_child, skip, size, node_mass, com, quad,
                 groups, theta2, eps2, acc, phi, work):
    for gi in range(groups.shape[0]):
        _walk_group(pos, mass, start, end, first_child, skip, size, node_mass, com, quad,
                    groups, theta2, eps2, acc, phi, work, gi)


def forces(
    positions: F64Array,
    masses: F64Array,
    G: float,
    softening: float,
    theta: float,
    *,
    leaf_size: int = octree.LEAF_SIZE,
    group_size: int = GROUP_SIZE,
) -> tuple[F64Array, F64Array]:
    """Accelerations (n, 3) and potentials (n,) of every body, in the caller's body order."""
    acc, phi, _ = forces_and_work(
        positions, masses, G, softening, theta, leaf_size=leaf_size, group_size=group_size
    )
    return acc, phi


def forces_and_work(
    positions: F64Array,
    masses: F64Array,
    G: float,
    softening: float,
    theta: float,
    *,
    leaf_size: int = octree.LEAF_SIZE,
    group_size: int = GROUP_SIZE,
) -> tuple[F64Array, F64Array, int]:
    """:func:`forces` plus the number of body-cell and body-body terms evaluated."""
    n = positions.shape[0]
    acc = np.empty((n, 3), dtype=np.float64)
    phi = np.empty(n, dtype=np.float64)
    if n == 0:
        return acc, phi, 0
    tree = octree.build(positions, masses, leaf_size)
    groups = _groups(tree.start, tree.end, tree.first_child, tree.parent, group_size)
    acc_sorted = np.empty((n, 3), dtype=np.float64)
    phi_sorted = np.empty(n, dtype=np.float64)
    work = np.empty(groups.shape[0], dtype=np.int64)
    # Serial for small worlds: see direct.PARALLEL_MIN_BODIES (same bits either way).
    walk = _walk_parallel if n >= direct.PARALLEL_MIN_BODIES else _walk_serial
    walk(
        tree.pos, tree.mass, tree.start, tree.end, tree.first_child, tree.skip, tree.size,
        tree.node_mass, tree.com, tree.quad, groups, float(theta) ** 2,
        float(softening) ** 2, acc_sorted, phi_sorted, work,
    )
    # G is applied once here rather than per term: fewer multiplies, same bits every run.
    acc[tree.order] = acc_sorted * G
    phi[tree.order] = phi_sorted * G
    return acc, phi, int(work.sum())
