"""The physics worker's row: lockstep worlds on a private shard of the shared topics.

In lockstep a world ticks once per command and only then, so the seeded
commands imply the output exactly: world ``w`` with ``n`` commands must commit
ticks ``1..n``, each applying one of its commands, every command once. The
worker's ticks are transactional: a read_committed reader collects what
counts; a read_uncommitted reader beside it sees the aborted records too, the
proof that a kill landed inside a transaction. At the end each world is
replayed from tick 0 over the commands its ticks name, and every recorded
hash must come out the same. The gateway's row (:mod:`.gateway`) runs the same
worlds through gateways and shares the reader, the input and the replay.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.eventlog import KafkaLog
from streams.worlds.recovery import read_commands, replay
from streams.worlds.state import WorldState
from streams.worlds.worker import WorkerConfig

from .cell import Row, Verdict
from .verify import tally

_WORLDS = 4
_ASTEROIDS = 6


class TickReader:
    """Ticks of some worlds as they are committed (or written, read_uncommitted)."""

    def __init__(self, consumer: Consumer, worlds: set[bytes], decode: AvroDeserializer | None
                 ) -> None:
        self.consumer = consumer
        self.worlds = worlds
        self.decode = decode
        self.records: list[dict[str, Any]] = []
        self.count = 0
        self.latest_ts: list[int] = []  # the ticks' own time (ms), in arrival order
        parts = [TopicPartition(topics.PHYSICS_TICKS.name, p, OFFSET_END)
                 for p in range(topics.PHYSICS_TICKS.partitions)]
        consumer.assign(parts)
        # Pin the start before any input exists: OFFSET_END resolves lazily otherwise.
        for tp in parts:
            tp.offset = kafka.high_watermark(consumer, tp)
        consumer.assign(parts)
        self.starts = {tp.partition: tp.offset for tp in parts}

    def poll(self, timeout: float = 0.0) -> None:
        for msg in self.consumer.consume(2000, timeout=timeout):
            self._take(msg)

    def _take(self, msg: Message) -> None:
        if msg.error() is not None or msg.key() not in self.worlds:
            return
        self.count += 1
        if self.decode is not None:
            rec = self.decode(msg.value(), SerializationContext(topics.PHYSICS_TICKS.name))
            self.records.append(rec)
            ts = rec["ts"]
            self.latest_ts.append(int(ts.timestamp() * 1000) if hasattr(ts, "timestamp")
                                  else int(ts))

    def drain(self) -> None:
        """Read to the end of every partition (what is there now)."""
        for _ in range(200):
            positions = self.consumer.position(self.consumer.assignment())
            behind = False
            for tp in positions:
                high = kafka.high_watermark(self.consumer, tp)
                # Nothing consumed yet reads as no position (-1001): the start then. On a
                # private broker a partition none of the worlds hash to stays empty, and
                # was taken for one behind until the 200 polls ran out (~100 s).
                at = tp.offset if tp.offset >= 0 else self.starts[tp.partition]
                behind |= at < high
            if not behind:
                return
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()


def seeded_input(worlds: list[str], seed: int, size: int) -> list[tuple[str, dict[str, Any]]]:
    """``size`` unsigned commands (Avro-ready PlayerCommand records) for the worlds: each
    world's star system, then its players (every tenth command one the world must refuse),
    interleaved by the seed; each world's commands in their own order."""
    def commands(world: str, k: int) -> Iterator[dict[str, Any]]:
        for cmd in scenario.star_system(world, asteroids=_ASTEROIDS, seed=seed + k,
                                        snapshot_every=50):
            yield cmd.to_avro()
        yield from scenario.player_commands(world, seed=seed * 31 + k, asteroids=_ASTEROIDS,
                                            invalid_every=10)

    rng = random.Random(seed)
    streams = {w: commands(w, k) for k, w in enumerate(worlds)}
    out: list[tuple[str, dict[str, Any]]] = []
    while len(out) < size:
        w = worlds[rng.randrange(len(worlds))]
        out.append((w, next(streams[w])))
    return out


def start_group_at_end(settings: Settings, shard: str) -> None:
    """Commit a new shard's worker group at the commands topic's end: the shared log holds
    every earlier test's commands, none of them this shard's, and a first start would
    read them all (a minute here) before the cell's input."""
    consumer = kafka.consumer(settings, WorkerConfig(shard=shard).group)
    try:
        ends = []
        for p in range(topics.COMMANDS.partitions):
            tp = TopicPartition(topics.COMMANDS.name, p)
            ends.append(TopicPartition(tp.topic, p, kafka.high_watermark(consumer, tp)))
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def replay_failure(log: KafkaLog, world: str, ticks: list[dict[str, Any]]) -> str | None:
    """Replay ``world`` from tick 0 over the commands its committed ``ticks`` (in tick
    order) name, checking every recorded hash; what went wrong, or None."""
    if not ticks:
        return None
    partition = ticks[0]["command_partition"]
    state = WorldState.empty(world, partition)
    try:
        done = replay(state, ticks, read_commands(log, partition, ticks, world), verify=True)
    except Exception as exc:  # noqa: BLE001 - a divergence is the finding
        return f"{world}: replay from tick 0: {exc}"
    if done != len(ticks) or state.state_hash() != ticks[-1]["state_hash"]:
        return f"{world}: replay applied {done}/{len(ticks)} ticks"
    return None


