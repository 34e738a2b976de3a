"""Recovery is replay: rebuild worlds from a snapshot and the recorded ticks.

A world's state at tick n is a pure function of its last snapshot before n and
the commands applied since, which each ``PhysicsTick`` records as an offset
range of one partition of the command topic. This module re-applies recorded
ticks through :func:`~.simulation.advance`, checking every re-applied tick's
state hash against the recorded one. The physics worker uses it on every
start and rebalance (latest snapshot, then every tick after it); point-in-time
replay (:mod:`.pointintime`) uses the same pieces to stop at any tick.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException

from cosmic.errors import CosmicError, SerializationError, StoreError
from cosmic.settings import Settings
from schemas import models
from schemas.serde import SchemaSource
from schemas.typed import to_model
from streams.physics.errors import PhysicsError
from streams.security import signing

from .commands import Authenticate, advance
from .eventlog import KafkaLog, KeyFilter, LogSource
from .events import state_from_snapshot
from .state import SnapshotFetcher, SnapshotUnavailable, WorldState, shard_of

log = logging.getLogger(__name__)

# Ticks are produced after the snapshot they follow, but producer clocks are
# not perfectly monotonic: start reading the tick log this far earlier.
CLOCK_MARGIN_MS = 60_000

Record = dict[str, Any]
Commands = dict[int, models.PlayerCommand]


class ReplayDivergence(PhysicsError):
    """A re-applied tick did not reproduce the recorded state hash."""

    def __init__(self, world_id: str, tick: int, expected: str, got: str) -> None:
        super().__init__(
            f"world {world_id} diverged at tick {tick}: recorded hash {expected}, replay got {got}",
            reason="REPLAY_DIVERGENCE",
        )
        self.world_id, self.tick, self.expected, self.got = world_id, tick, expected, got


class BackendMismatch(PhysicsError):
    """The log's ticks were computed on another backend than this replay can use, so their
    hashes cannot be reproduced here (float arithmetic differs between backends)."""

    def __init__(self, world_id: str, tick: int, recorded: str, here: str) -> None:
        super().__init__(
            f"world {world_id}: tick {tick} was computed on the {recorded} backend, and this "
            f"process computes on {here}: its hashes cannot be reproduced here",
            reason="BACKEND_MISMATCH")
        self.world_id, self.tick, self.recorded, self.here = world_id, tick, recorded, here


class TickGap(PhysicsError):
    """The tick log of a world skips a tick: a tick event is missing."""

    def __init__(self, world_id: str, after: int, found: int) -> None:
        super().__init__(
            f"world {world_id}: tick log jumps from tick {after} to {found} "
            f"(tick {after + 1} is missing)", reason="TICK_GAP")
        self.world_id, self.tick = world_id, after + 1


@dataclass
class Recovered:
    """The worlds of one partition, and what happened while rebuilding them."""

    partition: int
    worlds: dict[str, WorldState]
    ticks_replayed: int
    seconds: float
    # Worlds that could not be rebuilt (a divergence, a gap, a backend it cannot run), why.
    failed: dict[str, str] = field(default_factory=dict)
    # The latest WorldStatus record of each world of the partition (all of its shard's).
    statuses: dict[str, Record] = field(default_factory=dict)


def restore_snapshot(record: Record, partition: int) -> WorldState:
    """The state a snapshot holds, checked against the hash it carries."""
    state = state_from_snapshot(record, partition)
    if state.state_hash() != record["state_hash"]:
        raise ReplayDivergence(state.world_id, record["tick"], record["state_hash"],
                               state.state_hash())
    return state


def commands_of_tick(tick: Record, world_id: str, commands: Commands) -> list[tuple[int, models.PlayerCommand]]:
    """The commands a recorded tick applied: its offset range, this world's, in order."""
    first, last = tick["first_command_offset"], tick["last_command_offset"]
    if first is None or last is None:
        return []
    return [(o, commands[o]) for o in range(first, last + 1)
            if o in commands and commands[o].world_id == world_id]


def follow_backend(state: WorldState, tick: Record) -> None:
    """Compute the next tick where the log says it was computed; raise when that cannot be."""
    recorded = tick.get("backend") or "cpu"
    if recorded == state.world.backend:
        return
    state.world.set_params(backend=recorded)  # falls back to the CPU when there is no GPU
    if state.world.backend != recorded:
        raise BackendMismatch(state.world_id, tick["tick"], recorded, state.world.backend)


