"""Test helpers for many physics workers sharing one shard: its worlds, their players, the
workers as processes (real kills), and what the log recorded (committed ticks, pauses)."""

from __future__ import annotations

import contextlib
import itertools
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.worlds import scenario
from tests.liveworld import CommandSender

Record = dict[str, Any]


def world_names(shard: str, n: int) -> list[str]:
    """``n`` world ids of ``shard``, spread evenly over the command topic's partitions."""
    parts = topics.COMMANDS.partitions
    by_partition: dict[int, list[str]] = {p: [] for p in range(parts)}
    for k in itertools.count():
        world = f"{shard}:w{k:03d}"
        home = kafka.home_partition(world, parts)
        if len(by_partition[home]) < -(-n // parts):
            by_partition[home].append(world)
        if sum(map(len, by_partition.values())) == n:
            break
    return sorted(w for ws in by_partition.values() for w in ws)


class Commands:
    """Signed commands to many worlds through one producer: each world's opening, then
    players (round robin over the worlds) at a steady total rate in a background thread."""

    def __init__(self, settings: Settings, registry: RegistryClient, worlds: list[str], *,
                 asteroids: int) -> None:
        self.worlds = worlds
        self.asteroids = asteroids
        self.out = CommandSender(settings, registry)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def sent(self) -> int:
        return self.out.sent

    def send(self, world: str, record: Record) -> None:
        self.out.send(world, record)

    def open(self, *, tick_rate_hz: float, snapshot_every: int) -> None:
        for world in self.worlds:
            self.out.send_opening(world, asteroids=self.asteroids, tick_rate_hz=tick_rate_hz,
                                  snapshot_every=snapshot_every)
        self.out.flush()

    def play(self, *, rate_hz: float, invalid_every: int = 10) -> None:
        streams = [scenario.player_commands(w, seed=100 + i, asteroids=self.asteroids,
                                            invalid_every=invalid_every)
                   for i, w in enumerate(self.worlds)]

        def run() -> None:
            period = 1.0 / rate_hz
            due = time.monotonic()
            for world, stream in itertools.cycle(zip(self.worlds, streams, strict=True)):
                if self._stop.is_set():
                    break
                self.send(world, next(stream))
                due += period
                self._stop.wait(max(0.0, due - time.monotonic()))
            self.out.producer.flush(30)

        self._thread = threading.Thread(target=run, name="players", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


@dataclass
class Member:
    worker_id: str
    proc: subprocess.Popen[bytes]
    log: Path


class Fleet:
    """Physics workers of one shard, each `cosmic physics worker` in its own process."""

    def __init__(self, shard: str, log_dir: Path, *extra: str) -> None:
        self.shard = shard
        self.log_dir = log_dir
        self.extra = extra
        self.members: dict[str, Member] = {}

    def start(self, worker_id: str) -> None:
        log = self.log_dir / f"{worker_id}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cosmic_app", "physics", "worker", "--worker-id",
                 worker_id, "--shard", self.shard, *self.extra],
                stdout=out, stderr=subprocess.STDOUT)
        self.members[worker_id] = Member(worker_id, proc, log)

    def leave(self, worker_id: str, timeout_s: float = 60.0) -> int:
        """A clean stop (SIGTERM, as an orchestrator sends): the worker hands over and exits."""
        member = self.members.pop(worker_id)
        member.proc.send_signal(signal.SIGTERM)
        try:
            return member.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            member.proc.kill()
            member.proc.wait()
            raise AssertionError(f"{worker_id} did not stop in {timeout_s}s: "
                                 f"{member.log.read_text()[-3000:]}") from None

    def kill(self, worker_id: str) -> None:
        """A crash: SIGKILL, no commit, no goodbye."""
        member = self.members.pop(worker_id)
        member.proc.send_signal(signal.SIGKILL)
        member.proc.wait(30)

    def check_alive(self) -> None:
        for m in self.members.values():
            assert m.proc.poll() is None, f"{m.worker_id} exited: {m.log.read_text()[-3000:]}"

    def stop_all(self) -> None:
        for worker_id in list(self.members):
            with contextlib.suppress(AssertionError):
                self.leave(worker_id)


def log_ends(settings: Settings, topic: topics.Topic) -> dict[int, int]:
    """Each partition's end offset now: where a test's own records will start."""
    consumer = kafka.reader(settings, "fleet-ends")
    try:
        return {p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=30)[1]
                for p in range(topic.partitions)}
    finally:
        consumer.close()


@dataclass
class Holding:
    """Which worker last reported each world (WorldStatus), and each world's newest tick."""

    holder: dict[str, str] = field(default_factory=dict)
    last_tick: dict[str, int] = field(default_factory=dict)
    last_ts: dict[str, int] = field(default_factory=dict)  # its producer timestamp, ms


