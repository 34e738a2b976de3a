"""The gateway's core without Kafka: deltas in, per-client frames out, replicas rebuilt.

Each test drives a synthetic world through :class:`WorldFeed` (the same
StateDelta columns the physics worker writes) and checks, after every tick,
what a frontend would see: the replica a client rebuilds from its frames.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import columnar
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.errors import InvalidView
from streams.gateway.replica import FrameOutOfOrder, Replica
from streams.gateway.session import Subscriber
from streams.gateway.testing import GRID, TICK_MS, SyntheticWorld
from streams.gateway.world import Area, BoxView, Grid, Tick, View, WorldFeed

UNLIMITED = 1e12
# Subscriber(predicted=...): the DELTAS encoding, and PREDICTED (dead-reckoned residuals).
ENCODINGS = pytest.mark.parametrize("predicted", [False, True], ids=["deltas", "predicted"])


def in_view(tick: Tick, view: Area, held: set[int], hysteresis: float) -> set[int]:
    """The set a client must hold, computed independently of the Subscriber."""
    if isinstance(view, BoxView):
        return in_box(tick, view, held, hysteresis)
    d = np.linalg.norm(tick.positions - np.asarray(view.center), axis=1)
    out = set()
    for body_id, dist in zip(tick.ids.tolist(), d.tolist(), strict=True):
        if dist <= view.radius or (body_id in held and dist <= view.radius * (1 + hysteresis)):
            out.add(body_id)
    return out


def in_box(tick: Tick, box: BoxView, held: set[int], hysteresis: float) -> set[int]:
    out = set()
    for body_id, p in zip(tick.ids.tolist(), tick.positions.tolist(), strict=True):
        inside = all(lo <= x <= hi for x, lo, hi in zip(p, box.low, box.high, strict=True))
        grown = all(lo - (hi - lo) / 2 * hysteresis <= x <= hi + (hi - lo) / 2 * hysteresis
                    for x, lo, hi in zip(p, box.low, box.high, strict=True))
        if inside or (body_id in held and grown):
            out.add(body_id)
    return out


def replica_error(replica: Replica, tick: Tick) -> float:
    ids = replica.ids()
    if not len(ids):
        return 0.0
    truth = tick.positions[np.searchsorted(tick.ids, ids)]
    return float(np.linalg.norm(replica.positions() - truth, axis=1).max())


spheres = st.builds(
    lambda x, y, z, r: View((x, y, z), r),
    st.floats(-8, 8), st.floats(-8, 8), st.floats(-8, 8), st.floats(0.5, 12))
boxes = st.builds(
    lambda c, h: BoxView(tuple(a - b for a, b in zip(c, h, strict=True)),
                         tuple(a + b for a, b in zip(c, h, strict=True))),
    st.tuples(*[st.floats(-8, 8)] * 3), st.tuples(*[st.floats(0.3, 8)] * 3))
views = spheres | boxes


@ENCODINGS
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), first=views, moves=st.lists(views, max_size=3))
def test_replica_equals_the_view_within_the_bound_every_tick(predicted: bool, seed: int,
                                                             first: Area, moves: list[Area]):
    world = SyntheticWorld(seed, n=120)
    sub = Subscriber(first, bytes_per_s=UNLIMITED, hysteresis=0.1, predicted=predicted)
    replica = Replica()
    held: set[int] = set()
    move_at = {10 + 8 * i: v for i, v in enumerate(moves)}
    for t in range(1, 50):
        tick = world.step()
        if t in move_at:
            sub.move(move_at[t])
        frame = sub.frame(tick)
        replica.apply(type(frame).FromString(frame.SerializeToString()))
        expected = in_view(tick, sub.view, held, 0.1)
        assert set(replica.bodies) == expected == set(sub.ids.tolist()), f"tick {t}"
        assert replica_error(replica, tick) <= GRID.position_bound * (1 + 1e-9)
        # Enters and leaves are exactly the change of set.
        assert set(frame.enter.ids) >= expected - held
        assert set(frame.leave) == held - expected
        held = expected


def test_hysteresis_keeps_a_body_on_the_edge():
    world = SyntheticWorld(1, n=1)
    world.vel[:] = 0
    world.pos[:] = [[1.0, 0, 0]]
    sub = Subscriber(View((0.0, 0.0, 0.0), 1.0), bytes_per_s=UNLIMITED, hysteresis=0.1)
    replica = Replica()
    held_at = []
    for x in (0.99, 1.05, 0.99, 1.09, 1.11, 1.05, 0.999):
        world.pos[:] = [[x, 0, 0]]
        replica.apply(sub.frame(world.step(churn=False)))
        held_at.append(bool(replica.bodies))
    # In at 0.99; stays up to 1.1; leaves beyond; re-enters only inside the radius.
    assert held_at == [True, True, True, True, False, False, True]


def test_a_moving_box_takes_bodies_in_and_out_exactly_with_hysteresis_at_its_faces():
    """A box sliding along x over still bodies on a line: each body enters when a face
    reaches it, and leaves only when the box has moved on by hysteresis * half-size."""
    world = SyntheticWorld(11, n=21)
    world.vel[:] = 0
    world.pos = np.zeros((21, 3))
    world.pos[:, 0] = np.arange(21) * 0.5  # bodies at x = 0, 0.5, ... 10
    sub = Subscriber(BoxView((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)), bytes_per_s=UNLIMITED,
                     hysteresis=0.1)  # half-size 1: a face holds 0.1 beyond itself
    replica = Replica()
    replica.apply(sub.frame(world.step(churn=False)))
    assert sorted(replica.bodies) == [1, 2, 3]  # x = 0, 0.5, 1 (on the face)
    seen: list[tuple[set[int], set[int]]] = []
    for k in range(1, 9):
        lo = -1.0 + 0.35 * k
        sub.move(BoxView((lo, -1.0, -1.0), (lo + 2.0, 1.0, 1.0)))
        frame = sub.frame(world.step(churn=False))
        replica.apply(frame)
        seen.append((set(frame.enter.ids), set(frame.leave)))
        x = world.pos[:, 0]
        inside = set(world.ids[(x >= lo) & (x <= lo + 2.0)].tolist())
        assert inside <= set(replica.bodies)
        assert set(replica.bodies) <= set(world.ids[(x >= lo - 0.1) & (x <= lo + 2.1)].tolist())
    # At k=3 the box is [0.05, 2.05]: the body at x=0 is 0.05 behind, held; at k=4
    # ([0.4, 2.4]) it is 0.4 behind, and leaves.
    assert 1 not in seen[2][1] and 1 in seen[3][1]
    # The leading face takes x=2.0 in at k=3 ([.., 2.05]), not at k=2 ([.., 1.7]).
    assert 5 in seen[2][0] and all(5 not in e for e, _ in seen[:2])
    # Stepped back by less than the margin, a body just left behind stays out until
    # the face reaches it again, and one just inside stays in.
    sub.move(BoxView((3.95, -1.0, -1.0), (5.95, 1.0, 1.0)))
    replica.apply(sub.frame(world.step(churn=False)))
    held = set(replica.bodies)
    sub.move(BoxView((4.05, -1.0, -1.0), (6.05, 1.0, 1.0)))  # x=4.0 now 0.05 outside
    replica.apply(sub.frame(world.step(churn=False)))
    assert 9 in held and 9 in replica.bodies  # x = 4.0 held by the margin
    sub.move(BoxView((5.9, -1.0, -1.0), (7.9, 1.0, 1.0)))
    replica.apply(sub.frame(world.step(churn=False)))
    assert sorted(replica.bodies) == [13, 14, 15, 16]  # x = 6 .. 7.5; 5.5 is beyond 5.8


def test_a_box_is_prioritised_by_distance_to_its_centre():
    world = SyntheticWorld(12, n=300)
    direction = world.rng.normal(size=(300, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    world.vel = direction * 0.2
    sub = Subscriber(BoxView((-30.0, -30.0, -30.0), (30.0, 30.0, 30.0)), bytes_per_s=3000.0)
    sub.frame(world.step(churn=False))
    near = np.linalg.norm(world.pos, axis=1) < 8
    far = np.linalg.norm(world.pos, axis=1) > 13
    stale = np.zeros(300)
    for _ in range(150):
        tick = world.step(churn=False)
        sub.frame(tick)
        stale += np.isin(tick.ids, sub.pending(tick))
    assert stale[near].mean() < stale[far].mean() and stale.max() < 150


@pytest.mark.parametrize(("low", "high"), [
    ((0.0, 0.0, 0.0), (1.0, 1.0, 0.0)), ((0.0, 0.0, 0.0), (1.0, -1.0, 1.0)),
    ((math.nan, 0.0, 0.0), (1.0, 1.0, 1.0)), ((0.0, 0.0, 0.0), (1.0, math.inf, 1.0))])
def test_a_box_with_bad_corners_is_refused(low, high):
    with pytest.raises(InvalidView):
        BoxView(low, high)


def test_updates_are_deltas_and_quiet_bodies_cost_nothing():
    world = SyntheticWorld(2, n=50)
    world.vel[:] = 0
    world.vel[0] = [1.0, 0, 0]  # one body moves 0.05 per tick = 50 grid steps
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED)
    snapshot = sub.frame(world.step(churn=False))
    assert snapshot.snapshot and len(snapshot.enter.ids) == 50
    frame = sub.frame(world.step(churn=False))
    assert not frame.snapshot and frame.base_tick == 1 and len(frame.enter.ids) == 0
    assert list(frame.update.id_steps) == [1]
    assert list(frame.update.position_deltas) == [50, 0, 0]
    assert frame.ByteSize() < 40


def test_a_merger_resends_the_body_in_full():
    world = SyntheticWorld(3, n=10)
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED)
    replica = Replica()
    replica.apply(sub.frame(world.step(churn=False)))
    world.mass[4] = 3.0
    frame = sub.frame(world.step(churn=False))
    replica.apply(frame)
    assert list(frame.enter.ids) == [int(world.ids[4])]
    assert replica.bodies[int(world.ids[4])].mass == 3.0


@ENCODINGS
def test_budget_holds_and_no_body_in_view_starves(predicted: bool):
    world = SyntheticWorld(4, n=300)
    budget = 4000.0  # bytes/s: far less than 300 moving bodies at 20 Hz need
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=budget, burst_s=1.0,
                     predicted=predicted)
    replica = Replica()
    first = sub.frame(world.step(churn=False))  # the snapshot: membership is never deferred
    replica.apply(first)
    waiting: dict[int, int] = {}
    longest = 0
    sizes = []
    for _ in range(400):
        tick = world.step(churn=False)
        frame = sub.frame(tick)
        sizes.append(frame.ByteSize())
        replica.apply(frame)
        # The replica is exactly the gateway's baseline for it: nothing lost, nothing invented.
        assert [replica.bodies[i].qpos for i in sub.ids.tolist()] == [
            tuple(q) for q in sub.shown().tolist()]
        pending = set(sub.pending(tick).tolist())
        waiting = {i: waiting.get(i, 0) + 1 for i in pending}
        longest = max(longest, *waiting.values(), 0)
    # Over every second (20 ticks) after the snapshot: within the budget plus one burst.
    per_s = [sum(sizes[i:i + 20]) for i in range(0, len(sizes) - 19)]
    assert max(per_s) <= budget + sub.burst_bytes
    # Over the whole run, the rate converges to the budget.
    assert sum(sizes) / (len(sizes) * TICK_MS / 1000) <= budget * 1.05
    # Priorities accumulate: every body waits a bounded time, however slow it is.
    assert longest < 120


def test_near_and_fast_bodies_go_first_under_a_tight_budget():
    world = SyntheticWorld(5, n=300)
    direction = world.rng.normal(size=(300, 3))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    fast = np.arange(300) % 2 == 0
    world.vel = direction * np.where(fast, 0.4, 0.04)[:, None]  # nobody leaves the view
    sub = Subscriber(View((0.0, 0.0, 0.0), 30.0), bytes_per_s=3000.0)
    sub.frame(world.step(churn=False))
    near = np.linalg.norm(world.pos, axis=1) < 8
    far = np.linalg.norm(world.pos, axis=1) > 13
    stale = np.zeros(300)
    for _ in range(200):
        tick = world.step(churn=False)
        sub.frame(tick)
        assert len(sub.ids) == 300
        stale += np.isin(tick.ids, sub.pending(tick))
    assert stale[near].mean() < stale[far].mean()
    assert stale[fast].mean() < stale[~fast].mean()
    assert stale.max() < 200  # and every body got updates


@ENCODINGS
def test_a_slow_client_gets_one_coalesced_frame(predicted: bool):
    world = SyntheticWorld(6, n=100)
    fast = Subscriber(View((0.0, 0.0, 0.0), 6.0), bytes_per_s=UNLIMITED, predicted=predicted)
    slow = Subscriber(View((0.0, 0.0, 0.0), 6.0), bytes_per_s=UNLIMITED, predicted=predicted)
    r_fast, r_slow = Replica(), Replica()
    tick = world.step()
    r_fast.apply(fast.frame(tick))
    r_slow.apply(slow.frame(tick))
    for _ in range(30):  # the slow client reads nothing for 30 ticks
        tick = world.step()
        r_fast.apply(fast.frame(tick))
    assert slow.due(tick)
    frame = slow.frame(tick)
    assert (frame.base_tick, frame.tick) == (1, 31)
    r_slow.apply(frame)
    assert r_slow.bodies.keys() == r_fast.bodies.keys()
    assert replica_error(r_slow, tick) <= GRID.position_bound * (1 + 1e-9)
    assert not slow.due(tick)


def test_the_grid_bound_is_what_it_says():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1e6, 1e6, (10_000, 3))
    grid = Grid(1e-2, 1e-2)
    shown = grid.positions(x) * grid.position_step
    assert np.linalg.norm(shown - x, axis=1).max() <= grid.position_bound


@pytest.mark.parametrize("radius", [math.nan, -1.0, 0.0, math.inf])
def test_a_view_with_a_bad_radius_is_refused(radius: float):
    with pytest.raises(InvalidView):
        View((0.0, 0.0, 0.0), radius)
    with pytest.raises(InvalidView):
        View((math.nan, 0.0, 0.0), 1.0)


@ENCODINGS
def test_a_replica_refuses_a_frame_that_does_not_follow(predicted: bool):
    world = SyntheticWorld(7, n=20)
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED, predicted=predicted)
    replica = Replica()
    replica.apply(sub.frame(world.step(churn=False)))
    sub.frame(world.step(churn=False))  # lost on the way
    with pytest.raises(FrameOutOfOrder):
        replica.apply(sub.frame(world.step(churn=False)))
    stranger = Replica()
    frame = sub.frame(world.step(churn=False))
    frame.base_tick = 0
    with pytest.raises(FrameOutOfOrder):
        stranger.apply(frame)


def test_a_gateway_started_late_begins_at_the_snapshot_and_skips_older_deltas():
    world = SyntheticWorld(8, n=30)
    for _ in range(5):
        world.step(churn=False)
    n = len(world.ids)
    bodies = columnar.Bodies(ids=world.ids, kinds=np.full(n, 3, np.uint8), masses=world.mass,
                             radii=np.full(n, 0.01), positions=world.pos,
                             velocities=world.vel)
    snapshot = {"world_id": "w", "tick": 5, "sim_time": 5 * TICK_MS / 1000, "ts": 5 * TICK_MS,
                **columnar.pack_bodies(bodies)}
    late = WorldFeed("w", GRID)
    first = late.start_from_snapshot(snapshot)
    assert first.tick == 5 and first.ids.tolist() == world.ids.tolist()
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED)
    replica = Replica()
    replica.apply(sub.frame(first))
    assert replica_error(replica, first) <= GRID.position_bound + 1e-6  # float32 of the feed
    stale = {"world_id": "w", "tick": 4, "sim_time": 0.2, "ts": 4 * TICK_MS,
             **columnar.delta_fields(bodies)}
    assert late.apply(stale) is None  # already in the snapshot
    world.feed = late
    tick = world.step(churn=False)
    replica.apply(sub.frame(tick))
    assert tick.tick == 6 and replica_error(replica, tick) <= GRID.position_bound * (1 + 1e-9)


def test_predicted_updates_leave_out_what_the_client_predicts():
    """A body in uniform motion costs nothing after its snapshot (its dead reckoning is
    exact); one that turns sends only the residual axes, and both stay on the grid."""
    world = SyntheticWorld(2, n=50)
    world.vel[:] = 0
    world.vel[0] = [1.0, 0, 0]  # 0.05 per tick: 50 grid steps, exactly predicted
    world.vel[1] = [0, 0.5, 0]
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED, predicted=True)
    replica = Replica()
    snapshot = sub.frame(world.step(churn=False))
    assert snapshot.encoding == pb.PREDICTED
    replica.apply(snapshot)
    for _ in range(5):
        tick = world.step(churn=False)
        frame = sub.frame(tick)
        replica.apply(frame)
        assert not frame.HasField("update"), "a predictable body was sent"
        assert replica_error(replica, tick) <= GRID.position_bound * (1 + 1e-9)
    world.vel[1] = [0, 0.5, 0.2]  # body 2 turns: its z velocity changes
    tick = world.step(churn=False)
    frame = sub.frame(tick)
    replica.apply(frame)
    # Body 2 (id step 2): velocity z changed by 200 steps; position z by 0.01 = 10 steps.
    assert list(frame.update.id_steps) == [2]
    assert list(frame.update.changed) == [0b100100]
    assert list(frame.update.residuals) == [10, 200]
    assert replica_error(replica, tick) <= GRID.position_bound * (1 + 1e-9)
    assert replica.bodies[2].qvel == (0, 500, 200)


def orbits(n: int, seed: int) -> SyntheticWorld:
    """Bodies on circles about the origin: every velocity changes every tick."""
    world = SyntheticWorld(seed, n=n)
    world.pos[:, 2] = 0
    r = np.linalg.norm(world.pos, axis=1, keepdims=True)
    speed = 2.0 / np.sqrt(r)
    world.vel = np.stack((-world.pos[:, 1], world.pos[:, 0], np.zeros(n)), axis=1) / r * speed
    return world


def curve(world: SyntheticWorld) -> None:
    """Turn every velocity by its tick's share of the circle (the centripetal change)."""
    r = np.linalg.norm(world.pos, axis=1, keepdims=True)
    speed = np.linalg.norm(world.vel, axis=1, keepdims=True)
    world.vel = np.stack((-world.pos[:, 1], world.pos[:, 0], np.zeros(len(r))), axis=1) / r * speed


