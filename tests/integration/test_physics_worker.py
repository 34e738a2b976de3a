"""The physics worker against real Kafka: exactly-once ticks across a SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import dlq
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.worlds import scenario
from streams.worlds.commands import NOT_PHYSICS
from streams.worlds.eventlog import KafkaLog
from streams.worlds.recovery import read_commands, replay
from streams.worlds.state import WorldState
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class TickWatcher:
    """Collects committed ticks and rejections of one world from the moment it is created."""

    def __init__(self, settings: Settings, registry: RegistryClient, world: str) -> None:
        self.world = world
        self.ticks: list[dict] = []
        self.rejections: list[dict] = []
        self._decode = AvroDeserializer(registry)
        self._consumer = kafka.consumer(settings, f"watch-{uuid.uuid4().hex}")
        parts = []
        for topic in (topics.PHYSICS_TICKS, topics.COMMANDS_REJECTED):
            # Ends pinned now: OFFSET_END would resolve at the first fetch, maybe after
            # the world's first ticks.
            parts += [TopicPartition(topic.name, p, kafka.high_watermark(
                self._consumer, TopicPartition(topic.name, p))) for p in range(topic.partitions)]
        self._consumer.assign(parts)

    def poll(self) -> None:
        for msg in self._consumer.consume(1000, timeout=0.2):
            assert msg.error() is None
            if msg.key() != self.world.encode():
                continue
            rec = self._decode(msg.value(), SerializationContext(msg.topic()))
            (self.ticks if msg.topic() == topics.PHYSICS_TICKS.name else self.rejections).append(rec)

    def wait_for(self, n_ticks: int, timeout_s: float, worker: subprocess.Popen[bytes],
                 log: Path) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.ticks) < n_ticks:
            assert worker.poll() is None, f"worker exited: {log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"only {len(self.ticks)} ticks after {timeout_s}s"
            self.poll()

    def close(self) -> None:
        self._consumer.close()


def test_sigkill_mid_run_loses_and_duplicates_no_tick(settings: Settings, stack: Stack,
                                                      tmp_path: Path):
    run = uuid.uuid4().hex[:10]
    shard = f"test-kill-{run}"
    world = f"{shard}:world"
    registry = RegistryClient.from_settings(settings)
    watcher = TickWatcher(settings, registry, world)
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=20, tick_rate_hz=40.0, snapshot_every=20)
    live.send(b"definitely not avro")
    live.play(rate_hz=15, seed=11, asteroids=20, invalid_every=5)
    log = tmp_path / "worker.log"
    worker = start_worker(f"kill-{run}", shard, log)
    try:
        watcher.wait_for(60, 120, worker, log)
        worker.send_signal(signal.SIGKILL)
        worker.wait(30)
        killed_at = len(watcher.ticks)
        time.sleep(1.0)  # commands keep arriving while no worker runs
        worker = start_worker(f"kill-{run}", shard, log)
        watcher.wait_for(killed_at + 100, 120, worker, log)
    finally:
        live.stop()
        stop_worker(worker)
    time.sleep(0.5)
    watcher.poll()
    watcher.close()

    ticks = sorted(watcher.ticks, key=lambda r: r["tick"])
    numbers = [t["tick"] for t in watcher.ticks]
    # Committed ticks only (read_committed), each exactly once, no gap: 1, 2, ..., n.
    assert numbers == list(range(1, len(numbers) + 1)), log.read_text()[-3000:]
    assert len(numbers) >= killed_at + 100

    # The hashes equal an uninterrupted run over the same commands: rebuild the world
    # from nothing, applying each recorded tick's commands, and compare every hash.
    partition = next(t["command_partition"] for t in ticks if t["command_partition"] is not None)
    commands = read_commands(KafkaLog(settings, registry), partition, ticks, world)
    reference = WorldState.empty(world, partition)
    assert replay(reference, ticks, commands, verify=True) == len(ticks)
    assert reference.state_hash() == ticks[-1]["state_hash"]

    # Every command the players sent before the end was consumed exactly once.
    applied = sum(t["n_applied"] for t in ticks)
    rejected = sum(t["n_rejected"] for t in ticks)
    assert rejected == len(watcher.rejections) > 0
    assert {r["reason"] for r in watcher.rejections} <= {"UNKNOWN_BODY", "INVALID_ARGUMENT",
                                                         "DUPLICATE_ID", "OUT_OF_BOUNDS"}
    assert applied + rejected == sum(
        1 for c in commands.values() if not isinstance(c.command, NOT_PHYSICS))

    # The garbage record went to the dead-letter queue, with its reason.
    dead = kafka.consumer(settings, f"dlq-{run}")
    dead.assign([TopicPartition(topics.DLQ.name, p, 0) for p in range(topics.DLQ.partitions)])
    found = []
    deadline = time.monotonic() + 30
    while not found and time.monotonic() < deadline:
        for msg in dead.consume(1000, timeout=0.5):
            if msg.value() == b"definitely not avro" and msg.key() == world.encode():
                found.append(dict(msg.headers() or []))
    dead.close()
    assert found, "garbage command not dead-lettered"
    assert found[0][dlq.SOURCE_TOPIC] == topics.COMMANDS.name.encode()
    assert found[0][dlq.ERROR_TYPE] == b"UnknownMagicByte"
    assert b"magic byte" in found[0][dlq.ERROR_MESSAGE]
    registry.close()


def test_a_fenced_zombie_cannot_write(settings: Settings, stack: Stack, tmp_path: Path):
    """A worker frozen mid-run (alive, holding its producer and group membership) is
    replaced by a new incarnation; when it wakes up it is fenced and writes nothing."""
    run = uuid.uuid4().hex[:10]
    shard = f"test-zombie-{run}"
    world = f"{shard}:world"
    registry = RegistryClient.from_settings(settings)
    watcher = TickWatcher(settings, registry, world)
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=20, tick_rate_hz=40.0, snapshot_every=20)
    live.play(rate_hz=15, seed=12, asteroids=20, invalid_every=0)
    log_a, log_b = tmp_path / "zombie.log", tmp_path / "successor.log"
    zombie = start_worker(f"zombie-{run}", shard, log_a)
    successor = None
    try:
        watcher.wait_for(40, 120, zombie, log_a)
        zombie.send_signal(signal.SIGSTOP)
        frozen_at = len(watcher.ticks)
        successor = start_worker(f"zombie-{run}", shard, log_b)
        watcher.wait_for(frozen_at + 60, 120, successor, log_b)
        zombie.send_signal(signal.SIGCONT)
        code = zombie.wait(60)
        assert code != 0, "the zombie went on as if nothing happened"
        assert "fenced" in log_a.read_text().lower(), log_a.read_text()[-2000:]
        more = len(watcher.ticks)
        watcher.wait_for(more + 40, 120, successor, log_b)
    finally:
        live.stop()
        zombie.send_signal(signal.SIGCONT)
        stop_worker(zombie)
        if successor is not None:
            stop_worker(successor)
    watcher.poll()
    watcher.close()
    numbers = [t["tick"] for t in watcher.ticks]
    assert numbers == list(range(1, len(numbers) + 1))
    ticks = sorted(watcher.ticks, key=lambda r: r["tick"])
    partition = next(t["command_partition"] for t in ticks if t["command_partition"] is not None)
    commands = read_commands(KafkaLog(settings, registry), partition, ticks, world)
    assert replay(WorldState.empty(world, partition), ticks, commands, verify=True) == len(ticks)
    registry.close()


def test_a_killed_worker_computes_what_an_uninterrupted_one_computes(settings: Settings,
                                                                   stack: Stack, tmp_path: Path):
    """The same command log for two worlds, each in its own shard: one worker is SIGKILLed
    twice on the way, the other runs through. In lockstep (one tick per command) the hash
    sequence is a function of the log alone, so the two must agree tick for tick."""
    run = uuid.uuid4().hex[:10]
    shards = {"killed": f"test-lock-k-{run}", "reference": f"test-lock-r-{run}"}
    worlds = {role: f"{shard}:world" for role, shard in shards.items()}
    registry = RegistryClient.from_settings(settings)
    watchers = {role: TickWatcher(settings, registry, w) for role, w in worlds.items()}
    n_play = 300
    for world in worlds.values():
        live = LiveWorld(settings, registry, world)
        live.open(asteroids=20, tick_rate_hz=40.0, snapshot_every=25)
        stream = scenario.player_commands(world, seed=17, asteroids=20, invalid_every=9)
        for _ in range(n_play):
            live.send(next(stream))
        assert live.producer.flush(30) == 0
    total = len(scenario.star_system("w", asteroids=20)) + n_play
    logs = {role: tmp_path / f"{role}.log" for role in shards}
    workers = {role: start_worker(f"lock-{role}-{run}", shard, logs[role], "--lockstep")
               for role, shard in shards.items()}
    try:
        for kill_at in (80, 190):
            watchers["killed"].wait_for(kill_at, 120, workers["killed"], logs["killed"])
            workers["killed"].send_signal(signal.SIGKILL)
            workers["killed"].wait(30)
            workers["killed"] = start_worker(f"lock-killed-{run}", shards["killed"],
                                             logs["killed"], "--lockstep")
        for role, watcher in watchers.items():
            watcher.wait_for(total, 180, workers[role], logs[role])
        time.sleep(1.0)
    finally:
        for worker in workers.values():
            stop_worker(worker)
    hashes = {}
    for role, watcher in watchers.items():
        watcher.poll()
        watcher.close()
        numbers = [t["tick"] for t in watcher.ticks]
        assert numbers == list(range(1, total + 1)), (role, numbers[-5:])  # none lost, none twice
        hashes[role] = [t["state_hash"] for t in sorted(watcher.ticks, key=lambda t: t["tick"])]
    first_diff = next((i + 1 for i, (a, b) in enumerate(
        zip(hashes["killed"], hashes["reference"], strict=True)) if a != b), None)
    assert first_diff is None, f"the killed run diverged from the reference at tick {first_diff}"
    assert len(set(hashes["reference"])) == total  # every tick changed the world
    registry.close()
