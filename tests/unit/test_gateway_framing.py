"""The numba frame kernels against the numpy code they replaced, byte for byte.

:class:`~tests.unit.gateway_reference.ReferenceSubscriber` is the old
``Subscriber.frame`` (numpy, protobuf messages). Every scenario here drives
random worlds through the real :class:`WorldFeed` (moves, spawns, removals,
revisions bumped, teleports, bodies that share a position so their priorities
tie, huge ids and speeds) and random clients (spheres and boxes, hysteresis,
budgets from starved to unlimited, both encodings, views that move, clients
that skip ticks), and asserts after every frame that both give the same bytes
and are left holding the same baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from schemas import columnar
from streams.gateway import framing
from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.session import Subscriber
from streams.gateway.world import Area, BoxView, Grid, Tick, View, WorldFeed
from tests.unit.gateway_reference import ReferenceSubscriber

STATE = ("ids", "qpos", "qvel", "sent_at", "revisions", "priority", "deferred", "bytes_sent",
         "_tokens", "last_tick", "sim_time", "_ratio")


class RandomWorld:
    """Bodies through a real WorldFeed; every step a random mix of what worlds do."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        n = int(rng.choice([0, 1, 5, 60, 250]))
        self.spread = float(rng.choice([1.0, 10.0, 1000.0]))
        base = int(rng.choice([1, 1000, 2**40, 2**62]))
        self.ids = np.sort(rng.choice(np.arange(base, base + 10 * n + 10), n, replace=False))
        self.next_id = base + 10 * n + 10
        self.pos = rng.uniform(-self.spread, self.spread, (n, 3))
        self.vel = self._speeds(n)
        self.kinds = rng.integers(0, 4, n).astype(np.uint8)
        self.mass = rng.choice([1e-12, 1.0, 3e30], n)
        self.radii = rng.choice([0.0, 0.01, 5e-7], n)
        if n > 4 and rng.random() < 0.5:  # twins: same place, same motion, tied priorities
            twins = rng.integers(0, n, n // 2)
            self.pos[-len(twins):] = self.pos[twins]
            self.vel[-len(twins):] = self.vel[twins]
        # Fine grids give coordinates of up to 2^34 steps: varints of five bytes and more.
        step = float(rng.choice([1e-10, 1e-4, 1e-3, 0.1]))
        self.grid = Grid(step * self.spread / 10, float(rng.choice([1e-9, 1e-4, 1e-2, 1.0])))
        self.feed = WorldFeed("w", self.grid)
        self.dt = 0.05
        self.t0 = float(rng.choice([0.0, -3.0, 1e6]))
        self.tick = 0

    def _speeds(self, n: int) -> np.ndarray:
        scale = self.rng.choice([0.0, 0.001, 0.3, 30.0], (n, 1)) * self.spread / 10
        return self.rng.normal(0, 1, (n, 3)) * scale

    def step(self) -> Tick:
        rng, n = self.rng, len(self.ids)
        self.tick += 1
        self.pos = self.pos + self.vel * self.dt
        removed = np.empty(0, np.int64)
        if n and rng.random() < 0.3:
            gone = rng.random(n) < rng.choice([0.01, 0.2])
            removed = self.ids[gone]
            self._keep(~gone)
            n = len(self.ids)
        if rng.random() < 0.3:
            k = int(rng.integers(1, 8))
            new_ids = np.arange(self.next_id, self.next_id + k)
            self.next_id += k + int(rng.integers(0, 3))
            self.ids = np.concatenate((self.ids, new_ids))
            self.pos = np.vstack((self.pos, rng.uniform(-self.spread, self.spread, (k, 3))))
            self.vel = np.vstack((self.vel, self._speeds(k)))
            self.kinds = np.concatenate((self.kinds, rng.integers(0, 4, k).astype(np.uint8)))
            self.mass = np.concatenate((self.mass, np.ones(k)))
            self.radii = np.concatenate((self.radii, np.full(k, 0.01)))
            n = len(self.ids)
        if n and rng.random() < 0.3:  # revisions: kind, mass or radius changes
            hit = rng.random(n) < 0.1
            what = rng.integers(3)
            if what == 0:
                self.kinds[hit] = (self.kinds[hit] + 1) % 4
            elif what == 1:
                self.mass[hit] *= 2
            else:
                self.radii[hit] += 0.001
        if n and rng.random() < 0.2:  # teleports and kicks: many grid steps at once
            hit = rng.random(n) < 0.05
            self.pos[hit] = rng.uniform(-self.spread, self.spread, (int(hit.sum()), 3))
            self.vel[hit] *= -3
        send = rng.random(n) < rng.choice([1.0, 1.0, 0.5])  # a delta names changed bodies
        bodies = columnar.Bodies(
            ids=self.ids[send].astype(np.int64), kinds=self.kinds[send],
            masses=self.mass[send], radii=self.radii[send],
            positions=self.pos[send].astype(np.float32),
            velocities=self.vel[send].astype(np.float32))
        sim_time = self.t0 + (self.tick - 1) * self.dt
        record = {"world_id": "w", "tick": self.tick, "sim_time": sim_time,
                  "ts": self.tick * 50, **columnar.delta_fields(bodies, removed)}
        tick = self.feed.apply(record)
        assert tick is not None
        return tick

    def _keep(self, keep: np.ndarray) -> None:
        self.ids, self.pos, self.vel = self.ids[keep], self.pos[keep], self.vel[keep]
        self.kinds, self.mass, self.radii = self.kinds[keep], self.mass[keep], self.radii[keep]

    def view(self) -> Area:
        rng, s = self.rng, self.spread
        if len(self.ids) and rng.random() < 0.5:  # around a body, often at a view's edge
            c = self.pos[rng.integers(len(self.ids))] + rng.normal(0, s / 20, 3)
        else:
            c = rng.uniform(-s, s, 3)
        center = (float(c[0]), float(c[1]), float(c[2]))
        if rng.random() < 0.35:
            half = rng.uniform(0.05, 1.0, 3) * s
            return BoxView(tuple(float(v) for v in c - half),  # type: ignore[arg-type]
                           tuple(float(v) for v in c + half))  # type: ignore[arg-type]
        return View(center, float(rng.choice([0.1, 0.4, 1.0, 3.0])) * s)


@dataclass
class Seen:
    """What the scenarios exercised, so a weakened generator fails loudly."""

    frames: int = 0
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, frame: pb.Frame, ref: ReferenceSubscriber, reentered: bool) -> None:
        self.frames += 1
        for name, hit in (
                ("snapshot", frame.snapshot), ("enter", len(frame.enter.ids) > 0),
                ("leave", len(frame.leave) > 0), ("update", len(frame.update.id_steps) > 0),
                ("predicted", len(frame.update.residuals) > 0),
                ("deltas", len(frame.update.position_deltas) > 0),
                ("deferred", ref.deferred > 0), ("reentered", reentered),
                ("big varint", any(abs(v) >= 2**28 for v in (
                    *frame.enter.positions, *frame.enter.velocities, *frame.update.residuals,
                    *frame.update.position_deltas, *frame.update.velocity_deltas))),
                ("past the log2 table", any(abs(v) >= 4096 for v in frame.update.position_deltas)),
                ("big id", any(i >= 2**35 for i in (*frame.enter.ids, *frame.leave))),
                ("tie", _ties(ref))):
            self.counts[name] = self.counts.get(name, 0) + bool(hit)


