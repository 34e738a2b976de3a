"""Recovery is replay: rebuild worlds from their last snapshot and the recorded ticks.

A world's state at tick n is a pure function of its last snapshot before n and
the commands applied since, which each ``PhysicsTick`` records as an offset
range of one partition of the command topic. This module reads those three
logs for one partition and re-applies ticks through
:func:`~.simulation.advance`, checking every re-applied tick's state hash
against the recorded one. The physics worker uses it on every start and
rebalance; point-in-time recovery builds on the same pieces.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError
from cosmic.settings import Settings
from schemas.serde import AvroDeserializer, SchemaSource, SerializationContext

from .codec import state_from_snapshot
from .errors import PhysicsError
from .simulation import WorldState, advance

log = logging.getLogger(__name__)

# Ticks are produced after the snapshot they follow, but producer clocks are
# not perfectly monotonic: start reading the tick log this far earlier.
_CLOCK_MARGIN_MS = 60_000
_IDLE_POLLS_AT_END = 8


class ReplayDivergence(PhysicsError):
    """A re-applied tick did not reproduce the recorded state hash."""

    def __init__(self, world_id: str, tick: int, expected: str, got: str) -> None:
        super().__init__(
            f"world {world_id} diverged at tick {tick}: recorded hash {expected}, replay got {got}",
            reason="REPLAY_DIVERGENCE",
        )
        self.world_id, self.tick, self.expected, self.got = world_id, tick, expected, got


@dataclass
class Recovered:
    """The worlds of one partition, and what happened while rebuilding them."""

    partition: int
    worlds: dict[str, WorldState]
    ticks_replayed: int
    seconds: float


Decoded = tuple[int, int, dict[str, Any]]  # (offset, timestamp ms, record)


class PartitionLog:
    """Reads one partition of the command, tick and snapshot topics, decoded."""

    def __init__(self, settings: Settings, registry: SchemaSource, partition: int) -> None:
        self.settings = settings
        self.partition = partition
        self._decode = AvroDeserializer(registry)

    def _consumer(self) -> Consumer:
        return kafka.consumer(self.settings, group_id=f"cosmic-replay-{uuid.uuid4().hex[:8]}",
                              **{"enable.auto.offset.store": False})

    def read(self, topic: topics.Topic, start: int = OFFSET_BEGINNING,
             stop: int | None = None) -> Iterator[Decoded]:
        """Committed records of ``topic`` in this partition from ``start`` up to ``stop`` (inclusive),
        or to the end; undecodable records are skipped, as the live path dead-letters them."""
        consumer = self._consumer()
        tp = TopicPartition(topic.name, self.partition)
        try:
            low, high = consumer.get_watermark_offsets(tp, timeout=30)
            end = high if stop is None else min(high, stop + 1)
            begin = low if start == OFFSET_BEGINNING else max(start, low)
            if begin >= end:
                return
            consumer.assign([TopicPartition(topic.name, self.partition, begin)])
            ctx = SerializationContext(topic.name)
            idle = 0
            while idle < _IDLE_POLLS_AT_END:
                msgs = consumer.consume(1000, timeout=0.25)
                if not msgs:
                    idle += 1
                for msg in msgs:
                    if msg.error():
                        raise KafkaException(msg.error())
                    idle = 0
                    offset = msg.offset() or 0
                    if offset >= end:
                        return
                    try:
                        record = self._decode(msg.value(), ctx)
                    except SerializationError:
                        continue
                    yield offset, msg.timestamp()[1], record
                (pos,) = consumer.position([tp])
                if pos.offset >= end:
                    return
        finally:
            consumer.close()

    def offset_for_time(self, topic: topics.Topic, ts_ms: int) -> int:
        consumer = self._consumer()
        try:
            (tp,) = consumer.offsets_for_times(
                [TopicPartition(topic.name, self.partition, max(0, ts_ms))], timeout=30)
        finally:
            consumer.close()
        return tp.offset if tp.offset >= 0 else OFFSET_BEGINNING

    def latest_snapshots(self) -> dict[str, tuple[int, dict[str, Any]]]:
        """Per world, (timestamp ms, record) of its newest snapshot in this partition."""
        latest: dict[str, tuple[int, dict[str, Any]]] = {}
        for _, ts, rec in self.read(topics.STATE_SNAPSHOTS):
            world = rec["world_id"]
            if world not in latest or rec["tick"] >= latest[world][1]["tick"]:
                latest[world] = (ts, rec)
        return latest

    def ticks_since(self, since_ms: int, keep: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        start = self.offset_for_time(topics.PHYSICS_TICKS, since_ms - _CLOCK_MARGIN_MS)
        return [rec for _, _, rec in self.read(topics.PHYSICS_TICKS, start) if keep(rec)]

    def commands(self, first: int, last: int, world_id: str | None = None) -> dict[int, dict[str, Any]]:
        return {
            off: rec for off, _, rec in self.read(topics.COMMANDS, first, last)
            if world_id is None or rec["world_id"] == world_id
        }


def commands_of_tick(tick: dict[str, Any], world_id: str,
                     commands: dict[int, dict[str, Any]]) -> list[tuple[int, dict[str, Any]]]:
    """The commands a recorded tick applied: its offset range, this world's, in order."""
    first, last = tick["first_command_offset"], tick["last_command_offset"]
    if first is None or last is None:
        return []
    return [(o, commands[o]) for o in range(first, last + 1)
            if o in commands and commands[o]["world_id"] == world_id]


