"""The one-call step of small worlds (direct.kdk_steps) gives the per-step loop's exact bits."""

from __future__ import annotations

import numpy as np
import pytest

from streams.physics import World, plummer_sphere


def _run(world: World) -> World:
    # Batched and single steps, a change of dt, and the edits a tick's commands make.
    world.step(1e-3, steps=17)
    world.step(2e-3)
    world.apply_impulse(int(world.ids[0]), [0.25, 0.0, -0.5])
    world.step(1e-3, steps=3)
    world.add_body(10_000, 1e-3, 1e-3, [0.5, 0.5, 0.5], [0.0, 0.1, 0.0])
    world.step(1e-3, steps=5)
    world.remove_body(int(world.ids[1]))
    world.step(1e-3, steps=4)
    return world


@pytest.mark.parametrize("n", [2, 10, 20, 63, 64, 65, 100, 300])
@pytest.mark.parametrize("softening", [0.0, 0.01])
def test_the_fused_step_is_bit_identical_to_the_per_step_loop(
        n: int, softening: float, monkeypatch: pytest.MonkeyPatch) -> None:
    ids, m, x, v = plummer_sphere(n, seed=n)
    fused = World.from_arrays(ids, m, x, v, softening=softening, solver="direct", backend="cpu")
    assert fused._fused(1)  # the path under test is the one these worlds take
    loop = fused.copy()
    _run(fused)
    monkeypatch.setattr(World, "_fused", lambda self, steps: False)
    _run(loop)
    assert (fused.tick, fused.time) == (loop.tick, loop.time)
    assert fused.state_hash() == loop.state_hash()
    assert np.array_equal(fused._acc, loop._acc)  # the cached forces carry over too


def test_views_taken_before_a_fused_step_keep_their_tick() -> None:
    ids, m, x, v = plummer_sphere(10, seed=1)
    world = World.from_arrays(ids, m, x, v, softening=0.01, solver="direct", backend="cpu")
    before = world.positions.copy()
    view = world.positions
    world.step(1e-2, steps=3)
    assert np.array_equal(view, before)
    assert not np.array_equal(world.positions, before)


def test_merging_worlds_and_the_tree_take_the_loop() -> None:
    ids, m, x, v = plummer_sphere(10, seed=1)
    merging = World.from_arrays(ids, m, x, v, solver="direct", backend="cpu",
                                merge_on_contact=True)
    tree = World.from_arrays(ids, m, x, v, solver="tree", backend="cpu")
    assert not merging._fused(1) and not tree._fused(1)
