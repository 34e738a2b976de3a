"""Point-in-time replay: rebuild one world as it was at any tick or moment, and prove it.

The nearest snapshot at or before the target comes from the snapshot history
topic (every snapshot ever taken, kept by time); the ticks recorded after it
are re-applied with the commands they name, each hash checked against the
recorded one when verifying. The result can be written to a snapshot file,
forked into a new world, or restored into the live world; both of the latter
go through the log as an ``AdoptSnapshot`` command, so the log still explains
everything that happened.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro
from fastavro.read import SchemaResolutionError
from fastavro.schema import SchemaParseException

from cosmic import kafka, topics
from cosmic.errors import CosmicError, SerializationError
from cosmic.settings import Settings
from cosmic.timeutil import now_ms, to_ms
from schemas import catalog, models
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext
from streams.security import signing

from .commands import Authenticate
from .eventlog import LogSource, LogTopics, Undecodable, partition_count, raw_messages
from .events import snapshot_record
from .recovery import (
    CLOCK_MARGIN_MS,
    ReplayDivergence,
    read_commands,
    replay,
    restore_snapshot,
    snapshot_fetcher,
)
from .state import WorldState

Record = dict[str, Any]
Progress = Callable[[int, int], None]  # (ticks done, ticks total)


class ReplayError(CosmicError):
    """The log does not hold what a replay needs (no such world, no snapshot, no such tick)."""


def nearest_snapshot(source: LogSource, world_id: str, partition: int, *,
                     max_tick: int | None = None, max_ts: int | None = None) -> tuple[int, Record]:
    """(timestamp ms, record) of the world's newest history snapshot within the bounds."""
    best: tuple[int, Record] | None = None
    for _, ts, rec in source.read(source.topics.history, partition, key=world_id.encode()):
        if rec["world_id"] != world_id:
            continue
        if (max_tick is not None and rec["tick"] > max_tick) or (max_ts is not None and ts > max_ts):
            continue
        if best is None or rec["tick"] >= best[1]["tick"]:
            best = (ts, rec)
    if best is None:
        raise ReplayError(f"no snapshot of world {world_id} in {source.topics.history}"
                          + ("" if max_tick is None else f" at or before tick {max_tick}")
                          + ("" if max_ts is None else " at or before that time"))
    return best


def recorded_ticks(source: LogSource, world_id: str, partition: int, *, after_tick: int,
                   since_ms: int, max_tick: int | None = None,
                   max_ts: int | None = None) -> list[Record]:
    """The world's recorded ticks after ``after_tick``, in order, within the bounds."""
    start = source.offset_for_time(source.topics.ticks, partition, since_ms - CLOCK_MARGIN_MS)
    out: list[Record] = []
    for _, ts, rec in source.read(source.topics.ticks, partition, start, key=world_id.encode()):
        if rec["world_id"] != world_id or rec["tick"] <= after_tick:
            continue
        if (max_tick is not None and rec["tick"] > max_tick) or (max_ts is not None and ts > max_ts):
            break
        out.append(rec)
    out.sort(key=lambda r: r["tick"])
    return out


