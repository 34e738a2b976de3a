"""The physics worker: commands in; ticks, deltas, snapshots and rejections out, exactly once.

One consumer group reads ``cosmic.commands.v1``; each partition's worlds
belong to one worker at a time. Per world, a fixed-rate tick loop applies the
commands received since the last tick (in offset order), steps the engine,
and produces the tick's events. Every loop iteration's ticks, across worlds,
go out in one Kafka transaction together with the consumer offsets, so a
crash either loses the whole iteration or none of it, and a fenced zombie
cannot write.

The committed offset of a partition is its *low watermark*: the first command
that some world of the partition has not consumed yet. On (re)assignment the
worker rebuilds the partition's worlds by replay (:mod:`.recovery`) and skips
commands at or below each world's last consumed offset, so nothing is applied
twice and nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from cosmic import kafka, topics
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from schemas.dlq import DeadLetterQueue, Decoded, decode_or_dead_letter
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SchemaSource, SerializationContext

from .commands import advance
from .deltas import DeadReckoner
from .eventlog import KafkaLog
from .events import now_ms, rejection_record, snapshot_record, tick_record
from .recovery import recover_partition, snapshot_fetcher
from .state import WorldState

log = logging.getLogger(__name__)

GROUP_ID = "cosmic-physics"
# A world that falls behind catches up by at most this many ticks per loop, so
# one slow world cannot starve the others.
_MAX_CATCH_UP = 8


@dataclass
class WorkerConfig:
    worker_id: str = "physics-0"
    group_id: str = GROUP_ID
    # Own only worlds whose id starts with this (sharding by naming, isolated tests).
    world_prefix: str = ""
    delta_tolerance: float = 1e-3
    # Replays and benchmarks: tick every world as fast as possible.
    unpaced: bool = False
    poll_timeout_s: float = 0.002
    max_ticks: int | None = None  # stop after this many ticks in total (tests, benches)


@dataclass
class _Live:
    state: WorldState
    reckoner: DeadReckoner
    pending: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    next_tick_at: float = 0.0
    new: bool = False  # created from its first command: needs a tick-0 snapshot


@dataclass
class WorkerStats:
    ticks: int = 0
    commands: int = 0
    rejected: int = 0
    dead_letters: int = 0
    transactions: int = 0
    recoveries: int = 0
    ticks_replayed: int = 0
    last_step_us: int = 0
    started: float = field(default_factory=time.monotonic)


class PhysicsWorker(ThreadService):
    """Owns the worlds of its assigned partitions and ticks them."""

    name = "physics"

    def __init__(self, settings: Settings, registry: SchemaSource,
                 config: WorkerConfig | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.config = config or WorkerConfig()
        super().__init__()
        self.stats = WorkerStats()
        self.worlds: dict[str, _Live] = {}
        self._assigned: set[int] = set()
        self._decode = AvroDeserializer(registry)
        self._encoders = {
            t.name: AvroSerializer(registry, t.value)
            for t in (topics.PHYSICS_TICKS, topics.STATE_DELTAS, topics.STATE_SNAPSHOTS,
                      topics.STATE_SNAPSHOT_HISTORY, topics.COMMANDS_REJECTED)
        }
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._in_txn = False
        self._fetch_snapshot = snapshot_fetcher(KafkaLog(settings, registry))

    # -- PlatformService (start/stop/failure come from ThreadService) -------------------

    def progress(self) -> str:
        s = self.stats
        rate = s.ticks / max(1e-9, time.monotonic() - s.started)
        return (f"{len(self.worlds)} worlds, {s.ticks} ticks ({rate:.0f}/s), "
                f"{s.commands} commands, {s.rejected} rejected, step {s.last_step_us}us")

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        cfg = self.config
        self._producer = kafka.producer(
            self.settings, client_id=f"cosmic-{cfg.worker_id}",
            transactional_id=f"cosmic-physics-{cfg.worker_id}", **{"linger.ms": 1},
        )
        # Fences any earlier incarnation with our id and aborts its open transaction,
        # so recovery below reads a log no zombie can still add to.
        self._producer.init_transactions(60)
        self._consumer = kafka.consumer(
            self.settings, cfg.group_id, client_id=f"cosmic-{cfg.worker_id}",
            **{"partition.assignment.strategy": "cooperative-sticky",
               "max.poll.interval.ms": 300_000,
               # Static membership: a restarted worker with the same id takes its
               # partitions back at once instead of waiting out the old session.
               "group.instance.id": f"cosmic-physics-{cfg.worker_id}",
               "session.timeout.ms": 10_000},
        )
        self._dlq = DeadLetterQueue(self._producer)
        self._consumer.subscribe([topics.COMMANDS.name], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(500, timeout=self._poll_timeout())
                if msgs:
                    # Dead letters are produced while routing: inside the transaction
                    # that also commits past them.
                    self._begin()
                for msg in msgs:
                    self._route(msg)
                self._tick_due()
                if cfg.max_ticks is not None and self.stats.ticks >= cfg.max_ticks:
                    break
        finally:
            self._consumer.close()
            self._consumer = None
            self._producer.flush(10)

    def _poll_timeout(self) -> float:
        if self.config.unpaced or not self.worlds:
            return self.config.poll_timeout_s if self.worlds else 0.1
        wait = min(lw.next_tick_at for lw in self.worlds.values()) - time.monotonic()
        return min(0.1, max(0.0, wait))

    # -- rebalancing -----------------------------------------------------------------

    def _recover(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            recovered = recover_partition(self.settings, self.registry, tp.partition,
                                          self.config.world_prefix)
            self.stats.recoveries += 1
            self.stats.ticks_replayed += recovered.ticks_replayed
            now = time.monotonic()
            for world_id, state in recovered.worlds.items():
                self.worlds[world_id] = _Live(state, DeadReckoner(self.config.delta_tolerance),
                                              next_tick_at=now)
            self._assigned.add(tp.partition)
            log.info("partition %d: %d worlds, %d ticks re-applied in %.2fs",
                     tp.partition, len(recovered.worlds), recovered.ticks_replayed,
                     recovered.seconds)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._recover(partitions)
        consumer.incremental_assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        gone = {tp.partition for tp in partitions}
        self.worlds = {w: lw for w, lw in self.worlds.items() if lw.state.partition not in gone}
        self._assigned -= gone
        consumer.incremental_unassign(partitions)

    def _reset(self) -> None:
        """After a failed transaction the in-memory worlds are ahead of the log: rebuild."""
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        self.worlds.clear()
        self._assigned.clear()
        for tp in self._consumer.committed(assignment, timeout=30):
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        self._recover(assignment)

    # -- commands ----------------------------------------------------------------------

    def _route(self, msg: Message) -> None:
        if (err := msg.error()) is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                return
            raise KafkaException(err)
        offset, partition = msg.offset() or 0, msg.partition() or 0
        result = decode_or_dead_letter(msg, self._decode, self._dlq)
        if not isinstance(result, Decoded):
            self.stats.dead_letters += 1
            return
        command = result.value
        world_id = str(command["world_id"])
        if not world_id.startswith(self.config.world_prefix):
            return
        live = self.worlds.get(world_id)
        if live is None:
            state = WorldState.empty(world_id, partition)
            live = _Live(state, DeadReckoner(self.config.delta_tolerance),
                         next_tick_at=time.monotonic(), new=True)
            self.worlds[world_id] = live
        last = live.state.last_command_offset
        if last is not None and offset <= last:
            return  # consumed before the last snapshot or tick: already in the state
        live.pending.append((offset, command))

    # -- ticking -----------------------------------------------------------------------

    def _tick_due(self) -> None:
        now = time.monotonic()
        due: list[tuple[_Live, int]] = []
        for lw in self.worlds.values():
            if self.config.unpaced:
                due.append((lw, 1))
                continue
            if lw.next_tick_at <= now:
                behind = int((now - lw.next_tick_at) * lw.state.tick_rate_hz) + 1
                due.append((lw, min(behind, _MAX_CATCH_UP)))
        if not due and not self._in_txn:
            return
        assert self._producer is not None and self._consumer is not None
        producer = self._producer
        try:
            self._begin()
            for lw, count in due:
                for _ in range(count):
                    self._tick_one(lw)
                period = 1.0 / lw.state.tick_rate_hz
                lw.next_tick_at += count * period
                if lw.next_tick_at < now - 1.0:  # more than a second behind: drop the debt
                    lw.next_tick_at = now + period
            producer.send_offsets_to_transaction(
                self._low_watermarks(), self._consumer.consumer_group_metadata(), 30)
            producer.commit_transaction(30)
            self._in_txn = False
            self.stats.transactions += 1
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal() or not err.txn_requires_abort():
                raise  # fenced or unrecoverable: this incarnation must stop
            log.warning("transaction aborted (%s); rebuilding worlds from the log", err.str())
            producer.abort_transaction(30)
            self._in_txn = False
            self._reset()

    def _begin(self) -> None:
        if not self._in_txn:
            assert self._producer is not None
            self._producer.begin_transaction()
            self._in_txn = True

    def _tick_one(self, lw: _Live) -> None:
        state, producer = lw.state, self._producer
        assert producer is not None
        ts = now_ms()
        if lw.new:
            self._snapshot(state, ts)
            lw.new = False
        commands, lw.pending = lw.pending, []
        t0 = time.perf_counter_ns()
        outcome = advance(state, commands, self._fetch_snapshot)
        step_us = (time.perf_counter_ns() - t0) // 1000
        self._produce(topics.PHYSICS_TICKS, state, tick_record(state, outcome, step_us, ts), ts)
        delta = lw.reckoner.delta(state, outcome)
        delta.update(world_id=state.world_id, tick=outcome.tick, sim_time=outcome.sim_time, ts=ts)
        self._produce(topics.STATE_DELTAS, state, delta, ts)
        for rej in outcome.rejections:
            self._produce(topics.COMMANDS_REJECTED, state,
                          rejection_record(state, outcome.tick, rej, ts), ts)
        if outcome.tick % state.snapshot_every == 0:
            self._snapshot(state, ts)
        s = self.stats
        s.ticks += 1
        s.commands += len(commands)
        s.rejected += outcome.n_rejected
        s.last_step_us = step_us

    def _snapshot(self, state: WorldState, ts: int) -> None:
        # The compacted topic keeps the latest per world for recovery; the history
        # topic keeps every one, by time, for point-in-time replay.
        record = snapshot_record(state, ts)
        self._produce(topics.STATE_SNAPSHOTS, state, record, ts)
        self._produce(topics.STATE_SNAPSHOT_HISTORY, state, record, ts)

    def _produce(self, topic: topics.Topic, state: WorldState, record: dict[str, Any],
                 ts: int) -> None:
        assert self._producer is not None
        value = self._encoders[topic.name](record, SerializationContext(topic.name))
        # Same partition number as the world's commands: recovery reads one partition
        # of each topic, whatever partitioner produced the commands.
        self._producer.produce(topic.name, key=state.world_id.encode(), value=value,
                               partition=state.partition, timestamp=ts)
        self._producer.poll(0)

    def _low_watermarks(self) -> list[TopicPartition]:
        assert self._consumer is not None
        positions = self._consumer.position(
            [TopicPartition(topics.COMMANDS.name, p) for p in sorted(self._assigned)])
        out = []
        for tp in positions:
            firsts = [lw.pending[0][0] for lw in self.worlds.values()
                      if lw.state.partition == tp.partition and lw.pending]
            low = min(firsts) if firsts else tp.offset
            if low is None or low < 0:
                continue  # nothing consumed yet from this partition
            out.append(TopicPartition(tp.topic, tp.partition, low))
        return out


def build_worker(settings: Settings, config: WorkerConfig | None = None,
                 registry: SchemaSource | None = None) -> PhysicsWorker:
    """The worker `cosmic physics worker` and `cosmic up` run."""
    return PhysicsWorker(settings, registry or RegistryClient.from_settings(settings), config)


def run_forever(worker: PhysicsWorker, echo: Callable[[str], None],
                interval_s: float = 2.0) -> None:
    """Run ``worker`` in this thread's foreground, printing progress until Ctrl-C."""
    from cosmic.runtime import run_services

    run_services([worker], duration_s=None, echo=echo, interval_s=interval_s)