def replay(state: WorldState, ticks: list[Record], commands: Commands, *,
           verify: bool = True, fetch_snapshot: SnapshotFetcher | None = None,
           on_tick: Callable[[WorldState, Record], None] | None = None,
           authenticate: Authenticate = signing.trust_all) -> int:
    """Re-apply recorded ``ticks`` (in tick order, those after ``state``'s tick) to ``state``.

    Each tick is computed on the backend it records (a switch in the log is
    followed). Returns how many were applied. Raises :class:`TickGap` when a
    tick is missing and, when ``verify`` is set, :class:`BackendMismatch` when a
    tick's backend is not available here and :class:`ReplayDivergence` at the
    first tick whose hash differs from the recorded one. ``authenticate`` must be
    what the live worker used (:func:`streams.security.signing.authenticator`), or
    commands it refused may be applied here.
    """
    done = 0
    for tick in ticks:
        if tick["tick"] <= state.world.tick:
            continue
        if tick["tick"] != state.world.tick + 1:
            raise TickGap(state.world_id, state.world.tick, tick["tick"])
        try:
            follow_backend(state, tick)
        except BackendMismatch:
            if verify:
                raise
            log.warning("world %s: tick %d was computed on %s, replayed on %s (hashes will differ)",
                        state.world_id, tick["tick"], tick.get("backend"), state.world.backend)
        advance(state, commands_of_tick(tick, state.world_id, commands), fetch_snapshot,
                authenticate=authenticate)
        if verify and state.state_hash() != tick["state_hash"]:
            raise ReplayDivergence(state.world_id, tick["tick"], tick["state_hash"],
                                   state.state_hash())
        done += 1
        if on_tick is not None:
            on_tick(state, tick)
    return done


def read_commands(source: LogSource, partition: int, ticks: list[Record],
                  world_id: str | None = None) -> Commands:
    """The commands the given ticks applied, by offset (one read of their offset span).

    Records that are not valid commands are left out, exactly as the live
    worker dead-lettered them instead of applying them.
    """
    ranges = [(t["first_command_offset"], t["last_command_offset"]) for t in ticks
              if t["first_command_offset"] is not None]
    if not ranges:
        return {}
    first, last = min(a for a, _ in ranges), max(b for _, b in ranges)
    out: Commands = {}
    for off, _, rec in source.read(source.topics.commands, partition, first, last):
        try:
            command = to_model(models.PlayerCommand, rec)
        except SerializationError:
            continue
        if world_id is None or command.world_id == world_id:
            out[off] = command
    return out


def of_shard(shard: str) -> KeyFilter:
    """Keys (world ids) of ``shard``'s worlds: a partition holds every shard's records, and
    recovery need not decode the others'."""
    def keep(key: bytes | None) -> bool:
        return key is not None and shard_of(key.decode("utf-8", "replace")) == shard
    return keep


def latest_statuses(source: LogSource, partition: int, shard: str) -> dict[str, Record]:
    """The newest WorldStatus of each world of ``shard`` in one partition of the worlds topic."""
    out: dict[str, Record] = {}
    for _, _, rec in source.read(source.topics.worlds, partition, keys=of_shard(shard)):
        if isinstance(rec, dict) and "status" in rec and shard_of(str(rec["world_id"])) == shard:
            out[str(rec["world_id"])] = rec
    return out


def latest_snapshots(source: LogSource, partition: int, shard: str
                     ) -> dict[str, tuple[int, Record]]:
    """The newest snapshot of each world of ``shard`` in one partition, with its timestamp."""
    latest: dict[str, tuple[int, Record]] = {}
    for _, ts, rec in source.read(source.topics.snapshots, partition, keys=of_shard(shard)):
        world = rec.get("world_id") if isinstance(rec, dict) else None
        if not isinstance(world, str) or "state_hash" not in rec or shard_of(world) != shard:
            continue
        if world not in latest or rec["tick"] >= latest[world][1]["tick"]:
            latest[world] = (ts, rec)
    return latest