def replay(state: WorldState, ticks: list[dict[str, Any]],
           commands: dict[int, dict[str, Any]], *, verify: bool = True) -> int:
    """Re-apply recorded ``ticks`` (in order, after ``state``'s tick) to ``state``.

    Returns how many were applied; raises :class:`ReplayDivergence` on the first
    tick whose hash differs from the recorded one when ``verify`` is set.
    """
    done = 0
    for tick in ticks:
        if tick["tick"] <= state.world.tick:
            continue
        if tick["tick"] != state.world.tick + 1:
            raise PhysicsError(
                f"world {state.world_id}: tick log jumps from {state.world.tick} to {tick['tick']}",
                reason="TICK_GAP",
            )
        advance(state, commands_of_tick(tick, state.world_id, commands))
        if verify and state.state_hash() != tick["state_hash"]:
            raise ReplayDivergence(state.world_id, tick["tick"], tick["state_hash"],
                                   state.state_hash())
        done += 1
    return done


def recover_partition(settings: Settings, registry: SchemaSource, partition: int,
                      world_prefix: str = "") -> Recovered:
    """Rebuild every world of ``partition`` (whose id starts with ``world_prefix``)
    to its last committed tick, verifying hashes."""
    t0 = time.monotonic()
    plog = PartitionLog(settings, registry, partition)
    snapshots = {w: s for w, s in plog.latest_snapshots().items() if w.startswith(world_prefix)}
    worlds: dict[str, WorldState] = {}
    for world_id, (_, rec) in snapshots.items():
        state = state_from_snapshot(rec, partition)
        if state.state_hash() != rec["state_hash"]:
            raise ReplayDivergence(world_id, rec["tick"], rec["state_hash"], state.state_hash())
        worlds[world_id] = state
    replayed = 0
    if worlds:
        since = min(ts for ts, _ in snapshots.values())
        ticks = plog.ticks_since(
            since, lambda r: r["world_id"] in worlds and r["tick"] > worlds[r["world_id"]].world.tick)
        ranges = [(t["first_command_offset"], t["last_command_offset"]) for t in ticks
                  if t["first_command_offset"] is not None]
        commands = plog.commands(min(a for a, _ in ranges), max(b for _, b in ranges)) if ranges else {}
        by_world: dict[str, list[dict[str, Any]]] = {}
        for t in ticks:
            by_world.setdefault(t["world_id"], []).append(t)
        for world_id, world_ticks in by_world.items():
            world_ticks.sort(key=lambda r: r["tick"])
            replayed += replay(worlds[world_id], world_ticks, commands)
    seconds = time.monotonic() - t0
    log.info("partition %d: recovered %d worlds, re-applied %d ticks in %.2fs",
             partition, len(worlds), replayed, seconds)
    return Recovered(partition, worlds, replayed, seconds)
