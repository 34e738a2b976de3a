"""Frames computed once for the clients that hold the same, and right for each.

Each scenario drives a random world (``test_gateway_framing``'s) and groups of
clients that start alike (same view, budget, encoding). Every client is served
through one :class:`SharedFrames` and, beside it, a twin served alone by its own
:class:`Subscriber`; some clients skip ticks or move their view, so they leave
their group's lineage. After every frame the shared client's bytes and baseline
must be its twin's, and the groups must really have shared their work.
"""

from __future__ import annotations

import numpy as np
import pytest

from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.session import SharedFrames, Subscriber
from streams.gateway.world import View
from tests.unit.test_gateway_framing import STATE, RandomWorld, _client


def assert_same(sub: Subscriber, alone: Subscriber, where: str) -> None:
    for name in STATE:
        mine, theirs = getattr(sub, name), getattr(alone, name)
        if isinstance(theirs, np.ndarray):
            assert mine.dtype == theirs.dtype and np.array_equal(mine, theirs), (where, name)
        else:
            assert mine == theirs, (where, name, mine, theirs)


@pytest.mark.parametrize("seed", range(12))
def test_shared_frames_are_what_each_client_would_get_alone(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    world = RandomWorld(rng)
    shared = SharedFrames()
    clients = []
    for _ in range(3):
        view, kwargs = world.view(), _client(world)
        clients += [(Subscriber(view, **kwargs), Subscriber(view, **kwargs)) for _ in range(4)]
    for t in range(30):
        tick = world.step()
        for c, (sub, alone) in enumerate(clients):
            where = f"seed {seed} tick {tick.tick} client {c}"
            if rng.random() < 0.05:
                view = world.view()
                sub.move(view)
                alone.move(view)
            if t and rng.random() < 0.15:  # slow: this tick is coalesced away for it
                continue
            expected = alone.frame_bytes(tick)
            assert shared.frame_bytes(sub, tick) == expected, where
            assert_same(sub, alone, where)
    assert shared.shared > 0 and shared.computed > 0


def test_a_client_behind_its_group_gets_a_frame_against_its_own_baseline() -> None:
    world = RandomWorld(np.random.default_rng(7))
    while len(world.ids) < 60:
        world = RandomWorld(np.random.default_rng(int(world.rng.integers(1 << 30))))
    view = View((0.0, 0.0, 0.0), world.spread)
    shared = SharedFrames()
    a, b = (Subscriber(view, bytes_per_s=1e12) for _ in range(2))
    first = world.step()
    assert shared.frame_bytes(a, first) == shared.frame_bytes(b, first)
    assert (shared.computed, shared.shared) == (1, 1)
    second = world.step()
    shared.frame_bytes(a, second)  # b reads nothing this tick
    third = world.step()
    frame_a = pb.Frame.FromString(shared.frame_bytes(a, third))
    frame_b = pb.Frame.FromString(shared.frame_bytes(b, third))
    assert (frame_a.base_tick, frame_b.base_tick) == (second.tick, first.tick)
    assert shared.computed == 4  # b's frame is against its own, older baseline
    late, alone = (Subscriber(view, bytes_per_s=1e12) for _ in range(2))
    data = shared.frame_bytes(late, third)  # a snapshot, not a's or b's deltas
    assert pb.Frame.FromString(data).snapshot and data == alone.frame_bytes(third)