def ticks_after(source: LogSource, partition: int, after: dict[str, int], since_ms: int
                ) -> list[Record]:
    """Every recorded tick of the worlds in ``after`` past the tick it gives, in log order,
    reading the partition from its end backwards, in growing spans, no further back than
    the first record at or after ``since_ms``.

    A world's ticks are in tick order in the log (one owner at a time, each starting
    where the last one committed), so once a span holds a tick of a world at or before
    its given tick, nothing older can be past it. A world handed over has its snapshot
    at its last tick: a few hundred records from the end settle it, where reading
    forwards from the snapshot's time (less the clock margin) meant a minute of the
    partition's ticks, every shard's."""
    if not after:
        return []
    topic = source.topics.ticks
    floor = source.offset_for_time(topic, partition, since_ms)
    if floor is None:
        return []  # nothing recorded since: no tick can follow the snapshots
    keys = {w.encode() for w in after}
    open_worlds = set(after)
    spans: list[list[Record]] = []  # newest first
    stop, span = source.end_offset(topic, partition), _TAIL_SPAN
    while open_worlds and stop > floor:
        start = max(floor, stop - span)
        found: list[Record] = []
        for _, _, rec in source.read(topic, partition, start, stop - 1, keys=keys.__contains__):
            world = rec.get("world_id")
            if world not in after:
                continue
            if rec["tick"] > after[world]:
                found.append(rec)
            else:
                open_worlds.discard(world)
        spans.append(found)
        stop, span = start, span * 4
    return [rec for found in reversed(spans) for rec in found]


# The first span of the tick log read backwards: a few seconds of a busy partition.
_TAIL_SPAN = 2000


def recover_partition(settings: Settings, registry: SchemaSource, partition: int,
                      shard: str = "", source: LogSource | None = None) -> Recovered:
    """Rebuild every world of ``shard`` in ``partition`` to its last committed tick,
    verifying hashes; a world that cannot be rebuilt is reported in ``failed``."""
    t0 = time.monotonic()
    source = source or KafkaLog(settings, registry)
    took: dict[str, float] = {}

    def timed(what: str, read: Callable[[], Any]) -> Any:
        started = time.monotonic()
        try:
            return read()
        finally:
            took[what] = time.monotonic() - started

    # The statuses do not depend on the snapshots: read side by side.
    with ThreadPoolExecutor(1, "statuses") as pool:
        statuses_read = pool.submit(timed, "statuses",
                                    lambda: latest_statuses(source, partition, shard))
        latest = timed("snapshots", lambda: latest_snapshots(source, partition, shard))
        statuses = statuses_read.result()
    worlds: dict[str, WorldState] = {}
    failed: dict[str, str] = {}
    for w, (_, rec) in latest.items():
        try:
            worlds[w] = restore_snapshot(rec, partition)
        except (CosmicError, ValueError, KeyError, TypeError) as exc:
            failed[w] = f"its latest snapshot (tick {rec.get('tick')}) cannot be restored: {exc}"
    replayed = 0
    if worlds:
        since = min(ts for w, (ts, _) in latest.items() if w in worlds) - CLOCK_MARGIN_MS
        ticks = timed("ticks", lambda: ticks_after(
            source, partition, {w: s.world.tick for w, s in worlds.items()}, since))
        commands = timed("commands", lambda: read_commands(source, partition, ticks))
        fetch = snapshot_fetcher(source)
        authenticate = signing.authenticator(settings)
        by_world: dict[str, list[Record]] = {}
        for t in ticks:
            by_world.setdefault(t["world_id"], []).append(t)
        started = time.monotonic()
        for world_id, world_ticks in by_world.items():
            world_ticks.sort(key=lambda r: r["tick"])
            try:
                replayed += replay(worlds[world_id], world_ticks, commands, fetch_snapshot=fetch,
                                   authenticate=authenticate)
            except PhysicsError as exc:
                failed[world_id] = str(exc)
                del worlds[world_id]
        took["replay"] = time.monotonic() - started
    seconds = time.monotonic() - t0
    log.info("partition %d: recovered %d worlds (%d failed), re-applied %d ticks in %.2fs (%s)",
             partition, len(worlds), len(failed), replayed, seconds,
             ", ".join(f"{what} {s:.2f}s" for what, s in took.items()))
    return Recovered(partition, worlds, replayed, seconds, failed, statuses)


def snapshot_fetcher(source: LogSource) -> SnapshotFetcher:
    """Looks up the snapshot an ``AdoptSnapshot`` command names, in the history topic.

    ``None`` when there is no snapshot there (no such partition, an offset
    outside the log, a record that is not a snapshot): the command is refused.
    A broker problem raises :class:`~.state.SnapshotUnavailable` instead.
    """
    known: list[int] = []

    def fetch(partition: int, offset: int) -> Record | None:
        try:
            if not known:
                known.extend(source.partitions(source.topics.history))
            if partition not in known or offset < 0:
                return None
            for off, _, rec in source.read(source.topics.history, partition, offset, offset):
                if off == offset and isinstance(rec, dict) and "state_hash" in rec:
                    return rec
            return None
        except (KafkaException, StoreError) as exc:
            raise SnapshotUnavailable(f"cannot read the snapshot history: {exc}") from None

    return fetch
