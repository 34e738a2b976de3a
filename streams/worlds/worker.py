"""The physics worker: commands in; ticks, deltas, snapshots and rejections out, exactly once.

One consumer group per shard reads ``cosmic.commands.v1``; each partition's
worlds belong to one worker at a time. Per world, a fixed-rate tick loop
applies the commands received since the last tick (in offset order), steps the
engine, and produces the tick's events. Every loop iteration's output, across
worlds, goes out in one Kafka transaction together with the consumer offsets,
so a crash either loses the whole iteration or none of it, and a fenced zombie
cannot write.

Routing a record, in that transaction:

- bytes that do not resolve to ``PlayerCommand`` or break its model's rules go
  to the DLQ (original bytes, reason, source coordinates), by the shard its key
  names;
- a command for a world of another shard is not ours; one that arrived on a
  partition other than its world's home (another client's partitioner) is
  forwarded to the home partition, once;
- a command for a retired or quarantined world, or one that would create a
  world past the cap, is a ``CommandRejected``;
- anything else waits for its world's next tick.

The committed offset of a partition is its *low watermark*: the first command
that some world of the partition has not consumed yet. Its metadata records how
far routing's side effects (dead letters, forwards, rejections) are committed,
so records read again after a restart are never dead-lettered, forwarded or
rejected twice. On (re)assignment the worker rebuilds the partition's worlds by
replay (:mod:`.recovery`, the partition paused until then, outside the rebalance
callback) and skips commands at or below each world's last consumed offset, so
nothing is applied twice and nothing is lost. A partition given up is handed
over: its worlds are snapshotted at their last tick and committed first, so the
next owner replays nothing; a worker that stops leaves the group after handing
everything over (docs/deployment.md, "Many physics workers").

A world is isolated from the others: a command that fails is rejected; a world
whose tick fails (or that cannot be rebuilt) is quarantined — it stops, and a
``WorldStatus`` says why; a world without commands for a while hibernates
(final snapshot, no ticks) and wakes on its next command.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span

from cosmic import kafka, topics, tracing
from cosmic import metrics as process_metrics
from cosmic.errors import ConfigError, CosmicError, SerializationError
from cosmic.runtime import ThreadService
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from schemas import models
from schemas.dlq import DeadLetterQueue
from schemas.errors import RegistryError
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext
from schemas.typed import ModelDeserializer
from streams.security import signing

from .commands import advance
from .deltas import DeadReckoner
from .eventlog import KafkaLog, Readers
from .events import rejection_record, snapshot_record, status_record, tick_record
from .metrics import WorkerMetrics
from .outcome import Rejection, TickOutcome
from .recovery import recover_partition, snapshot_fetcher
from .state import SHARD_SEPARATOR, SnapshotUnavailable, WorldState, shard_of
from .transaction import JournaledProducer

log = logging.getLogger(__name__)

GROUP_ID = "cosmic-physics"
# A world that falls behind catches up by at most this many ticks per loop, so
# one slow world cannot starve the others.
_MAX_CATCH_UP = 8
# A paced world may tick up to this fraction of its period early, so that one loop's
# transaction carries the ticks of every world due about now instead of each world,
# on its own phase, costing a transaction (a commit is a broker round trip: with many
# worlds, one per world capped the worker far below its CPU's rate). Simulated time
# does not depend on the wall clock, so no state changes; the mean rate stays the
# world's rate, since its next tick is still a whole period later.
_EARLY = 0.25
# Offset-commit metadata: routing's side effects are committed up to this offset.
_ROUTED = "routed="
FORWARDED_FROM = "cosmic.forwarded.from"
# The key of a tick's delta among its outputs' trace headers (the others are offsets).
_APPLIED = -1
# Kafka clients made anew after a fatal error (PhysicsWorker._restart_clients): at most
# this many within the window; one more is raised (the worker stops).
_RESTART_MAX = 3
_RESTART_WINDOW_S = 600.0
_RESTART_PAUSE_S = 1.0

Pending = list[tuple[int, models.PlayerCommand]]


@dataclass
class WorkerConfig:
    worker_id: str = "physics-0"
    shard: str = ""
    group_id: str = GROUP_ID
    delta_tolerance: float = 1e-3
    # Replays and benchmarks: tick every world as fast as possible.
    unpaced: bool = False
    # A world ticks once per command and only then (turn-based worlds, and tests that
    # compare two workers: the hash sequence is then a function of the log alone, not
    # of when commands happened to arrive).
    lockstep: bool = False
    poll_timeout_s: float = 0.002
    hibernate_after_s: float = 600.0
    max_worlds: int = 1000
    max_ticks: int | None = None  # stop after this many ticks in total (tests, benches)
    # Group membership: see PhysicsSettings.
    leave_on_stop: bool = True
    session_timeout_s: float = 10.0
    heartbeat_interval_s: float = 0.2
    transaction_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if SHARD_SEPARATOR in self.shard:
            raise ConfigError(f"a shard name cannot contain {SHARD_SEPARATOR!r}: {self.shard!r}")

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerConfig:
        """The worker's configuration from ``settings.physics``; non-None overrides win."""
        p = settings.physics
        values: dict[str, Any] = {
            "worker_id": p.worker_id, "shard": p.shard, "group_id": p.group_id,
            "delta_tolerance": p.delta_tolerance, "poll_timeout_s": p.poll_timeout_s,
            "hibernate_after_s": p.hibernate_after_s, "max_worlds": p.max_worlds,
            "leave_on_stop": p.leave_on_stop, "session_timeout_s": p.session_timeout_s,
            "heartbeat_interval_s": p.heartbeat_interval_s,
            "transaction_timeout_s": p.transaction_timeout_s,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def group(self) -> str:
        """This shard's consumer group: shards never share one, so none commits past
        commands another must still apply."""
        return self.group_id if not self.shard else f"{self.group_id}.{self.shard}"


@dataclass
class _Live:
    state: WorldState
    reckoner: DeadReckoner
    pending: Pending = field(default_factory=list)
    next_tick_at: float = 0.0
    new: bool = False  # created from its first command: needs a tick-0 snapshot
    last_active: float = field(default_factory=time.monotonic)
    backend: str | None = None  # as the last tick recorded it
    # Trace contexts of pending commands that came with one, by offset (tracing on).
    traces: dict[int, Context] = field(default_factory=dict)
    snapshot_tick: int = -1  # the newest tick the log holds a snapshot of (-1: unknown)


@dataclass(frozen=True)
class _Ended:
    """A retired or quarantined world: it takes no more commands."""

    status: str  # WorldLifecycle symbol
    reason: str
    partition: int
    tick: int
    last_command_offset: int | None


@dataclass
class WorkerStats:
    ticks: int = 0
    commands: int = 0
    rejected: int = 0
    dead_letters: int = 0
    forwarded: int = 0
    quarantined: int = 0
    hibernated: int = 0
    woke: int = 0
    refused_worlds: int = 0
    transactions: int = 0
    aborts: int = 0
    recoveries: int = 0
    ticks_replayed: int = 0
    handed_over: int = 0  # worlds given up to another worker (with a snapshot)
    redone: int = 0  # transactions made again under a new group generation
    restarts: int = 0  # Kafka clients made anew after a fatal error (_restart_clients)
    last_step_us: int = 0
    started: float = field(default_factory=time.monotonic)


class PhysicsWorker(ThreadService):
    """Owns the worlds of its shard in its assigned partitions and ticks them."""

    name = "physics"

    def __init__(self, settings: Settings, registry: SchemaSource,
                 config: WorkerConfig | None = None) -> None:
        self.settings = settings
        self.registry = registry
        self.config = config or WorkerConfig.from_settings(settings)
        super().__init__()
        self.stats = WorkerStats()
        self.metrics = WorkerMetrics(self.config.worker_id, self._world_counts)
        # None: tracing off. Producer spans of the open transaction end when it does.
        self.tracer = tracing.tracer(__name__)
        self._sending: list[Span] = []
        self.worlds: dict[str, _Live] = {}
        self.sleeping: dict[str, tuple[WorldState, DeadReckoner]] = {}
        self.ended: dict[str, _Ended] = {}
        self._assigned: set[int] = set()
        self._routed: dict[int, int] = {}
        self._outbox: list[tuple[topics.Topic, str, int, dict[str, Any]]] = []
        self._decode = ModelDeserializer(registry, models.PlayerCommand)
        self._encoders = {
            t.name: AvroSerializer(registry, t.value)
            for t in (topics.PHYSICS_TICKS, topics.STATE_DELTAS, topics.STATE_SNAPSHOTS,
                      topics.STATE_SNAPSHOT_HISTORY, topics.COMMANDS_REJECTED, topics.WORLDS)
        }
        self._consumer: Consumer | None = None
        self._producer: JournaledProducer | None = None
        self._n_partitions = 0
        self._in_txn = False
        self._leaving = False
        self._recovering: set[int] = set()  # assigned, paused, worlds not rebuilt yet
        self._reread: set[int] = set()  # of those, partitions a record of got through
        self._restarts: list[float] = []  # when the clients were made anew (monotonic)
        # Recovery's reads go through connected consumers kept for the worker's life: a
        # handover's pause is mostly these reads, and a consumer made per read spends a
        # good part of one on connecting and authenticating.
        self._readers = Readers(settings, f"{self.config.worker_id}-recovery")
        self._log = KafkaLog(settings, registry, readers=self._readers)
        self._assigned_at: dict[int, float] = {}  # partition: when it was assigned (monotonic)
        self._fetch_snapshot = snapshot_fetcher(KafkaLog(settings, registry))
        self._authenticate = signing.authenticator(settings)

    # -- PlatformService (start/stop/failure come from ThreadService) -------------------

    def progress(self) -> str:
        s = self.stats
        rate = s.ticks / max(1e-9, time.monotonic() - s.started)
        extra = "".join(f", {n} {what}" for n, what in (
            (len(self.sleeping), "hibernating"), (s.quarantined, "quarantined"),
            (s.dead_letters, "dead letters"), (s.forwarded, "forwarded"),
            (s.handed_over, "handed over"), (s.redone, "transactions redone")) if n)
        return (f"{len(self.worlds)} worlds, {s.ticks} ticks ({rate:.0f}/s), "
                f"{s.commands} commands, {s.rejected} rejected{extra}, step {s.last_step_us}us")

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        process_metrics.hub().add(self.metrics)
        threading.Thread(target=self._warm, name="physics-warm", daemon=True).start()
        try:
            while True:
                try:
                    self._run_clients()
                    return
                except KafkaException as exc:
                    self._restart_clients(exc)
        finally:
            process_metrics.hub().discard(self.metrics)
            self._readers.close()

    def _warm(self) -> None:
        """What a worker's first recovery and first ticks would otherwise wait for, done
        while it joins the group: a newcomer's first ticks are part of a handover's pause,
        and each of them looked its topic's schema id up in the registry first."""
        try:
            for name, encode in self._encoders.items():
                self.registry.schema(encode.schema_id(SerializationContext(name)))
            # And the commands' (as their producers write them now), which routing reads.
            commands = AvroSerializer(self.registry, models.PlayerCommand.__name__,
                                      auto_register=False)
            self.registry.schema(commands.schema_id(SerializationContext(topics.COMMANDS.name)))
        except CosmicError as exc:  # not needed: the first tick looks it up then
            log.warning("schema ids not looked up ahead (%s)", exc)
        try:
            # Two reads at a time per partition (snapshots beside statuses), side by side.
            self._readers.warm(2 * topics.COMMANDS.partitions, topics.PHYSICS_TICKS.name)
        except KafkaException as exc:  # not needed: a read makes its own consumer then
            log.warning("recovery readers not connected ahead (%s)", exc)

    def _run_clients(self) -> None:
        """One incarnation of the worker's Kafka clients: made, run until stopped, closed."""
        cfg = self.config
        # One transactional id per worker id (stable: a StatefulSet's ordinal): a
        # restarted worker fences its predecessor here; a worker of another id that
        # takes over its partitions is protected by the group generation the offsets of
        # every transaction carry (a zombie's commit is refused).
        self._open_producer()
        self._consumer = kafka.consumer(
            self.settings, cfg.group, client_id=f"cosmic-{cfg.worker_id}",
            **{"partition.assignment.strategy": "cooperative-sticky",
               "max.poll.interval.ms": 300_000,
               # Static membership: a restarted worker with the same id takes its
               # partitions back at once instead of waiting out the old session.
               "group.instance.id": f"cosmic-physics-{cfg.worker_id}",
               "session.timeout.ms": int(cfg.session_timeout_s * 1000),
               # Members learn of a rebalance at their next heartbeat: a partition that
               # moves waits about one interval between its two owners.
               "heartbeat.interval.ms": int(cfg.heartbeat_interval_s * 1000)},
        )
        md = self._consumer.list_topics(topics.COMMANDS.name, timeout=30).topics[topics.COMMANDS.name]
        self._n_partitions = len(md.partitions)
        self._consumer.subscribe([topics.COMMANDS.name], on_assign=self._on_assign,
                                 on_revoke=self._on_revoke, on_lost=self._on_lost)
        clean = False
        try:
            while not self._stop.is_set():
                if self._recovering:
                    self._recover_assigned()
                msgs = self._consumer.consume(500, timeout=self._poll_timeout())
                try:
                    if msgs:
                        # Dead letters, forwards and rejections are produced while
                        # routing: inside the transaction that also commits past them.
                        self._begin()
                    for msg in msgs:
                        self._route(msg)
                except RegistryError as exc:
                    # The registry is down, not the record bad: read it again later.
                    log.warning("schema registry unavailable (%s); retrying", exc)
                    self._abort()
                    self._stop.wait(1.0)
                    continue
                self._tick_due()
                if cfg.max_ticks is not None and self.stats.ticks >= cfg.max_ticks:
                    break
            if cfg.leave_on_stop:
                self._leave()
            clean = True
        finally:
            consumer, self._consumer = self._consumer, None
            assert consumer is not None and self._producer is not None
            # After a fatal error the clients refuse these too: the error raised is that one.
            quiet = () if clean else (KafkaException,)
            with contextlib.suppress(*quiet):
                consumer.close()
            with contextlib.suppress(*quiet):
                self._producer.flush(10)

    def _open_producer(self) -> None:
        cfg = self.config
        self._producer = JournaledProducer(kafka.producer_config(
            self.settings, client_id=f"cosmic-{cfg.worker_id}",
            transactional_id=f"cosmic-physics-{cfg.worker_id}",
            **{"linger.ms": 1, "transaction.timeout.ms": int(cfg.transaction_timeout_s * 1000)},
        ))
        # Fences any earlier incarnation with our id and aborts its open transaction,
        # so recovery reads a log no zombie can still add to.
        self._producer.init(60)
        self._dlq = DeadLetterQueue(self._producer)

    def _restart_clients(self, exc: KafkaException) -> None:
        """After a fatal error of a Kafka client, forget every world and let the next
        :meth:`_run_clients` start afresh, as a restarted process would; raise ``exc``
        where it is not fatal, or too many restarts were made lately.

        A broker away longer than the transaction timeout aborts the open transaction
        itself when it is back, with a new epoch: the producer then meets a fatal error
        (fenced, or its abort in an invalid state), and the static member may be fenced
        by its own rejoin, though no other worker has our id. New clients are correct
        regardless: init_transactions fences whatever is left of the old producer and
        aborts its transaction, and the worlds rebuild from the committed log. The
        bounded count stops a ping-pong with a real second instance of our id."""
        err = exc.args[0]
        if self._stop.is_set() or not (err.fatal() or err.code() == KafkaError._FATAL):
            raise exc
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < _RESTART_WINDOW_S]
        if len(self._restarts) >= _RESTART_MAX:
            raise exc
        self._restarts.append(now)
        log.warning("kafka client failed (%s); new clients, worlds rebuilt from the log",
                    err.str())
        self.worlds.clear()
        self.sleeping.clear()
        self.ended.clear()
        self._assigned.clear()
        self._recovering.clear()
        self._reread.clear()
        self._routed.clear()
        self._outbox.clear()
        self._in_txn = self._leaving = False
        tracing.end_all(self._sending, "kafka client failed")
        self._sending.clear()
        self.stats.restarts += 1
        self._stop.wait(_RESTART_PAUSE_S)

    def _poll_timeout(self) -> float:
        if self.config.lockstep:
            busy = any(lw.pending for lw in self.worlds.values())
            return self.config.poll_timeout_s if busy else 0.1
        if self.config.unpaced or not self.worlds:
            return self.config.poll_timeout_s if self.worlds else 0.1
        wait = min(lw.next_tick_at for lw in self.worlds.values()) - time.monotonic()
        return min(0.1, max(0.0, wait))

    # -- rebalancing -----------------------------------------------------------------

    def _recover(self, partitions: list[TopicPartition]) -> None:
        assert self._consumer is not None
        # Side by side: a handover's pause is mostly these reads, and a worker that takes
        # over a leaver's partitions takes them all at once.
        with ThreadPoolExecutor(max(1, len(partitions)), "recovery") as pool:
            rebuilding = pool.map(lambda tp: recover_partition(
                self.settings, self.registry, tp.partition, self.config.shard, self._log),
                partitions)
            for tp in self._consumer.committed(partitions, timeout=30):
                self._routed[tp.partition] = _routed_from(tp.metadata)
            rebuilt = list(rebuilding)
        for tp, recovered in zip(partitions, rebuilt, strict=True):
            self.stats.recoveries += 1
            self.metrics.recovery.labels(self.config.worker_id).observe(recovered.seconds)
            self.stats.ticks_replayed += recovered.ticks_replayed
            now = time.monotonic()
            for world_id, status in recovered.statuses.items():
                if status["status"] in ("RETIRED", "QUARANTINED"):
                    self.ended[world_id] = _Ended(
                        status["status"], status["reason"], tp.partition, status["tick"],
                        status["last_command_offset"])
            for world_id, state in recovered.worlds.items():
                if world_id in self.ended:
                    continue
                reckoner = DeadReckoner(self.config.delta_tolerance)
                if recovered.statuses.get(world_id, {}).get("status") == "HIBERNATING":
                    self.sleeping[world_id] = (state, reckoner)
                else:
                    self.worlds[world_id] = _Live(state, reckoner, next_tick_at=now,
                                                  backend=state.world.backend)
            for world_id, why in recovered.failed.items():
                if world_id not in self.ended:
                    self._end_world(world_id, tp.partition, None, "QUARANTINED",
                                    f"could not be rebuilt: {why}")
            self._assigned.add(tp.partition)
            log.info("partition %d: %d worlds, %d ticks re-applied in %.2fs",
                     tp.partition, len(recovered.worlds), recovered.ticks_replayed,
                     recovered.seconds)

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Taken, but paused until the loop has rebuilt their worlds: a member inside this
        # callback holds the group's next rebalance up, and with it every other partition
        # on its way from one worker to another.
        consumer.incremental_assign(partitions)
        consumer.pause(partitions)
        self._recovering.update(tp.partition for tp in partitions)
        now = time.monotonic()
        self._assigned_at.update((tp.partition, now) for tp in partitions)
        if partitions:
            log.info("partitions %s assigned", sorted(tp.partition for tp in partitions))

    def _recover_assigned(self) -> None:
        """Rebuild the worlds of the partitions assigned since the last loop, then read
        their commands from the committed offsets on."""
        assert self._consumer is not None
        parts = [TopicPartition(topics.COMMANDS.name, p) for p in sorted(self._recovering)]
        self._recovering.clear()
        self._recover(parts)
        # Pausing drops what was fetched for them; a record that got through anyway was
        # stepped over, so read again from the committed offset.
        stepped = [tp for tp in parts if tp.partition in self._reread]
        self._reread.clear()
        if stepped:
            for tp in self._consumer.committed(stepped, timeout=30):
                self._consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        self._consumer.resume(parts)
        now = time.monotonic()
        log.info("partitions %s resumed %s after their assignment",
                 [tp.partition for tp in parts],
                 ", ".join(f"{now - self._assigned_at.pop(tp.partition, now):.2f}s"
                           for tp in parts))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Give partitions up to the group: their worlds are snapshotted at their last tick
        and committed first, so their next owner starts where they are, replaying nothing."""
        gone = {tp.partition for tp in partitions}
        if not self._leaving:
            self._hand_over(gone)
        self._drop(gone)
        consumer.incremental_unassign(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Partitions taken away (the session expired): another worker may run their worlds
        already, so nothing more is written for them; any transaction of ours is refused."""
        self._drop({tp.partition for tp in partitions})
        consumer.incremental_unassign(partitions)

    def _hand_over(self, gone: set[int]) -> None:
        leaving = [lw for lw in self.worlds.values() if lw.state.partition in gone and not lw.new]
        if self._in_txn or not leaving:
            return  # mid-transaction only when the loop failed: the log is where it was
        assert self._producer is not None and self._consumer is not None
        t0 = time.monotonic()
        try:
            self._begin()
            for topic, world_id, partition, record in self._outbox:
                self._produce_to(topic, world_id, partition, record, now_ms())
            self._outbox.clear()
            for lw in leaving:
                state = lw.state
                if lw.snapshot_tick != state.world.tick:
                    self._snapshot(lw, now_ms())
                self._status(state, "ACTIVE", f"handed over by worker {self.config.worker_id} "
                                              f"at tick {state.world.tick}")
            self._producer.commit_offsets(self._consumer, self._low_watermarks)
            self._in_txn = False
        except KafkaException as exc:
            err = exc.args[0]
            if err.fatal():
                raise
            # Still correct: the next owner replays from the worlds' previous snapshots.
            log.warning("handover of partitions %s not committed (%s)", sorted(gone), err.str())
            if self._in_txn:
                self._producer.abort(30)
                self._in_txn = False
            return
        self.stats.handed_over += len(leaving)
        log.info("partitions %s: %d worlds handed over in %.3fs", sorted(gone), len(leaving),
                 time.monotonic() - t0)

    def _leave(self) -> None:
        """Leave the group for good: hand every partition over, then tell the coordinator,
        so the others take them at once (a static member that only closed would keep them
        until its session timed out)."""
        assert self._consumer is not None
        self._hand_over(set(self._assigned))
        self._leaving = True  # from here on nothing is routed, ticked or committed
        self._consumer.unsubscribe()
        deadline = time.monotonic() + self.config.session_timeout_s
        while (self._assigned or self._recovering) and time.monotonic() < deadline:
            # Serves the revocation; records still in flight are dropped: the offsets
            # committed above are below them, so their next owner reads them.
            self._consumer.consume(500, timeout=0.05)

    def _drop(self, gone: set[int]) -> None:
        self.worlds = {w: lw for w, lw in self.worlds.items() if lw.state.partition not in gone}
        self.sleeping = {w: s for w, s in self.sleeping.items() if s[0].partition not in gone}
        self.ended = {w: e for w, e in self.ended.items() if e.partition not in gone}
        self._assigned -= gone
        self._recovering -= gone
        self.metrics.forget(gone)
        for p in gone:
            self._routed.pop(p, None)

    def _reset(self) -> None:
        """After a failed transaction the in-memory worlds are ahead of the log: rebuild."""
        assert self._consumer is not None
        assignment = self._consumer.assignment()
        self.worlds.clear()
        self.sleeping.clear()
        self.ended.clear()
        self._assigned.clear()
        self._recovering.clear()
        self._routed.clear()
        self._outbox.clear()
        for tp in self._consumer.committed(assignment, timeout=30):
            self._consumer.seek(TopicPartition(tp.topic, tp.partition, max(tp.offset, 0)))
        self._recover(assignment)
        self._consumer.resume(assignment)

    # -- commands ----------------------------------------------------------------------

    def _route(self, msg: Message) -> None:
        if (err := msg.error()) is not None:
            # A fatal error reaches consume() as a _FATAL event whose own flag is not set.
            if err.fatal() or err.code() == KafkaError._FATAL:
                raise KafkaException(err)
            if err.code() != KafkaError._PARTITION_EOF:
                log.warning("consumer: %s", err.str())  # the client retries by itself
            return
        offset, partition = msg.offset() or 0, msg.partition() or 0
        if partition not in self._assigned:
            self._reread.add(partition)  # its worlds are not rebuilt yet
            return
        raw_key = msg.key()
        if raw_key is not None and shard_of(raw_key.decode("utf-8", "replace")) != self.config.shard:
            # Another shard's (the key is the world id, by contract): not decoded at all,
            # so a new shard's group reads a long shared log quickly.
            return
        # Read before, after a restart or an abort: its side effects are already committed.
        seen = offset <= self._routed.get(partition, -1)
        self._routed[partition] = max(offset, self._routed.get(partition, -1))
        try:
            command = self._decode(msg.value(), SerializationContext(msg.topic() or ""))
        except SerializationError as exc:
            # No world id to go by: the record's key (a world id, by contract) says
            # whose shard sets it aside, so each bad record is dead-lettered once.
            key = (msg.key() or b"").decode("utf-8", "replace")
            if not seen and shard_of(key) == self.config.shard:
                self._dlq.send(msg, exc)
                self.stats.dead_letters += 1
                self.metrics.dead_letters.labels(self.config.worker_id).inc()
            return
        world_id = command.world_id
        if shard_of(world_id) != self.config.shard:
            return  # another shard's world: its own group applies it
        home = kafka.home_partition(world_id, self._n_partitions)
        if home != partition:
            if not seen:
                self._forward(msg, world_id, home)
            return
        if world_id in self.ended:
            ended = self.ended[world_id]
            if not seen and (ended.last_command_offset is None or offset > ended.last_command_offset):
                reason = (models.RejectReason.WORLD_RETIRED if ended.status == "RETIRED"
                          else models.RejectReason.WORLD_QUARANTINED)
                self._reject(world_id, partition, ended.tick, offset, command, reason,
                             f"world {world_id} is {ended.status.lower()}: {ended.reason}",
                             self._context(msg))
            return
        live = self.worlds.get(world_id) or self._wake(world_id, offset)
        if live is None:
            if seen or world_id in self.sleeping:
                return  # refused when first read
            if len(self.worlds) >= self.config.max_worlds:
                self.stats.refused_worlds += 1
                self._reject(world_id, partition, None, offset, command,
                             models.RejectReason.WORLD_LIMIT,
                             f"worker {self.config.worker_id} already runs its limit of "
                             f"{self.config.max_worlds} worlds", self._context(msg))
                return
            state = WorldState.empty(world_id, partition)
            live = _Live(state, DeadReckoner(self.config.delta_tolerance),
                         next_tick_at=time.monotonic(), new=True)
            self.worlds[world_id] = live
            self._status(state, "ACTIVE", f"created by command {command.command_id}")
        last = live.state.last_command_offset
        if last is not None and offset <= last:
            return  # consumed before the last snapshot or tick: already in the state
        live.pending.append((offset, command))
        live.last_active = time.monotonic()
        if (ctx := self._context(msg)) is not None:
            live.traces[offset] = ctx

    def _context(self, msg: Message) -> Context | None:
        """The trace context a command came with, while tracing is on."""
        return None if self.tracer is None else tracing.extract(msg.headers())

    def _forward(self, msg: Message, world_id: str, home: int) -> None:
        """Move a command to its world's home partition, in this transaction: exactly once."""
        assert self._producer is not None
        original = cast(list[tuple[str, str | bytes | None]], list(msg.headers() or []))
        where = f"{msg.topic()}/{msg.partition()}/{msg.offset()}".encode()
        headers = [*original, (FORWARDED_FROM, where)]
        self._producer.produce(topics.COMMANDS.name, key=world_id.encode(), value=msg.value(),
                               partition=home, headers=headers)
        self._producer.poll(0)
        self.stats.forwarded += 1
        self.metrics.forwarded.labels(self.config.worker_id).inc()

    def _wake(self, world_id: str, offset: int) -> _Live | None:
        if world_id not in self.sleeping:
            return None
        state, reckoner = self.sleeping[world_id]
        if state.last_command_offset is not None and offset <= state.last_command_offset:
            return None
        del self.sleeping[world_id]
        live = _Live(state, reckoner, next_tick_at=time.monotonic(), backend=state.world.backend)
        self.worlds[world_id] = live
        self.stats.woke += 1
        self._status(state, "ACTIVE", f"woke on the command at offset {offset}")
        log.info("world %s woke at tick %d", world_id, state.world.tick,
                 extra={"world": world_id, "tick": state.world.tick})
        return live

    def _reject(self, world_id: str, partition: int, tick: int | None, offset: int,
                command: models.PlayerCommand, reason: models.RejectReason, message: str,
                trace_context: Context | None = None) -> None:
        ts = now_ms()
        rejection = Rejection(offset, command, reason, message)
        record = rejection_record(world_id, tick, rejection, ts)
        headers = None if trace_context is None else self._processed(
            trace_context, world_id, partition, tick, offset, command, rejection, time.time_ns())
        self._produce_to(topics.COMMANDS_REJECTED, world_id, partition, record, ts, headers)
        self.stats.rejected += 1
        self.metrics.reject(reason.value)

    # -- ticking -----------------------------------------------------------------------

    def _tick_due(self) -> None:
        now = time.monotonic()
        due: list[tuple[_Live, int]] = []
        for lw in self.worlds.values():
            if self.config.lockstep:
                if lw.pending:
                    due.append((lw, 1))
                continue
            if self.config.unpaced:
                due.append((lw, 1))
                continue
            if lw.next_tick_at - _EARLY / lw.state.tick_rate_hz <= now:
                behind = int((now - lw.next_tick_at) * lw.state.tick_rate_hz) + 1
                due.append((lw, min(behind, _MAX_CATCH_UP)))
        idle_after = self.config.hibernate_after_s
        idle = [lw for lw in self.worlds.values()
                if idle_after > 0 and not lw.pending and not lw.new
                and now - lw.last_active > idle_after]
        if not due and not idle and not self._outbox and not self._in_txn:
            return
        assert self._producer is not None and self._consumer is not None
        producer = self._producer
        try:
            self._begin()
            for topic, world_id, partition, record in self._outbox:
                self._produce_to(topic, world_id, partition, record, now_ms())
            self._outbox.clear()
            for lw, count in due:
                for _ in range(count):
                    if lw.state.world_id not in self.worlds:
                        break  # quarantined or retired by the tick before
                    self._tick_one(lw)
                period = 1.0 / lw.state.tick_rate_hz
                lw.next_tick_at += count * period
                if lw.next_tick_at < now - 1.0:  # more than a second behind: drop the debt
                    lw.next_tick_at = now + period
            for lw in idle:
                if lw.state.world_id in self.worlds:
                    self._hibernate(lw, now)
            producer.commit_offsets(self._consumer, self._low_watermarks)
            self._in_txn = False
            tracing.end_all(self._sending)
            self._sending.clear()
            self.stats.redone = producer.redone
            self.stats.transactions += 1
            self.metrics.transactions.labels(self.config.worker_id).inc()
        except KafkaException as exc:
            err = exc.args[0]
            # Retriable: the broker did not answer in time (restarting, say). Aborting is
            # always allowed then, and the worlds rebuild from what was committed.
            if err.fatal() or not (err.txn_requires_abort() or err.retriable()):
                raise  # fenced or unrecoverable: these clients must stop (_restart_clients)
            log.warning("transaction aborted (%s); rebuilding worlds from the log", err.str())
            self._abort()
        except (SnapshotUnavailable, RegistryError) as exc:
            log.warning("%s; the tick is retried", exc)
            self._abort()
            self._stop.wait(1.0)

    def _begin(self) -> None:
        if not self._in_txn:
            assert self._producer is not None
            self._producer.begin_transaction()
            self._in_txn = True

    def _abort(self) -> None:
        assert self._producer is not None
        if self._in_txn:
            self._producer.abort(30)
            self._in_txn = False
        tracing.end_all(self._sending, "transaction aborted")
        self._sending.clear()
        self.stats.aborts += 1
        self.metrics.aborts.labels(self.config.worker_id).inc()
        self._reset()

    def _tick_one(self, lw: _Live) -> None:
        state = lw.state
        ts = now_ms()
        started = time.perf_counter()
        started_ns = time.time_ns()
        take = 1 if self.config.lockstep else len(lw.pending)
        commands, lw.pending = lw.pending[:take], lw.pending[take:]
        # Each output with what its trace headers are found by: the delta carries those
        # of the commands applied, a rejection those of its command (by offset).
        out: list[tuple[topics.Topic, dict[str, Any], int | None]] = []
        try:
            if lw.new:
                out.append((topics.STATE_SNAPSHOTS, snapshot_record(state, ts), None))
            t0 = time.perf_counter_ns()
            outcome = advance(state, commands, self._fetch_snapshot,
                              authenticate=self._authenticate)
            step_us = (time.perf_counter_ns() - t0) // 1000
            out.append((topics.PHYSICS_TICKS, tick_record(state, outcome, step_us, ts), None))
            delta = lw.reckoner.delta(state, outcome)
            delta.update(world_id=state.world_id, tick=outcome.tick, sim_time=outcome.sim_time,
                         ts=ts)
            out.append((topics.STATE_DELTAS, delta, _APPLIED))
            out += [(topics.COMMANDS_REJECTED,
                     rejection_record(state.world_id, outcome.tick, rej, ts), rej.offset)
                    for rej in outcome.rejections]
            if outcome.tick % state.snapshot_every == 0 or outcome.retire_reason is not None:
                out.append((topics.STATE_SNAPSHOTS, snapshot_record(state, ts), None))
            values = [(topic, self._encode(topic, record), key) for topic, record, key in out]
        except (KafkaException, SnapshotUnavailable, RegistryError):
            raise  # the platform's trouble, not the world's: the tick is retried
        except Exception as exc:  # isolation: one world's failure stays its own
            log.exception("world %s: tick %d failed", state.world_id, state.world.tick + 1)
            self._quarantine(lw, commands, f"tick {state.world.tick + 1} failed: "
                                           f"{type(exc).__name__}: {exc}")
            return
        headers = self._trace_tick(lw, commands, outcome, started_ns) if lw.traces else {}
        for topic, value, key in values:
            self._send(topic, state.world_id, state.partition, value, ts,
                       None if key is None else headers.get(key))
            if topic is topics.STATE_SNAPSHOTS:  # every snapshot is kept in the history too
                self._send(topics.STATE_SNAPSHOT_HISTORY, state.world_id, state.partition, value, ts)
        if outcome.tick % state.snapshot_every == 0 or outcome.retire_reason is not None:
            lw.snapshot_tick = outcome.tick
        elif lw.new:
            lw.snapshot_tick = outcome.tick - 1  # the creation snapshot, taken before the step
        lw.new = False
        s = self.stats
        s.ticks += 1
        s.commands += len(commands)
        s.rejected += outcome.n_rejected
        s.last_step_us = step_us
        self.metrics.tick(state.partition, time.perf_counter() - started, 1.0 / state.tick_rate_hz,
                          len(commands) - outcome.n_rejected,
                          (r.reason.value for r in outcome.rejections))
        if lw.backend is not None and outcome.backend != lw.backend:
            log.warning("world %s: backend switched from %s to %s at tick %d", state.world_id,
                        lw.backend, outcome.backend, outcome.tick)
            self._status(state, "ACTIVE", f"backend switched from {lw.backend} to "
                                          f"{outcome.backend} at tick {outcome.tick}")
        lw.backend = outcome.backend
        if outcome.retire_reason is not None:
            self._end_world(state.world_id, state.partition, state, "RETIRED", outcome.retire_reason)
        elif outcome.tick % state.snapshot_every == 0:
            # With every snapshot the world's status catches up (tick, bodies, hash), so
            # `cosmic world list` is never more than one snapshot interval behind.
            self._status(state, "ACTIVE", "running")

    def _hibernate(self, lw: _Live, now: float) -> None:
        state = lw.state
        ts = now_ms()
        if lw.snapshot_tick != state.world.tick:
            self._snapshot(lw, ts)
        self._status(state, "HIBERNATING", f"no command for {now - lw.last_active:.0f}s")
        del self.worlds[state.world_id]
        self.sleeping[state.world_id] = (state, lw.reckoner)
        self.stats.hibernated += 1
        log.info("world %s hibernates at tick %d", state.world_id, state.world.tick,
                 extra={"world": state.world_id, "tick": state.world.tick})

    def _snapshot(self, lw: _Live, ts: int) -> None:
        """The world's state now, to the compacted snapshots and to their history."""
        state = lw.state
        value = self._encode(topics.STATE_SNAPSHOTS, snapshot_record(state, ts))
        self._send(topics.STATE_SNAPSHOTS, state.world_id, state.partition, value, ts)
        self._send(topics.STATE_SNAPSHOT_HISTORY, state.world_id, state.partition, value, ts)
        lw.snapshot_tick = state.world.tick

    def _quarantine(self, lw: _Live, commands: Pending, reason: str) -> None:
        state = lw.state
        for offset, command in commands:
            self._reject(state.world_id, state.partition, state.world.tick, offset, command,
                         models.RejectReason.WORLD_QUARANTINED, reason,
                         lw.traces.pop(offset, None))
        if commands:
            state.last_command_offset = commands[-1][0]
        self._end_world(state.world_id, state.partition, state, "QUARANTINED", reason)

    def _end_world(self, world_id: str, partition: int, state: WorldState | None, status: str,
                   reason: str) -> None:
        """Stop a world for good (retired) or until an operator acts (quarantined)."""
        self.worlds.pop(world_id, None)
        self.sleeping.pop(world_id, None)
        tick = -1 if state is None else state.world.tick
        last = None if state is None else state.last_command_offset
        self.ended[world_id] = _Ended(status, reason, partition, tick, last)
        if status == "QUARANTINED":
            self.stats.quarantined += 1
            self.metrics.quarantined.labels(self.config.worker_id).inc()
            log.error("world %s quarantined: %s", world_id, reason,
                      extra={"world": world_id, "tick": tick, "partition": partition})
        else:
            log.info("world %s retired: %s", world_id, reason)
        self._write_status(world_id, partition, state, status, reason)

    def _status(self, state: WorldState, status: str, reason: str) -> None:
        self._write_status(state.world_id, state.partition, state, status, reason)

    def _write_status(self, world_id: str, partition: int, state: WorldState | None,
                      status: str, reason: str) -> None:
        ts = now_ms()
        record = status_record(world_id, partition, state, status, reason,
                               self.config.worker_id, ts)
        if self._in_txn:
            self._produce_to(topics.WORLDS, world_id, partition, record, ts)
        else:  # from a rebalance callback: written with the next transaction
            self._outbox.append((topics.WORLDS, world_id, partition, record))

    def _world_counts(self) -> dict[tuple[int, str], int]:
        """Worlds held, by (partition, state), every assigned partition present (metrics)."""
        counts = {(p, "live"): 0 for p in self._assigned}
        for key in [(lw.state.partition, "live") for lw in list(self.worlds.values())] + [
                (st.partition, "hibernating") for st, _ in list(self.sleeping.values())] + [
                (e.partition, e.status.lower()) for e in list(self.ended.values())]:
            counts[key] = counts.get(key, 0) + 1
        return counts

    # -- tracing -------------------------------------------------------------------------

    def _trace_tick(self, lw: _Live, commands: Pending, outcome: TickOutcome, started_ns: int
                    ) -> dict[int, tracing.Headers]:
        """Spans for the traced commands of a tick; the headers of its outputs, by key."""
        traced = [(offset, command, ctx) for offset, command in commands
                  if (ctx := lw.traces.pop(offset, None)) is not None]
        if not traced or self.tracer is None:
            return {}
        state = lw.state
        rejected = {r.offset: r for r in outcome.rejections}
        headers: dict[int, tracing.Headers] = {}
        applied: tracing.Headers = []
        for offset, command, ctx in traced:
            rejection = rejected.get(offset)
            found = self._processed(ctx, state.world_id, state.partition, outcome.tick, offset,
                                    command, rejection, started_ns)
            if rejection is None:
                applied += found
            else:
                headers[offset] = found
        if applied:
            headers[_APPLIED] = applied
        return headers

    def _processed(self, ctx: Context, world_id: str, partition: int, tick: int | None,
                   offset: int, command: models.PlayerCommand, rejection: Rejection | None,
                   started_ns: int) -> tracing.Headers:
        """One command's hop through this worker (applied in ``tick``, or rejected), and
        the span of the record that says so, open until its transaction ends: the trace
        headers that record carries."""
        assert self.tracer is not None
        topic = topics.STATE_DELTAS if rejection is None else topics.COMMANDS_REJECTED
        attrs = tracing.messaging(
            "process", topics.COMMANDS.name, **{
                tracing.MESSAGING_PARTITION: str(partition), tracing.MESSAGING_OFFSET: offset,
                tracing.WORLD: world_id, tracing.TICK: tick,
                tracing.COMMAND_ID: str(command.command_id),
                tracing.OUTCOME: "applied" if rejection is None else "rejected",
                tracing.REASON: None if rejection is None else rejection.reason.value})
        span = self.tracer.start_span(f"process {topics.COMMANDS.name}", ctx,
                                      tracing.CONSUMER, attrs, start_time=started_ns)
        send = self.tracer.start_span(
            f"send {topic.name}", trace.set_span_in_context(span), tracing.PRODUCER,
            tracing.messaging("send", topic.name,
                              **{tracing.MESSAGING_PARTITION: str(partition)}))
        span.end()
        self._sending.append(send)
        return tracing.inject(send)

    # -- producing -----------------------------------------------------------------------

    def _encode(self, topic: topics.Topic, record: dict[str, Any]) -> bytes:
        return self._encoders[topic.name](record, SerializationContext(topic.name))

    def _produce_to(self, topic: topics.Topic, world_id: str, partition: int,
                    record: dict[str, Any], ts: int, headers: tracing.Headers | None = None
                    ) -> None:
        self._send(topic, world_id, partition, self._encode(topic, record), ts, headers)

    def _send(self, topic: topics.Topic, world_id: str, partition: int, value: bytes,
              ts: int, headers: tracing.Headers | None = None) -> None:
        assert self._producer is not None
        # The world's home partition number on every topic: recovery reads one
        # partition of each, whatever partitioner produced the commands.
        extra: dict[str, Any] = {} if headers is None else {"headers": headers}
        self._producer.produce(topic.name, key=world_id.encode(), value=value,
                               partition=partition, timestamp=ts, **extra)
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
            routed = self._routed.get(tp.partition, -1)
            out.append(TopicPartition(tp.topic, tp.partition, low, metadata=f"{_ROUTED}{routed}"))
        return out


def _routed_from(metadata: str | None) -> int:
    if metadata and metadata.startswith(_ROUTED):
        try:
            return int(metadata[len(_ROUTED):])
        except ValueError:
            pass
    return -1


def build_worker(settings: Settings, config: WorkerConfig | None = None,
                 registry: SchemaSource | None = None) -> PhysicsWorker:
    """The worker `cosmic physics worker` and `cosmic up` run."""
    return PhysicsWorker(settings, registry or RegistryClient.from_settings(settings), config)