class Follower:
    """Follows the shard's committed ticks and world statuses as they arrive."""

    def __init__(self, settings: Settings, registry: RegistryClient, shard: str,
                 ticks_from: dict[int, int], worlds_from: dict[int, int]) -> None:
        self.prefix = f"{shard}:".encode()
        self.state = Holding()
        self._decode = AvroDeserializer(registry)
        self._consumer = kafka.reader(settings, "fleet-follow")
        self._consumer.assign(
            [TopicPartition(topics.PHYSICS_TICKS.name, p, o) for p, o in ticks_from.items()]
            + [TopicPartition(topics.WORLDS.name, p, o) for p, o in worlds_from.items()])

    def poll(self, timeout_s: float = 0.2) -> None:
        for msg in self._consumer.consume(2000, timeout=timeout_s):
            assert msg.error() is None, msg.error()
            if not (msg.key() or b"").startswith(self.prefix):
                continue
            rec = self._decode(msg.value(), SerializationContext(msg.topic() or ""))
            world = rec["world_id"]
            if msg.topic() == topics.WORLDS.name:
                self.state.holder[world] = rec["worker_id"]
            else:
                self.state.last_tick[world] = rec["tick"]
                self.state.last_ts[world] = msg.timestamp()[1]

    def wait_until_all_tick(self, worlds: list[str], fleet: Fleet, *, since_ms: int,
                            holders: set[str] | None = None, timeout_s: float = 90.0) -> None:
        """Until every world has a tick made after ``since_ms`` (its producer timestamp:
        a follower that lags behind must not take old ticks for new ones) and, when
        ``holders`` is given, every one of them holds at least one world."""
        deadline = time.monotonic() + timeout_s
        while True:
            fleet.check_alive()
            seen = self.state.last_ts
            ticking = all(seen.get(w, 0) > since_ms for w in worlds)
            held = holders is None or holders <= {self.state.holder.get(w) for w in worlds}
            if ticking and held:
                return
            late = [w for w in worlds if seen.get(w, 0) <= since_ms]
            assert time.monotonic() < deadline, (
                f"after {timeout_s}s: {len(late)} worlds not ticking ({late[:5]}), holders "
                f"{sorted(set(self.state.holder.values()))}, wanted {sorted(holders or ())}")
            self.poll()

    def close(self) -> None:
        self._consumer.close()


def committed_ticks(settings: Settings, registry: RegistryClient, shard: str,
                    since: dict[int, int]) -> dict[str, list[tuple[int, Record]]]:
    """Every committed tick of the shard's worlds from ``since`` on, as (producer timestamp
    ms, record) in log order, by world."""
    from streams.worlds.eventlog import KafkaLog

    source = KafkaLog(settings, registry)
    prefix = f"{shard}:"
    out: dict[str, list[tuple[int, Record]]] = {}
    for p, start in since.items():
        for _, ts, rec in source.read(topics.PHYSICS_TICKS.name, p, start):
            if str(rec["world_id"]).startswith(prefix):
                out.setdefault(rec["world_id"], []).append((ts, rec))
    return out


def longest_pauses(ticks: dict[str, list[tuple[int, Record]]]) -> dict[str, float]:
    """Each world's longest wait between two consecutive ticks, in seconds."""
    out = {}
    for world, rows in ticks.items():
        times = [ts for ts, _ in sorted(rows, key=lambda r: r[1]["tick"])]
        out[world] = max((b - a for a, b in itertools.pairwise(times)), default=0) / 1000
    return out


def pauses_by_change(ticks: dict[str, list[tuple[int, Record]]], changes: list[tuple[str, int]],
                     longer_than_s: float) -> list[tuple[str, str, float]]:
    """(change, world, wait in seconds) for every wait between two ticks of a world longer
    than ``longer_than_s``, put down to the last change begun before the wait ended."""
    out = []
    for world, rows in ticks.items():
        times = [ts for ts, _ in sorted(rows, key=lambda r: r[1]["tick"])]
        for before, after in itertools.pairwise(times):
            wait = (after - before) / 1000
            made = [what for what, at in changes if at <= after]
            if wait > longer_than_s and made:
                out.append((made[-1], world, wait))
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q``-quantile (0..1) of ``values`` (inclusive method, as numpy's default)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1] \
        if 0 < q < 1 else (min(values) if q == 0 else max(values))


def tick_numbers(rows: list[tuple[int, Record]]) -> Iterator[int]:
    return (rec["tick"] for _, rec in rows)