def _ties(ref: ReferenceSubscriber) -> bool:
    p = ref.priority[ref.priority > 0]
    return len(np.unique(p)) < len(p)


def _client(world: RandomWorld) -> dict[str, Any]:
    rng = world.rng
    return {"bytes_per_s": float(rng.choice([50.0, 800.0, 3000.0, 40_000.0, 1e12])),
            "hysteresis": float(rng.choice([0.0, 0.05, 0.3])),
            "burst_s": float(rng.choice([0.2, 1.0])), "predicted": bool(rng.random() < 0.5)}


def assert_same_state(sub: Subscriber, ref: ReferenceSubscriber, where: str) -> None:
    for name in STATE:
        mine, theirs = getattr(sub, name), getattr(ref, name)
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype and mine.shape == theirs.shape, (where, name)
            assert np.array_equal(mine, theirs), (where, name)
        else:
            assert mine == theirs, (where, name, mine, theirs)


def run_scenario(seed: int, ticks: int, seen: Seen) -> None:
    rng = np.random.default_rng(seed)
    world = RandomWorld(rng)
    pairs = []
    for _ in range(4):
        view, kwargs = world.view(), _client(world)
        pairs.append((Subscriber(view, **kwargs), ReferenceSubscriber(view, **kwargs)))
    for t in range(ticks):
        tick = world.step()
        for c, (sub, ref) in enumerate(pairs):
            where = f"seed {seed} tick {tick.tick} client {c}"
            if rng.random() < 0.1:
                view = world.view()
                sub.move(view)
                ref.move(view)
            assert sub.due(tick) == ref.due(tick), where
            if rng.random() < 0.25 and t:  # a slow client: this tick is coalesced away
                continue
            held = dict(zip(ref.ids.tolist(), ref.revisions.tolist(), strict=True))
            expected = ref.frame(tick).SerializeToString()
            data = sub.frame_bytes(tick) if c % 2 else sub.frame(tick).SerializeToString()
            assert data == expected, where
            assert_same_state(sub, ref, where)
            frame = pb.Frame.FromString(data)
            reentered = any(i in held for i in frame.enter.ids)
            seen.add(frame, ref, reentered)


def test_kernels_give_the_numpy_frames_byte_for_byte() -> None:
    seen = Seen()
    for seed in range(40):
        run_scenario(seed, 25, seen)
    # Every path the kernels have was taken, many times over.
    assert seen.frames > 2000
    for name in ("snapshot", "enter", "leave", "update", "predicted", "deltas", "deferred",
                 "reentered", "big varint", "past the log2 table", "big id", "tie"):
        assert seen.counts.get(name, 0) >= 5, (name, seen.counts)


