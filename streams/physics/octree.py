"""Octree construction for Barnes-Hut: Morton order, compressed nodes, multipole moments.

How the tree is laid out, and why:

* Bodies are sorted along a 63-bit Morton (Z-order) curve, so every tree node
  is a contiguous range ``[start, end)`` of the sorted arrays. No body lists,
  no pointers per body, and walks touch memory in order.
* Nodes are *compressed*: a node sits at the deepest level that still holds
  all of its bodies, so every internal node has at least two children and the
  tree never has more than ``2 n`` nodes, however clustered the bodies are
  (that bound is what keeps a million-body tree inside its memory budget).
* Nodes are numbered breadth first: a node's children are consecutive, parents
  come before children (moments are summed in one reverse pass), and a
  ``skip`` pointer (the node after this subtree) lets walks run without a stack.
* Each node carries mass, centre of mass, the (traceless) quadrupole
  ``Q = sum m (3 d d^T - |d|^2 I)`` about that centre, and its cell width.

Everything here is sequential and deterministic: the same positions always give
the same tree, node for node, bit for bit.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from .types import F64Array, I64Array

MORTON_BITS = 21  # per axis: 3 x 21 = 63 bits of a uint64
LEAF_SIZE = 16  # bodies per leaf: below this, opening a node costs more than summing its bodies


class Octree(NamedTuple):
    order: I64Array  # sorted position -> original body index
    pos: F64Array  # (n, 3) positions in Morton order
    mass: F64Array  # (n,) masses in Morton order
    start: I64Array  # node -> first body (sorted index)
    end: I64Array  # node -> one past the last body
    first_child: I64Array  # node -> first child, -1 for a leaf
    n_children: I64Array
    skip: I64Array  # node -> next node once this subtree is done (-1: walk ends)
    parent: I64Array
    size: F64Array  # cell width
    node_mass: F64Array
    com: F64Array  # (nodes, 3)
    quad: F64Array  # (nodes, 6): xx, xy, xz, yy, yz, zz


@njit(cache=True)
def _spread_bits(v):
    # Spread the low 21 bits of v so that two zero bits follow each one.
    v = v & np.uint64(0x1FFFFF)
    v = (v | (v << np.uint64(32))) & np.uint64(0x1F00000000FFFF)
    v = (v | (v << np.uint64(16))) & np.uint64(0x1F0000FF0000FF)
    v = (v | (v << np.uint64(8))) & np.uint64(0x100F00F00F00F00F)
    v = (v | (v << np.uint64(4))) & np.uint64(0x10C30C30C30C30C3)
    v = (v | (v << np.uint64(2))) & np.uint64(0x1249249249249249)
    return v


@njit(cache=True)
def _morton_codes(pos, lo, box):
    n = pos.shape[0]
    codes = np.empty(n, dtype=np.uint64)
    scale = float(1 << MORTON_BITS) / box
    top = (1 << MORTON_BITS) - 1
    for i in range(n):
        qx = min(max(int((pos[i, 0] - lo[0]) * scale), 0), top)
        qy = min(max(int((pos[i, 1] - lo[1]) * scale), 0), top)
        qz = min(max(int((pos[i, 2] - lo[2]) * scale), 0), top)
        codes[i] = (
            (_spread_bits(np.uint64(qx)) << np.uint64(2))
            | (_spread_bits(np.uint64(qy)) << np.uint64(1))
            | _spread_bits(np.uint64(qz))
        )
    return codes


@njit(cache=True)
def _common_levels(a, b):
    # Number of leading octree levels (3 bits each) two Morton codes share.
    x = a ^ b
    if x == 0:
        return MORTON_BITS
    hb = 62
    while (x >> np.uint64(hb)) & np.uint64(1) == 0:
        hb -= 1
    return MORTON_BITS - 1 - hb // 3


@njit(cache=True)
def _build_nodes(codes, leaf_size):
    n = codes.shape[0]
    cap = 2 * n + 1  # compressed tree: < 2n nodes (see module docstring)
    start = np.empty(cap, dtype=np.int64)
    end = np.empty(cap, dtype=np.int64)
    level = np.empty(cap, dtype=np.int64)
    first_child = np.empty(cap, dtype=np.int64)
    n_children = np.empty(cap, dtype=np.int64)
    parent = np.empty(cap, dtype=np.int64)
    start[0] = 0
    end[0] = n
    level[0] = _common_levels(codes[0], codes[n - 1])
    parent[0] = -1
    count = 1
    p = 0
    while p < count:
        s = start[p]
        e = end[p]
        lv = level[p]
        if e - s <= leaf_size or lv >= MORTON_BITS:
            first_child[p] = -1
            n_children[p] = 0
        else:
            shift = np.uint64(3 * (MORTON_BITS - 1 - lv))
            first_child[p] = count
            kids = 0
            cs = s
            while cs < e:
                octant = (codes[cs] >> shift) & np.uint64(7)
                lo = cs + 1
                hi = e
                while lo < hi:  # first index whose octant is past this one
                    mid = (lo + hi) // 2
                    if ((codes[mid] >> shift) & np.uint64(7)) <= octant:
                        lo = mid + 1
                    else:
                        hi = mid
                start[count] = cs
                end[count] = lo
                level[count] = _common_levels(codes[cs], codes[lo - 1])
                parent[count] = p
                count += 1
                kids += 1
                cs = lo
            n_children[p] = kids
        p += 1
    return (
        start[:count],
        end[:count],
        level[:count],
        first_child[:count],
        n_children[:count],
        parent[:count],
    )


@njit(cache=True)
def _skip_pointers(first_child, n_children):
    m = first_child.shape[0]
    skip = np.empty(m, dtype=np.int64)
    skip[0] = -1
    for p in range(m):
        fc = first_child[p]
        if fc >= 0:
            k = n_children[p]
            for c in range(k):
                skip[fc + c] = fc + c + 1 if c < k - 1 else skip[p]
    return skip


@njit(cache=True)
def _moments(pos, mass, start, end, first_child, n_children):
    m = start.shape[0]
    node_mass = np.empty(m)
    com = np.empty((m, 3))
    quad = np.zeros((m, 6))
    for p in range(m - 1, -1, -1):  # children have larger indices than parents
        fc = first_child[p]
        mt = 0.0
        cx = 0.0
        cy = 0.0
        cz = 0.0
        if fc < 0:
            for j in range(start[p], end[p]):
                mj = mass[j]
                mt += mj
                cx += mj * pos[j, 0]
                cy += mj * pos[j, 1]
                cz += mj * pos[j, 2]
        else:
            for c in range(fc, fc + n_children[p]):
                mc = node_mass[c]
                mt += mc
                cx += mc * com[c, 0]
                cy += mc * com[c, 1]
                cz += mc * com[c, 2]
        cx /= mt
        cy /= mt
        cz /= mt
        node_mass[p] = mt
        com[p, 0] = cx
        com[p, 1] = cy
        com[p, 2] = cz
        qxx = 0.0
        qxy = 0.0
        qxz = 0.0
        qyy = 0.0
        qyz = 0.0
        qzz = 0.0
        if fc < 0:
            for j in range(start[p], end[p]):
                mj = mass[j]
                dx = pos[j, 0] - cx
                dy = pos[j, 1] - cy
                dz = pos[j, 2] - cz
                d2 = dx * dx + dy * dy + dz * dz
                qxx += mj * (3.0 * dx * dx - d2)
                qxy += mj * (3.0 * dx * dy)
                qxz += mj * (3.0 * dx * dz)
                qyy += mj * (3.0 * dy * dy - d2)
                qyz += mj * (3.0 * dy * dz)
                qzz += mj * (3.0 * dz * dz - d2)
        else:
            # Parallel-axis theorem: shift each child's quadrupole to this node's centre.
            for c in range(fc, fc + n_children[p]):
                mc = node_mass[c]
                dx = com[c, 0] - cx
                dy = com[c, 1] - cy
                dz = com[c, 2] - cz
                d2 = dx * dx + dy * dy + dz * dz
                qxx += quad[c, 0] + mc * (3.0 * dx * dx - d2)
                qxy += quad[c, 1] + mc * (3.0 * dx * dy)
                qxz += quad[c, 2] + mc * (3.0 * dx * dz)
                qyy += quad[c, 3] + mc * (3.0 * dy * dy - d2)
                qyz += quad[c, 4] + mc * (3.0 * dy * dz)
                qzz += quad[c, 5] + mc * (3.0 * dz * dz - d2)
        quad[p, 0] = qxx
        quad[p, 1] = qxy
        quad[p, 2] = qxz
        quad[p, 3] = qyy
        quad[p, 4] = qyz
        quad[p, 5] = qzz
    return node_mass, com, quad


def build(positions: F64Array, masses: F64Array, leaf_size: int = LEAF_SIZE) -> Octree:
    """Build the octree of ``positions`` (n >= 1) with multipole moments."""
    lo = positions.min(axis=0)
    extent = float((positions.max(axis=0) - lo).max())
    # Pad the cube a hair so the farthest body quantizes inside it; a point cloud of
    # one location still gets a unit box.
    box = extent * (1.0 + 1e-9) if extent > 0.0 else 1.0
    codes = _morton_codes(positions, lo, box)
    order = np.argsort(codes, kind="stable").astype(np.int64)
    codes = codes[order]
    pos = np.ascontiguousarray(positions[order])
    mass = np.ascontiguousarray(masses[order])
    start, end, level, first_child, n_children, parent = _build_nodes(codes, leaf_size)
    skip = _skip_pointers(first_child, n_children)
    node_mass, com, quad = _moments(pos, mass, start, end, first_child, n_children)
    size = box / np.exp2(level.astype(np.float64))
    return Octree(
        order, pos, mass, start, end, first_child, n_children, skip, parent,
        size, node_mass, com, quad,
    )
