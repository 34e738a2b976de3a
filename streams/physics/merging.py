"""Perfectly inelastic merging of bodies whose spheres touch.

Contact is ``|x_i - x_j| < r_i + r_j`` (bodies of radius 0 never touch). Touching
is transitive for merging: if A touches B and B touches C, all three become one
body. The merged body

* has the summed mass,
* sits at the mass-weighted mean position and moves with the mass-weighted
  mean velocity (so total mass and momentum are conserved exactly, up to
  rounding; kinetic energy is not, the collision being inelastic),
* has the radius of the summed volume, ``cbrt(sum r^3)``,
* keeps the id and the slot of its **heaviest** member (on equal masses, the
  lowest id): the big body swallows the small one, as a player would expect.

Candidate pairs are found by sweep and prune along x (sort by ``x - r``, scan
forward while the next interval starts before this one ends), O(n log n) for
spread-out bodies.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from .types import F64Array, I64Array


@dataclass(frozen=True)
class Merge:
    """One merger: ``absorbed`` bodies were folded into ``survivor`` at ``tick``."""

    tick: int
    survivor: int
    absorbed: tuple[int, ...]


@njit(cache=True)
def _touching_pairs(pos, radii):
    n = pos.shape[0]
    lo = pos[:, 0] - radii
    order = np.argsort(lo, kind="mergesort")
    first = np.empty(0, dtype=np.int64)
    second = np.empty(0, dtype=np.int64)
    found = 0
    for a in range(n):
        i = order[a]
        ri = radii[i]
        if ri <= 0.0:
            continue
        hi = pos[i, 0] + ri
        for b in range(a + 1, n):
            j = order[b]
            if lo[j] >= hi:
                break
            rs = ri + radii[j]
            dx = pos[j, 0] - pos[i, 0]
            dy = pos[j, 1] - pos[i, 1]
            dz = pos[j, 2] - pos[i, 2]
            if radii[j] > 0.0 and dx * dx + dy * dy + dz * dz < rs * rs:
                if found == first.shape[0]:  # grow geometrically; contacts are rare
                    grown = max(16, 2 * found)
                    f2 = np.empty(grown, dtype=np.int64)
                    s2 = np.empty(grown, dtype=np.int64)
                    f2[:found] = first[:found]
                    s2[:found] = second[:found]
                    first = f2
                    second = s2
                first[found] = min(i, j)
                second[found] = max(i, j)
                found += 1
    return first[:found], second[:found]


def _groups(n: int, first: I64Array, second: I64Array) -> list[list[int]]:
    # Union-find over the contact graph; groups and members come out in index order.
    parent = list(range(n))

    def root(k: int) -> int:
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    for a, b in zip(first.tolist(), second.tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for k in sorted(set(first.tolist()) | set(second.tolist())):
        members.setdefault(root(k), []).append(k)
    return [members[r] for r in sorted(members)]


def merge_touching(
    tick: int,
    ids: I64Array,
    masses: F64Array,
    radii: F64Array,
    positions: F64Array,
    velocities: F64Array,
) -> tuple[list[Merge], tuple[I64Array, F64Array, F64Array, F64Array, F64Array]]:
    """Merge every group of touching bodies; returns the merges and the new arrays.

    When nothing touches, the input arrays are returned unchanged (same objects).
    """
    arrays = (ids, masses, radii, positions, velocities)
    if ids.shape[0] < 2 or not np.any(radii > 0.0):
        return [], arrays
    first, second = _touching_pairs(positions, radii)
    if first.shape[0] == 0:
        return [], arrays
    masses = masses.copy()
    radii = radii.copy()
    positions = positions.copy()
    velocities = velocities.copy()
    keep = np.ones(ids.shape[0], dtype=bool)
    merges: list[Merge] = []
    for group in _groups(ids.shape[0], first, second):
        idx = np.asarray(group, dtype=np.int64)
        # Heaviest wins; on a tie the lowest id (lexsort: last key is primary).
        survivor = int(idx[np.lexsort((ids[idx], -masses[idx]))[0]])
        m = masses[idx]
        total = float(m.sum())
        positions[survivor] = (m[:, None] * positions[idx]).sum(axis=0) / total
        velocities[survivor] = (m[:, None] * velocities[idx]).sum(axis=0) / total
        radii[survivor] = float(np.cbrt((radii[idx] ** 3).sum()))
        masses[survivor] = total
        absorbed = [int(k) for k in idx if k != survivor]
        keep[absorbed] = False
        merges.append(Merge(tick, int(ids[survivor]), tuple(int(ids[k]) for k in absorbed)))
    return merges, (
        ids[keep], masses[keep], radii[keep], positions[keep], velocities[keep],
    )