@pytest.mark.parametrize("predicted", [False, True], ids=["deltas", "predicted"])
def test_tied_priorities_defer_in_id_order(predicted: bool) -> None:
    """Bodies in one place moving alike have equal priorities; a budget that fits only
    some sends the lowest ids first (a stable sort), in both implementations."""
    n = 40
    ids = np.arange(1, n + 1, dtype=np.int64)
    feed = WorldFeed("w", Grid(1e-3, 1e-3))
    pairs = (Subscriber(View((0.0, 0.0, 0.0), 5.0), bytes_per_s=2000.0, predicted=predicted),
             ReferenceSubscriber(View((0.0, 0.0, 0.0), 5.0), bytes_per_s=2000.0,
                                 predicted=predicted))
    sent = []
    for tick in range(1, 8):
        # Velocity changes every tick, so every body moves off the client's prediction.
        vel = np.tile([[0.1 * tick, -0.2, 0.05 * tick * tick]], (n, 1))
        pos = np.tile([[1.0, 1.0, 1.0]], (n, 1)) + 0.01 * tick
        bodies = columnar.Bodies(ids=ids, kinds=np.full(n, 3, np.uint8), masses=np.ones(n),
                                 radii=np.full(n, 0.01), positions=pos.astype(np.float32),
                                 velocities=vel.astype(np.float32))
        record = {"world_id": "w", "tick": tick, "sim_time": tick * 0.05, "ts": tick * 50,
                  **columnar.delta_fields(bodies)}
        t = feed.apply(record)
        assert t is not None
        data = pairs[0].frame_bytes(t)
        assert data == pairs[1].frame(t).SerializeToString()
        assert_same_state(pairs[0], pairs[1], f"tick {tick}")
        sent.append(np.cumsum(pb.Frame.FromString(data).update.id_steps).tolist())
    partial = [s for s in sent[1:] if 0 < len(s) < n]
    assert partial, sent  # the budget deferred some, so the order among equals mattered
    # Equal priorities go lowest id first: the first partial frame sends a prefix.
    assert partial[0] == list(range(1, len(partial[0]) + 1))


def test_empty_worlds_and_views() -> None:
    """No bodies, then bodies nowhere near the view, then in it: the same frames."""
    feed = WorldFeed("w", Grid(1e-3, 1e-3))
    pairs = [(Subscriber(v, bytes_per_s=1e12, predicted=p), ReferenceSubscriber(
        v, bytes_per_s=1e12, predicted=p)) for v in (View((0.0, 0.0, 0.0), 1.0),
                                                   BoxView((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)))
        for p in (False, True)]
    layouts = [np.empty((0, 3)), np.full((3, 3), 50.0), np.zeros((3, 3)), np.full((3, 3), 50.0)]
    for tick, pos in enumerate(layouts, start=1):
        n = len(pos)
        bodies = columnar.Bodies(ids=np.arange(1, n + 1, dtype=np.int64),
                                 kinds=np.zeros(n, np.uint8), masses=np.ones(n),
                                 radii=np.ones(n), positions=pos.astype(np.float32),
                                 velocities=np.zeros((n, 3), np.float32))
        record = {"world_id": "w", "tick": tick, "sim_time": 0.0, "ts": 0,
                  **columnar.delta_fields(bodies, np.arange(1, 4) if tick == 2 else ())}
        t = feed.apply(record)
        assert t is not None
        for sub, ref in pairs:
            assert sub.frame_bytes(t) == ref.frame(t).SerializeToString()
            assert_same_state(sub, ref, f"tick {tick}")
    assert [len(s.ids) for s, _ in pairs] == [0, 0, 0, 0]


def test_the_log2_table_is_numpys_log2_of_steps() -> None:
    """The weights take log2(1 + steps) from a table where numpy's values allow it: the
    table must be what numpy gives for arrays of steps, wherever they sit in them."""
    table = framing.log2_table()
    rng = np.random.default_rng(5)
    for _ in range(50):
        steps = rng.integers(0, len(table) or 1, int(rng.integers(1, 600)))
        if len(table):
            assert np.array_equal(np.log2(1.0 + steps), table[steps])


def test_square_bound_is_the_sqrt_test_exactly() -> None:
    """A sphere's kernel compares squared distances with :func:`framing.square_bound`;
    that must accept exactly the squares whose sqrt is within the radius, at the edge
    too (the largest accepted square, and the next double up, rejected)."""
    rng = np.random.default_rng(9)
    radii = [*rng.uniform(0, 10, 500), *(10.0 ** rng.uniform(-300, 160, 500)),
             0.0, 1.0, 2.0, 5e-324, float(np.finfo(float).max), float("inf")]
    for r in radii:
        with np.errstate(over="ignore"):
            check_square_bound(r, rng)
    assert framing.square_bound(-1.0) < 0


def check_square_bound(r: float, rng: np.random.Generator) -> None:
    bound = framing.square_bound(r)
    assert np.sqrt(bound) <= r, r
    assert not np.sqrt(np.nextafter(bound, np.inf)) <= r or bound == np.inf, r
    d2 = rng.uniform(0, 2, 200) * bound if np.isfinite(bound) else rng.uniform(0, 1e300, 200)
    assert np.array_equal(d2 <= bound, np.sqrt(d2) <= r), r
