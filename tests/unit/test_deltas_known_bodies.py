"""The fast path of DeadReckoner (every body already in the mirror) sends what the general one does."""

from __future__ import annotations

import numpy as np

from streams.physics import plummer_sphere
from streams.worlds.deltas import DeadReckoner
from streams.worlds.outcome import TickOutcome
from streams.worlds.state import WorldState

MIRROR_FIELDS = ("ids", "kinds", "masses", "radii", "positions", "velocities", "sent_at")


def _outcome(changed: tuple[int, ...] = ()) -> TickOutcome:
    return TickOutcome(tick=0, sim_time=0.0, first_command_offset=None, last_command_offset=None,
                       n_applied=0, n_rejected=0, rejections=(), removed_ids=(),
                       changed_ids=changed)


def test_deltas_and_mirrors_match_the_general_path_through_spawns_removals_and_kicks() -> None:
    rng = np.random.default_rng(1)
    state = WorldState.empty("s:w", 0, solver="direct", backend="cpu", softening=0.01, G=1.0)
    ids, m, x, v = plummer_sphere(30, seed=3)
    for i in range(30):  # ids out of sorted order: world order is insertion order
        body = int(ids[i]) * 7 % 101
        state.world.add_body(body, float(m[i]), 1e-3, x[i], v[i])
        state.kinds[body] = i % 3
    fast, general = DeadReckoner(1e-3), DeadReckoner(1e-3)
    sent = quiet = 0
    for t in range(300):
        changed: tuple[int, ...] = ()
        if t % 50 == 17:
            body = 1000 + t
            state.world.add_body(body, 1e-3, 1e-3, rng.normal(size=3), 0.1 * rng.normal(size=3))
            state.kinds[body] = 2
            changed = (body,)
        if t % 70 == 33:
            gone = int(state.world.ids[3])
            state.world.remove_body(gone)
            state.forget_body(gone)
        if t % 90 == 45:
            state.world.apply_impulse(int(state.world.ids[5]), [0.5, 0.0, 0.0])
        state.world.step(0.01)
        got = fast.delta(state, _outcome(changed))
        assert got == general._general_delta(state, _outcome(changed))
        for name in MIRROR_FIELDS:
            assert np.array_equal(getattr(fast.mirror, name), getattr(general.mirror, name)), name
        n = len(got["ids"]) // 8
        sent += n
        quiet += n == 0
    assert sent > 100 and quiet > 0  # both kinds of tick happened: drifted bodies and none