class UnreadableLog(ReplayError):
    """A verifying replay read tick or snapshot records of the world that do not decode:
    it cannot prove anything about the ticks they held."""

    def __init__(self, world_id: str, bad: list[Undecodable]) -> None:
        where = ", ".join(f"{b.topic}[{b.partition}]@{b.offset}" for b in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        super().__init__(f"world {world_id}: {len(bad)} tick/snapshot record(s) do not decode "
                         f"({where}{more}): {bad[0].error}")
        self.world_id, self.bad = world_id, bad


@dataclass
class Skipped:
    """Undecodable records of the world a replay stepped over, by kind."""

    ticks: int = 0
    snapshots: int = 0
    commands: int = 0  # dead-lettered by the live worker too: never applied, so never replayed


@dataclass
class Rebuilt:
    state: WorldState
    partition: int
    from_snapshot_tick: int
    ticks_replayed: int
    target_tick: int
    target_record: Record | None  # the recorded PhysicsTick of the target, if it was replayed
    seconds: float
    skipped: Skipped = field(default_factory=Skipped)


class _Damage:
    """Collects what a source skips while a replay reads it, sorted into the world's ticks,
    snapshots and commands (the command span also holds other worlds' records)."""

    def __init__(self, source: LogSource, world_id: str) -> None:
        self.source, self.world_id = source, world_id
        # By coordinates: a replay may read a range twice (a second starting point).
        self._bad: dict[tuple[str, int, int], Undecodable] = {}

    def __enter__(self) -> _Damage:
        self._previous = self.source.on_undecodable
        self.source.on_undecodable = self._add
        return self

    def _add(self, bad: Undecodable) -> None:
        self._bad[(bad.topic, bad.partition, bad.offset)] = bad

    def __exit__(self, *_: object) -> None:
        self.source.on_undecodable = self._previous

    def _is_world(self, b: Undecodable) -> bool:
        # Commands are read by offset span, so another world's bad record can be in it.
        # Ticks and snapshots are read by the world's key, or (an adopted snapshot) by
        # the exact offset one of the world's commands names: any of those is the world's.
        return b.topic != self.source.topics.commands or b.key == self.world_id.encode()

    def integrity(self) -> list[Undecodable]:
        return [b for b in self._bad.values()
                if b.topic != self.source.topics.commands and self._is_world(b)]

    def refuse(self) -> None:
        if bad := self.integrity():
            raise UnreadableLog(self.world_id, bad)

    def skipped(self) -> Skipped:
        t = self.source.topics
        out = Skipped()
        for b in self._bad.values():
            if not self._is_world(b):
                continue
            if b.topic == t.ticks:
                out.ticks += 1
            elif b.topic == t.commands:
                out.commands += 1
            else:
                out.snapshots += 1
        return out


def _starting_point(source: LogSource, world_id: str, partition: int, *, bound: int | None,
                    at_tick: int | None, at_ms: int | None) -> tuple[Record, list[Record]]:
    """The snapshot at or before ``bound`` (and ``at_ms``), and the ticks after it up to
    the target."""
    snap_ts, snap = nearest_snapshot(source, world_id, partition, max_tick=bound, max_ts=at_ms)
    todo = recorded_ticks(source, world_id, partition, after_tick=snap["tick"], since_ms=snap_ts,
                          max_tick=at_tick, max_ts=at_ms)
    return snap, todo


def rebuild(source: LogSource, world_id: str, *, at_tick: int | None = None,
            at_time: datetime | None = None, from_tick: int | None = None, verify: bool = True,
            progress: Progress | None = None,
            authenticate: Authenticate = signing.trust_all) -> Rebuilt:
    """The world's state at ``at_tick`` (or at its last tick at or before ``at_time``,
    or at its latest tick); raises ReplayDivergence/TickGap/UnreadableLog when
    verification fails.

    Replay starts from the nearest snapshot at or before the target, or at or
    before ``from_tick`` when given (``0``: audit the world's whole history).
    A verifying replay starts strictly before the target, so that even a
    snapshot tick is re-applied and checked against its recorded tick hash.
    ``authenticate`` decides who sent each command, as the live worker did
    (:func:`streams.security.signing.authenticator` of the deployment's settings).
    """
    t0 = time.monotonic()
    partition = source.world_partition(world_id)
    at_ms = None if at_time is None else to_ms(at_time)
    if verify and at_tick == 0:
        raise ReplayError(f"tick 0 of world {world_id} is its first snapshot: no PhysicsTick "
                          "records it, so there is no recorded hash to verify it against")
    bound = at_tick if from_tick is None else (
        from_tick if at_tick is None else min(from_tick, at_tick))
    if verify and at_tick is not None:
        bound = at_tick - 1 if bound is None else min(bound, at_tick - 1)
    with _Damage(source, world_id) as damage:
        snap, todo = _starting_point(source, world_id, partition, bound=bound, at_tick=at_tick,
                                     at_ms=at_ms)
        if verify and at_tick is None and not todo and snap["tick"] > 0:
            # The target (the latest tick, or the last one before at_time) is this
            # snapshot's own tick: start again from the snapshot before it.
            snap, todo = _starting_point(source, world_id, partition, bound=snap["tick"] - 1,
                                         at_tick=at_tick, at_ms=at_ms)
        if verify:
            damage.refuse()
        state = restore_snapshot(snap, partition)
        target = at_tick if at_tick is not None else (todo[-1]["tick"] if todo else snap["tick"])
        reached = todo[-1]["tick"] if todo else snap["tick"]
        if reached < target:
            raise ReplayError(f"tick {target} of world {world_id} is not in the log: its recorded "
                              f"ticks after the snapshot of tick {snap['tick']} reach {reached}")
        if verify and not todo:
            raise ReplayError(f"world {world_id} has no recorded tick {target} to verify against")
        commands = read_commands(source, partition, todo, world_id)
        done = 0

        def on_tick(_: WorldState, __: Record) -> None:
            nonlocal done
            done += 1
            if progress is not None:
                progress(done, len(todo))

        replayed = replay(state, todo, commands, verify=verify,
                          fetch_snapshot=snapshot_fetcher(source), on_tick=on_tick,
                          authenticate=authenticate)
        if verify:
            damage.refuse()  # an adopted snapshot that would not decode
            final = todo[-1]
            if state.world.tick != final["tick"] or state.state_hash() != final["state_hash"]:
                raise ReplayDivergence(world_id, final["tick"], final["state_hash"],
                                       state.state_hash())
    return Rebuilt(state, partition, snap["tick"], replayed, target,
                   todo[-1] if todo else None, time.monotonic() - t0,
                   skipped=damage.skipped())


def world_exists(settings: Settings, world_id: str) -> bool:
    """Whether any tick or command of ``world_id`` is in its home partition of the live log.

    Raw records, not decoded ones: even a command that would not decode means
    the id is taken (the worker created the world from it and dead-lettered it).
    """
    key = world_id.encode()
    log_topics = LogTopics()
    for topic in (log_topics.commands, log_topics.ticks):
        partitions = partition_count(settings, topic)
        partition = kafka.partition_for(key, partitions)
        if any(msg.key() == key for msg in raw_messages(settings, topic, partition)):
            return True
    return False


# ----------------------------------------------------------------- snapshot files


def write_snapshot_file(state: WorldState, path: Path) -> None:
    """One WorldSnapshot record in an Avro object container file."""
    schema = catalog.parsed("WorldSnapshot")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        fastavro.writer(f, schema, [snapshot_record(state, now_ms())], codec="deflate")
    tmp.replace(path)


def read_snapshot_file(path: Path, partition: int = 0) -> tuple[WorldState, Record]:
    """The state in a snapshot file, its hash checked.

    The file is read with the WorldSnapshot schema as the reader's, so a container
    of any other record (or a snapshot of an older, compatible version) is told
    apart before anything is restored."""
    try:
        # From memory, not the file: a damaged length then reads short instead of
        # asking for gigabytes.
        data = io.BytesIO(path.read_bytes())
        records = list(fastavro.reader(data, reader_schema=catalog.parsed("WorldSnapshot")))
    except (OSError, ValueError, EOFError, SchemaParseException, KeyError, TypeError,
            IndexError, AttributeError, MemoryError) as exc:
        # A damaged container (its embedded schema included) is refused, not a crash.
        raise ReplayError(f"cannot read snapshot file {path}: {type(exc).__name__}: {exc}"
                          ) from None
    except SchemaResolutionError:
        with path.open("rb") as f:
            writer = fastavro.reader(f).writer_schema
        name = writer.get("name", "?") if isinstance(writer, dict) else writer
        raise ReplayError(f"{path} holds {name} records, not WorldSnapshot: not a snapshot "
                          "file (write one with `cosmic replay ... --out FILE`)") from None
    if len(records) != 1 or not isinstance(records[0], dict):
        raise ReplayError(f"{path} holds {len(records)} records, expected one WorldSnapshot")
    record: Record = records[0]
    try:
        return restore_snapshot(record, partition), record
    except (SerializationError, ValueError, KeyError, TypeError) as exc:
        raise ReplayError(f"the snapshot in {path} cannot be restored: {exc}") from None


# ----------------------------------------------------------------- fork and restore


@dataclass
class Adoption:
    world_id: str
    history_partition: int
    history_offset: int
    command_id: str


def adopt(settings: Settings, registry: SchemaSource, state: WorldState, *, into_world: str,
          source_world: str, source_tick: int, reason: str) -> Adoption:
    """Record ``state`` in the snapshot history, then tell ``into_world`` to adopt it.

    Used for a fork (a new world id) and a restore (the same world id): the
    ``AdoptSnapshot`` command in the command log is what the worker, and any
    later replay, applies.
    """
    n_parts = topics.STATE_SNAPSHOT_HISTORY.partitions
    partition = kafka.partition_for(into_world.encode(), n_parts)
    # The record is what it is, the source world's state at the source tick, under a
    # key of its own: replay's search for a world's snapshots never mistakes it for one.
    record = snapshot_record(state, now_ms())
    key = f"adopt:{into_world}".encode()
    producer = kafka.producer(settings, client_id="cosmic-replay")
    delivered: dict[str, Any] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        delivered["err"], delivered["offset"] = err, msg.offset()

    encode_snap = AvroSerializer(registry, "WorldSnapshot")
    producer.produce(
        topics.STATE_SNAPSHOT_HISTORY.name, key=key, partition=partition,
        value=encode_snap(record, SerializationContext(topics.STATE_SNAPSHOT_HISTORY.name)),
        on_delivery=on_delivery)
    producer.flush(30)
    if delivered.get("err") is not None or "offset" not in delivered:
        raise ReplayError(f"could not record the snapshot: {delivered.get('err')}")
    now = datetime.now(UTC)
    command = models.PlayerCommand(
        command_id=uuid.uuid4(), player_id="sre:cosmic-replay", world_id=into_world,
        client_ts=now, received_ts=now,
        command=models.AdoptSnapshot(
            snapshot_partition=partition, snapshot_offset=int(delivered["offset"]),
            state_hash=record["state_hash"], source_world_id=source_world,
            source_tick=source_tick, reason=reason))
    encode_cmd = AvroSerializer(registry, "PlayerCommand")
    producer.produce(topics.COMMANDS.name, key=into_world.encode(),
                     value=encode_cmd(signing.sign(command, models.Role.OPERATOR,
                                                   signing.KeyRing.for_settings(settings)).to_avro(),
                                      SerializationContext(topics.COMMANDS.name)))
    if producer.flush(30) > 0:
        raise ReplayError("could not send the AdoptSnapshot command")
    return Adoption(into_world, partition, int(delivered["offset"]), str(command.command_id))


__all__ = [
    "Adoption", "Rebuilt", "ReplayError", "Skipped", "UnreadableLog", "adopt",
    "read_snapshot_file", "rebuild", "world_exists", "write_snapshot_file",
]
