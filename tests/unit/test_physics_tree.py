"""Barnes-Hut against the direct sum, and the tree's corner cases."""

from __future__ import annotations

import numpy as np
import pytest

from streams.physics import World, barnes_hut, direct, octree, plummer_sphere
from streams.physics.backends import AUTO_TREE_MIN_BODIES


def _rms_relative_error(approx: np.ndarray, exact: np.ndarray) -> float:
    err = np.linalg.norm(approx - exact, axis=1) / np.linalg.norm(exact, axis=1)
    return float(np.sqrt(np.mean(err**2)))


@pytest.mark.parametrize("n", [1000, 8192])
def test_barnes_hut_theta_half_within_1pct_rms_of_direct(n: int) -> None:
    _, m, x, _ = plummer_sphere(n, seed=5)
    exact = direct.accelerations(x, m, 1.0, 0.01)
    approx, phi = barnes_hut.forces(x, m, 1.0, 0.01, 0.5)
    assert _rms_relative_error(approx, exact) < 0.01
    phi_exact = direct.potentials(x, m, 1.0, 0.01)
    assert np.max(np.abs(phi / phi_exact - 1.0)) < 1e-3


def test_smaller_theta_is_more_accurate() -> None:
    _, m, x, _ = plummer_sphere(4000, seed=6)
    exact = direct.accelerations(x, m, 1.0, 0.01)
    errors = [
        _rms_relative_error(barnes_hut.forces(x, m, 1.0, 0.01, theta)[0], exact)
        for theta in (0.9, 0.5, 0.2)
    ]
    assert errors[0] > errors[1] > errors[2]


def test_tree_is_exact_when_every_cell_is_opened() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 3))
    m = rng.uniform(1.0, 2.0, 200)
    # theta -> 0 opens everything: the tree degenerates into the direct sum (other order).
    approx, _ = barnes_hut.forces(x, m, 1.0, 0.0, 1e-9)
    np.testing.assert_allclose(approx, direct.accelerations(x, m, 1.0, 0.0), rtol=1e-10)


def test_tree_nodes_partition_the_bodies() -> None:
    _, m, x, _ = plummer_sphere(3000, seed=8)
    tree = octree.build(x, m)
    assert np.array_equal(np.sort(tree.order), np.arange(3000))
    assert len(tree.start) < 2 * 3000
    assert tree.node_mass[0] == pytest.approx(m.sum())
    leaves = tree.first_child < 0
    counts = np.zeros(3000, dtype=int)
    for s, e in zip(tree.start[leaves], tree.end[leaves], strict=True):
        counts[s:e] += 1
    assert np.all(counts == 1)  # every body in exactly one leaf


def test_tree_handles_coincident_bodies_and_a_single_body() -> None:
    x = np.zeros((40, 3))  # all at one point: more than a leaf's worth with one Morton code
    m = np.ones(40)
    acc, _ = barnes_hut.forces(x, m, 1.0, 0.1, 0.5)
    assert np.all(acc == 0.0)
    acc1, phi1 = barnes_hut.forces(np.ones((1, 3)), np.ones(1), 1.0, 0.0, 0.5)
    assert np.all(acc1 == 0.0) and np.all(phi1 == 0.0)


def test_auto_solver_switches_at_the_measured_threshold() -> None:
    small = World.from_arrays(*plummer_sphere(100)[:4], backend="cpu")
    big = World.from_arrays(*plummer_sphere(AUTO_TREE_MIN_BODIES)[:4], backend="cpu")
    assert small.solver == "direct"
    assert big.solver == "tree"