def test_on_curved_orbits_predicted_frames_are_smaller_and_within_the_bound():
    """The error bound, reconstructed: both encodings, decoded from bytes, show every body
    within position_step * sqrt(3) / 2 of the gateway's position and velocity within
    velocity_step * sqrt(3) / 2, every tick; PREDICTED does it in fewer bytes."""
    sizes = {}
    for predicted in (False, True):
        world = orbits(200, seed=21)
        sub = Subscriber(View((3.0, 0.0, 0.0), 6.0), bytes_per_s=UNLIMITED, predicted=predicted)
        replica = Replica()
        total = 0
        for t in range(60):
            curve(world)
            tick = world.step(churn=False)
            data = sub.frame(tick).SerializeToString()
            replica.apply(pb.Frame.FromString(data))
            total += len(data) if t else 0
            assert replica_error(replica, tick) <= GRID.position_bound * (1 + 1e-9)
            ids = replica.ids()
            qvel = np.array([replica.bodies[i].qvel for i in ids.tolist()]).reshape(-1, 3)
            slot = np.searchsorted(tick.ids, ids)
            assert (qvel == tick.qvelocities[slot]).all(), f"tick {t}: a velocity is stale"
        sizes[predicted] = total
    assert sizes[True] < 0.75 * sizes[False], sizes


@pytest.mark.parametrize("damage", ["mask", "extra", "missing"])
def test_a_replica_refuses_residuals_that_do_not_match_their_masks(damage: str):
    world = SyntheticWorld(9, n=30)
    sub = Subscriber(View((0.0, 0.0, 0.0), 100.0), bytes_per_s=UNLIMITED, predicted=True)
    replica = Replica()
    replica.apply(sub.frame(world.step(churn=False)))
    world.vel += 0.3  # every body turns: every one is updated
    frame = sub.frame(world.step(churn=False))
    assert len(frame.update.changed) > 0
    if damage == "mask":
        frame.update.changed.append(1)
    elif damage == "extra":
        frame.update.residuals.append(1)
    else:
        del frame.update.residuals[-1]
    with pytest.raises(FrameOutOfOrder):
        replica.apply(frame)
