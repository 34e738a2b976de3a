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
from dataclasses import dataclass
from typing import Any

from cosmic.settings import Settings
from schemas.serde import SchemaSource
from streams.physics.errors import PhysicsError

from .commands import advance
from .eventlog import KafkaLog, LogSource
from .events import state_from_snapshot
from .state import SnapshotFetcher, WorldState

log = logging.getLogger(__name__)

# Ticks are produced after the snapshot they follow, but producer clocks are
# not perfectly monotonic: start reading the tick log this far earlier.
CLOCK_MARGIN_MS = 60_000

Record = dict[str, Any]


class ReplayDivergence(PhysicsError):
    """A re-applied tick did not reproduce the recorded state hash."""

    def __init__(self, world_id: str, tick: int, expected: str, got: str) -> None:
        super().__init__(
            f"world {world_id} diverged at tick {tick}: recorded hash {expected}, replay got {got}",
            reason="REPLAY_DIVERGENCE",
        )
        self.world_id, self.tick, self.expected, self.got = world_id, tick, expected, got


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


def restore_snapshot(record: Record, partition: int) -> WorldState:
    """The state a snapshot holds, checked against the hash it carries."""
    state = state_from_snapshot(record, partition)
    if state.state_hash() != record["state_hash"]:
        raise ReplayDivergence(state.world_id, record["tick"], record["state_hash"],
                               state.state_hash())
    return state


def commands_of_tick(tick: Record, world_id: str, commands: dict[int, Record]) -> list[tuple[int, Record]]:
    """The commands a recorded tick applied: its offset range, this world's, in order."""
    first, last = tick["first_command_offset"], tick["last_command_offset"]
    if first is None or last is None:
        return []
    return [(o, commands[o]) for o in range(first, last + 1)
            if o in commands and commands[o]["world_id"] == world_id]


def replay(state: WorldState, ticks: list[Record], commands: dict[int, Record], *,
           verify: bool = True, fetch_snapshot: SnapshotFetcher | None = None,
           on_tick: Callable[[WorldState, Record], None] | None = None) -> int:
    """Re-apply recorded ``ticks`` (in tick order, those after ``state``'s tick) to ``state``.

    Returns how many were applied. Raises :class:`TickGap` when a tick is missing
    and, when ``verify`` is set, :class:`ReplayDivergence` at the first tick whose
    hash differs from the recorded one.
    """
    done = 0
    for tick in ticks:
        if tick["tick"] <= state.world.tick:
            continue
        if tick["tick"] != state.world.tick + 1:
            raise TickGap(state.world_id, state.world.tick, tick["tick"])
        advance(state, commands_of_tick(tick, state.world_id, commands), fetch_snapshot)
        if verify and state.state_hash() != tick["state_hash"]:
            raise ReplayDivergence(state.world_id, tick["tick"], tick["state_hash"],
                                   state.state_hash())
        done += 1
        if on_tick is not None:
            on_tick(state, tick)
    return done


def read_commands(source: LogSource, partition: int, ticks: list[Record],
                  world_id: str | None = None) -> dict[int, Record]:
    """The commands the given ticks applied, by offset (one read of their offset span)."""
    ranges = [(t["first_command_offset"], t["last_command_offset"]) for t in ticks
              if t["first_command_offset"] is not None]
    if not ranges:
        return {}
    first, last = min(a for a, _ in ranges), max(b for _, b in ranges)
    return {off: rec for off, _, rec in source.read(source.topics.commands, partition, first, last)
            if world_id is None or rec["world_id"] == world_id}


def recover_partition(settings: Settings, registry: SchemaSource, partition: int,
                      world_prefix: str = "", source: LogSource | None = None) -> Recovered:
    """Rebuild every world of ``partition`` (whose id starts with ``world_prefix``)
    to its last committed tick, verifying hashes."""
    t0 = time.monotonic()
    source = source or KafkaLog(settings, registry)
    latest: dict[str, tuple[int, Record]] = {}
    for _, ts, rec in source.read(source.topics.snapshots, partition):
        world = rec["world_id"]
        if world.startswith(world_prefix) and (
                world not in latest or rec["tick"] >= latest[world][1]["tick"]):
            latest[world] = (ts, rec)
    worlds = {w: restore_snapshot(rec, partition) for w, (_, rec) in latest.items()}
    replayed = 0
    if worlds:
        since = min(ts for ts, _ in latest.values()) - CLOCK_MARGIN_MS
        start = source.offset_for_time(source.topics.ticks, partition, since)
        ticks = [rec for _, _, rec in source.read(source.topics.ticks, partition, start)
                 if rec["world_id"] in worlds and rec["tick"] > worlds[rec["world_id"]].world.tick]
        commands = read_commands(source, partition, ticks)
        fetch = snapshot_fetcher(source)
        by_world: dict[str, list[Record]] = {}
        for t in ticks:
            by_world.setdefault(t["world_id"], []).append(t)
        for world_id, world_ticks in by_world.items():
            world_ticks.sort(key=lambda r: r["tick"])
            replayed += replay(worlds[world_id], world_ticks, commands, fetch_snapshot=fetch)
    seconds = time.monotonic() - t0
    log.info("partition %d: recovered %d worlds, re-applied %d ticks in %.2fs",
             partition, len(worlds), replayed, seconds)
    return Recovered(partition, worlds, replayed, seconds)


def snapshot_fetcher(source: LogSource) -> SnapshotFetcher:
    """Looks up the snapshot an ``AdoptSnapshot`` command names, in the history topic."""

    def fetch(partition: int, offset: int) -> Record | None:
        for off, _, rec in source.read(source.topics.history, partition, offset, offset):
            if off == offset:
                return rec
        return None

    return fetch
