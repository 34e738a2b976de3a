"""Merging of touching bodies: conservation and the survivor rule."""

from __future__ import annotations

import numpy as np
import pytest

from streams.physics import World
from streams.physics.merging import merge_touching


def test_merge_conserves_mass_and_momentum_and_volume() -> None:
    ids = np.array([10, 20, 30, 40])
    m = np.array([1.0, 3.0, 0.5, 2.0])
    r = np.array([0.1, 0.2, 0.05, 0.1])
    x = np.array([[0.0, 0, 0], [0.25, 0, 0], [0.4, 0, 0], [5.0, 0, 0]])  # 10-20-30 chain
    v = np.array([[1.0, 0, 0], [-1.0, 0.5, 0], [0.0, 0, 2.0], [0.0, 1, 0]])
    merges, (ids2, m2, r2, x2, v2) = merge_touching(7, ids, m, r, x, v)
    assert [(mg.tick, mg.survivor, mg.absorbed) for mg in merges] == [(7, 20, (10, 30))]
    assert list(ids2) == [20, 40]  # the heaviest keeps its id and its slot
    assert m2.sum() == pytest.approx(m.sum(), rel=1e-15)
    np.testing.assert_allclose((m2[:, None] * v2).sum(0), (m[:, None] * v).sum(0), rtol=1e-14)
    np.testing.assert_allclose((m2[:, None] * x2).sum(0), (m[:, None] * x).sum(0), rtol=1e-14)
    assert r2[0] ** 3 == pytest.approx(0.1**3 + 0.2**3 + 0.05**3)


def test_equal_masses_keep_the_lower_id() -> None:
    ids = np.array([9, 4])
    one = np.ones(2)
    x = np.array([[0.0, 0, 0], [0.1, 0, 0]])
    merges, (ids2, *_rest) = merge_touching(1, ids, one, one, x, np.zeros((2, 3)))
    assert merges[0].survivor == 4 and list(ids2) == [4]


def test_nothing_touching_returns_the_same_arrays() -> None:
    ids = np.array([1, 2])
    m = np.ones(2)
    r = np.array([0.1, 0.1])
    x = np.array([[0.0, 0, 0], [0.3, 0, 0]])
    v = np.zeros((2, 3))
    merges, arrays = merge_touching(0, ids, m, r, x, v)
    assert merges == [] and arrays[0] is ids


def test_world_merges_a_head_on_collision_and_conserves_momentum() -> None:
    ids = [1, 2, 3]
    m = [2.0, 1.0, 0.001]
    x = [[-1.0, 0, 0], [1.0, 0, 0], [0.0, 50.0, 0]]
    v = [[0.5, 0.02, 0], [-0.5, 0, 0.03], [0, 0, 0]]
    world = World.from_arrays(
        ids, m, x, v, radii=[0.1, 0.1, 0.0], G=0.01, merge_on_contact=True, backend="cpu"
    )
    p0 = world.momentum()
    mass0 = world.masses.sum()
    merges = world.step(0.01, steps=400)
    assert [(mg.survivor, mg.absorbed) for mg in merges] == [(1, (2,))]
    assert list(world.ids) == [1, 3]
    assert world.masses.sum() == pytest.approx(mass0, rel=1e-15)
    np.testing.assert_allclose(world.momentum(), p0, rtol=1e-12, atol=1e-15)


def test_merging_off_lets_bodies_pass() -> None:
    world = World.from_arrays(
        [1, 2], [1.0, 1.0], [[-1.0, 0, 0], [1.0, 0, 0]], [[1.0, 0, 0], [-1.0, 0, 0]],
        radii=[0.5, 0.5], softening=0.1, backend="cpu",
    )
    assert world.step(0.01, steps=100) == []
    assert len(world) == 2
