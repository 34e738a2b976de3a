"""Synthetic players against real Kafka and a physics worker: two runs on one world.

The second run plays a world the first one changed (asteroids removed, new ones
spawned); players that act on what they see are refused about as often as they
mean to be, not on most commands as players aiming at imagined ids were.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest

from cosmic import topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.players import SyntheticPlayers
from streams.worlds.eventlog import KafkaLog, raw_messages
from streams.worlds.worker import PhysicsWorker, WorkerConfig, build_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

INVALID_EVERY = 10
RUN_S = 12.0


def _play(settings: Settings, registry: RegistryClient, world: str, seed: int,
          worker: PhysicsWorker) -> SyntheticPlayers:
    players = SyntheticPlayers(settings, (world,), rate_hz=20.0, seed=seed, registry=registry,
                               life_delay_s=3600.0, invalid_every=INVALID_EVERY, asteroids=20)
    players.start()
    deadline = time.monotonic() + RUN_S
    while time.monotonic() < deadline:
        assert players.failure() is None, players.failure()
        assert worker.failure() is None, worker.failure()
        time.sleep(0.2)
    players.stop()
    assert players.failure() is None, players.failure()
    return players


def _last_command(settings: Settings, world: str, partition: int, start: int) -> int:
    key = world.encode()
    last = -1
    for msg in raw_messages(settings, topics.COMMANDS.name, partition, start):
        if msg.key() == key:
            last = msg.offset() or 0
    assert last >= start, "the players sent nothing"
    return last


def _wait_consumed(worker: PhysicsWorker, world: str, offset: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        live = worker.worlds.get(world)
        done = live is not None and (live.state.last_command_offset or -1) >= offset
        if done:
            return
        assert worker.failure() is None, worker.failure()
        assert time.monotonic() < deadline, f"the worker did not reach command {offset}"
        time.sleep(0.1)


def _rejections(settings: Settings, registry: RegistryClient, world: str,
                partition: int) -> list[dict[str, Any]]:
    key, decode = world.encode(), AvroDeserializer(registry)
    ctx = SerializationContext(topics.COMMANDS_REJECTED.name)
    return [decode(msg.value(), ctx)
            for msg in raw_messages(settings, topics.COMMANDS_REJECTED.name, partition)
            if msg.key() == key]


def test_a_second_run_is_refused_about_as_often_as_it_means_to_be(settings: Settings,
                                                                   stack: Stack) -> None:
    run = uuid.uuid4().hex[:10]
    world = f"test-players-{run}:world"
    registry = RegistryClient.from_settings(settings)
    partition = KafkaLog(settings, registry).world_partition(world)
    worker = build_worker(settings, WorkerConfig(worker_id=f"players-{run}",
                                                 shard=f"test-players-{run}"), registry)
    worker.start()
    try:
        first = _play(settings, registry, world, seed=1, worker=worker)
        boundary = _last_command(settings, world, partition, 0) + 1
        _wait_consumed(worker, world, boundary - 1, 30)
        second = _play(settings, registry, world, seed=2, worker=worker)
        _wait_consumed(worker, world, _last_command(settings, world, partition, boundary), 30)
        time.sleep(0.5)  # the transaction of the tick that consumed the last one commits
        refused = _rejections(settings, registry, world, partition)
    finally:
        worker.stop()
        registry.close()
    assert worker.failure() is None

    runs = [[r for r in refused if r["command_offset"] < boundary],
            [r for r in refused if r["command_offset"] >= boundary]]
    shares = [len(r) / p.sent for r, p in zip(runs, (first, second), strict=True)]
    reasons = [Counter(r["reason"] for r in rs) for rs in runs]
    print(f"refused: first run {len(runs[0])}/{first.sent} ({shares[0]:.1%}) {dict(reasons[0])}, "
          f"second run {len(runs[1])}/{second.sent} ({shares[1]:.1%}) {dict(reasons[1])}; "
          f"deliberate {first.invalid} and {second.invalid}")
    # The second run did not reopen the world: no opening body was spawned again.
    assert "DUPLICATE_ID" not in reasons[1]
    assert second.sent > 100 and second.invalid == second.sent // INVALID_EVERY
    assert (f"{second.sent} by players, {second.invalid} of those deliberately invalid "
            f"({second.invalid / second.sent:.1%})") in second.progress()
    for rs, players in zip(runs, (first, second), strict=True):
        # Every deliberate one was refused; races with the world add at most as many again.
        assert players.invalid <= len(rs) < 2 * players.invalid