class PhysicsRow(Row):
    name = "physics"
    transactional = True
    faults = ("sigterm", "sigkill", "rebalance", "broker-restart", "registry-outage")

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:8]
        self.shard = f"chaos-{run}"
        self.worlds = [f"{self.shard}:w{i}" for i in range(_WORLDS)]
        self.registry = RegistryClient.from_settings(self.settings)
        ring = signing.KeyRing.for_settings(self.settings)
        self.input = [(w, signing.sign_record(rec, models.Role.OPERATOR, ring))
                      for w, rec in seeded_input(self.worlds, self.cell.seed, self.cell.size)]
        self.per_world = {w: sum(1 for x, _ in self.input if x == w) for w in self.worlds}
        keys = {w.encode() for w in self.worlds}
        self.committed = TickReader(kafka.reader(self.settings, "chaos-committed"), keys,
                                    AvroDeserializer(self.registry))
        self.uncommitted = TickReader(kafka.reader(self.settings, "chaos-uncommitted",
                                                   **{"isolation.level": "read_uncommitted"}),
                                      keys, None)
        self.offsets: dict[str, list[int]] = {w: [] for w in self.worlds}
        start_group_at_end(self.settings, self.shard)

    def feed(self) -> Iterator[int]:
        producer = kafka.producer(self.settings)
        encode = AvroSerializer(self.registry, "PlayerCommand")
        ctx = SerializationContext(topics.COMMANDS.name)

        def delivered(err: Any, msg: Message) -> None:
            key, offset = msg.key(), msg.offset()
            if err is None and key is not None and offset is not None:
                self.offsets[key.decode()].append(offset)

        for n, (world, rec) in enumerate(self.input, 1):
            producer.produce(topics.COMMANDS.name, key=world.encode(), value=encode(rec, ctx),
                             on_delivery=delivered)
            producer.poll(0)
            yield n
        if producer.flush(60) != 0:
            raise RuntimeError("commands not delivered within 60 s")

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        return (["physics", "worker", "--worker-id", f"{self.shard}-{instance}",
                 "--shard", self.shard, "--lockstep", "--hibernate-after", "0"],
                {"COSMIC_METRICS__PORT": "0"})

    @property
    def expected(self) -> int:
        return self.cell.size

    def output(self, since_ms: int | None = None) -> int:
        self.committed.poll()
        self.uncommitted.poll()
        if since_ms is None:
            return self.committed.count
        return sum(1 for ts in self.committed.latest_ts if ts >= since_ms)

    def await_open_transaction(self, timeout_s: float) -> None:
        # read_committed stops at the first open transaction; read_uncommitted reads on:
        # more records seen uncommitted than a moment ago, and not committed, is one open.
        deadline = time.monotonic() + timeout_s
        low: int | None = None
        while time.monotonic() < deadline:
            self.output()
            ahead = self.uncommitted.count - self.committed.count
            if low is not None and ahead > low:
                return
            low = ahead if low is None else min(low, ahead)
            time.sleep(0.002)

    def verify(self) -> Verdict:
        self.committed.drain()
        self.uncommitted.drain()
        ticks = self.committed.records
        verdict = Verdict(tally(
            {w: range(1, n + 1) for w, n in self.per_world.items()},
            ((t["world_id"], t["tick"]) for t in ticks)),
            aborted=self.uncommitted.count - self.committed.count)
        log = KafkaLog(self.settings, self.registry)
        for w in self.worlds:
            mine = sorted((t for t in ticks if t["world_id"] == w), key=lambda t: t["tick"])
            applied = sorted(t["first_command_offset"] for t in mine
                             if t["first_command_offset"] is not None)
            if applied != sorted(self.offsets[w]):
                verdict.failures.append(
                    f"{w}: {len(applied)} commands applied, {len(self.offsets[w])} sent "
                    f"({len(set(self.offsets[w]) - set(applied))} never applied)")
            if (broken := replay_failure(log, w, mine)) is not None:
                verdict.failures.append(broken)
        return verdict

    def cleanup(self) -> None:
        for reader in ("committed", "uncommitted"):
            if hasattr(self, reader):
                getattr(self, reader).close()
        if hasattr(self, "registry"):
            self.registry.close()
