"""Bad input raises typed errors whose reason codes the worker puts in CommandRejected."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cosmic.errors import CosmicError
from streams.physics import (
    DuplicateBody,
    InvalidBody,
    InvalidParams,
    PhysicsError,
    UnknownBody,
    World,
)


def _world() -> World:
    return World.from_arrays(
        [1, 2], [1.0, 2.0], [[0.0, 0, 0], [1.0, 0, 0]], np.zeros((2, 3)), backend="cpu"
    )


def test_errors_share_the_platform_root() -> None:
    assert issubclass(PhysicsError, CosmicError)
    for cls in (InvalidBody, DuplicateBody, UnknownBody, InvalidParams):
        assert issubclass(cls, PhysicsError)


@pytest.mark.parametrize(
    ("kwargs", "error", "reason"),
    [
        ({"masses": [1.0, math.nan]}, InvalidBody, "non_finite"),
        ({"positions": [[0.0, 0, math.inf], [1.0, 0, 0]]}, InvalidBody, "non_finite"),
        ({"masses": [1.0, 0.0]}, InvalidBody, "non_positive_mass"),
        ({"masses": [1.0, -3.0]}, InvalidBody, "non_positive_mass"),
        ({"ids": [5, 5]}, DuplicateBody, "duplicate_body"),
        ({"ids": [1.5, 2.0]}, InvalidBody, "bad_id"),
        ({"positions": [[0.0, 0], [1.0, 0]]}, InvalidBody, "bad_shape"),
        ({"radii": [0.1, -0.1]}, InvalidBody, "negative_radius"),
    ],
)
def test_from_arrays_rejects_bad_bodies(
    kwargs: dict, error: type[PhysicsError], reason: str
) -> None:
    args = {
        "ids": [1, 2],
        "masses": [1.0, 1.0],
        "positions": [[0.0, 0, 0], [1.0, 0, 0]],
        "velocities": np.zeros((2, 3)),
    } | kwargs
    with pytest.raises(error) as info:
        World.from_arrays(**args, backend="cpu")
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "kwargs",
    [{"G": 0.0}, {"G": math.nan}, {"softening": -1.0}, {"theta": 0.0}, {"theta": 2.0},
     {"solver": "fmm"}, {"backend": "tpu"}],
)
def test_bad_params_raise_invalid_params(kwargs: dict) -> None:
    with pytest.raises(InvalidParams) as info:
        World.from_arrays([1], [1.0], [[0.0, 0, 0]], [[0.0, 0, 0]], **kwargs)
    assert info.value.reason == "invalid_param"


def test_commands_on_unknown_bodies_raise_unknown_body() -> None:
    world = _world()
    for call in (lambda: world.remove_body(99), lambda: world.apply_impulse(99, [1.0, 0, 0])):
        with pytest.raises(UnknownBody) as info:
            call()
        assert info.value.reason == "unknown_body" and info.value.body_id == 99


def test_rejected_commands_leave_the_world_unchanged() -> None:
    world = _world()
    before = world.state_hash()
    with pytest.raises(DuplicateBody):
        world.add_body(2, 1.0, 0.0, [3.0, 0, 0], [0.0, 0, 0])
    with pytest.raises(InvalidBody) as info:
        world.add_body(3, 1.0, 0.0, [math.nan, 0, 0], [0.0, 0, 0])
    assert info.value.reason == "non_finite"
    with pytest.raises(InvalidBody):
        world.apply_impulse(1, [0.0, math.inf, 0])
    with pytest.raises(InvalidParams):
        world.set_params(theta=-1.0)
    with pytest.raises(InvalidParams) as step_info:
        world.step(math.nan)
    assert step_info.value.reason == "invalid_step"
    assert world.state_hash() == before


def test_add_and_remove_keep_insertion_order() -> None:
    world = _world()
    world.add_body(7, 0.5, 0.1, [0.0, 3.0, 0], [0.0, 0, 0])
    world.remove_body(1)
    assert list(world.ids) == [2, 7]
    assert list(world.masses) == [2.0, 0.5]
    assert 7 in world and 1 not in world


@pytest.mark.parametrize("solver", ["direct", "tree"])
def test_empty_and_single_body_worlds_step_and_grow(solver: str) -> None:
    world = World.from_arrays(
        np.empty(0, dtype=np.int64), np.empty(0), np.empty((0, 3)), np.empty((0, 3)),
        solver=solver, backend="cpu",
    )
    world.step(0.1, steps=2)
    assert world.tick == 2 and world.total_energy() == 0.0
    world.add_body(1, 1.0, 0.0, [0.0, 0, 0], [1.0, 0, 0])
    world.step(0.5)
    np.testing.assert_array_equal(world.positions, [[0.5, 0.0, 0.0]])  # no self-force
    world.add_body(2, 1.0, 0.0, [1.0, 0, 0], [0.0, 0, 0])
    world.step(0.01)
    assert world.velocities[1, 0] < 0.0  # pulled toward body 1
