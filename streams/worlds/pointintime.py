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

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from cosmic import kafka, topics
from cosmic.errors import CosmicError
from cosmic.settings import Settings
from schemas import catalog, models
from schemas.serde import AvroSerializer, SchemaSource, SerializationContext

from .eventlog import LogSource
from .events import now_ms, snapshot_record
from .recovery import (
    CLOCK_MARGIN_MS,
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


@dataclass
class Rebuilt:
    state: WorldState
    partition: int
    from_snapshot_tick: int
    ticks_replayed: int
    target_tick: int
    target_record: Record | None  # the recorded PhysicsTick of the target, if it was replayed
    seconds: float


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


def rebuild(source: LogSource, world_id: str, *, at_tick: int | None = None,
            at_time: datetime | None = None, from_tick: int | None = None, verify: bool = True,
            progress: Progress | None = None) -> Rebuilt:
    """The world's state at ``at_tick`` (or at its last tick at or before ``at_time``,
    or at its latest tick); raises ReplayDivergence/TickGap when verification fails.

    Replay starts from the nearest snapshot at or before the target, or at or
    before ``from_tick`` when given (``0``: audit the world's whole history).
    """
    t0 = time.monotonic()
    partition = source.world_partition(world_id)
    at_ms = None if at_time is None else int(at_time.timestamp() * 1000)
    start_tick = at_tick if from_tick is None else (
        from_tick if at_tick is None else min(from_tick, at_tick))
    snap_ts, snap = nearest_snapshot(source, world_id, partition, max_tick=start_tick,
                                     max_ts=at_ms)
    state = restore_snapshot(snap, partition)
    todo = recorded_ticks(source, world_id, partition, after_tick=snap["tick"], since_ms=snap_ts,
                          max_tick=at_tick, max_ts=at_ms)
    target = at_tick if at_tick is not None else (todo[-1]["tick"] if todo else snap["tick"])
    reached = todo[-1]["tick"] if todo else snap["tick"]
    if reached < target:
        raise ReplayError(f"world {world_id} has recorded ticks only up to {reached}, not {target}")
    commands = read_commands(source, partition, todo, world_id)
    done = 0

    def on_tick(_: WorldState, __: Record) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(todo))

    replayed = replay(state, todo, commands, verify=verify,
                      fetch_snapshot=snapshot_fetcher(source), on_tick=on_tick)
    return Rebuilt(state, partition, snap["tick"], replayed, target,
                   todo[-1] if todo else None, time.monotonic() - t0)


# ----------------------------------------------------------------- snapshot files


def write_snapshot_file(state: WorldState, path: Path) -> None:
    """One WorldSnapshot record in an Avro object container file."""
    schema = catalog.parsed("WorldSnapshot")
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        fastavro.writer(f, schema, [snapshot_record(state, now_ms())], codec="deflate")
    tmp.replace(path)


def read_snapshot_file(path: Path, partition: int = 0) -> tuple[WorldState, Record]:
    """The state in a snapshot file, its hash checked."""
    try:
        with path.open("rb") as f:
            records = list(fastavro.reader(f))
    except (OSError, ValueError) as exc:
        raise ReplayError(f"cannot read snapshot file {path}: {exc}") from None
    if len(records) != 1 or not isinstance(records[0], dict):
        raise ReplayError(f"{path} holds {len(records)} records, expected one WorldSnapshot")
    record: Record = records[0]
    return restore_snapshot(record, partition), record


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
                     value=encode_cmd(command.to_avro(), SerializationContext(topics.COMMANDS.name)))
    if producer.flush(30) > 0:
        raise ReplayError("could not send the AdoptSnapshot command")
    return Adoption(into_world, partition, int(delivered["offset"]), str(command.command_id))


__all__ = [
    "Adoption", "Rebuilt", "ReplayError", "adopt", "read_snapshot_file",
    "rebuild", "write_snapshot_file",
]
