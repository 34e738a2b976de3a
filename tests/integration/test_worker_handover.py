"""Three physics workers share one shard's 30 worlds while they join, leave and crash:
every world's committed ticks run 1, 2, 3, ... with no gap and no duplicate, the log
replays to the live hashes, and each world's longest pause is reported."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cosmic import topics
from cosmic.kafka import home_partition
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.worlds.commands import NOT_PHYSICS
from streams.worlds.eventlog import KafkaLog
from streams.worlds.pointintime import rebuild
from streams.worlds.recovery import read_commands, replay
from streams.worlds.state import WorldState
from tests.fleet import (
    Commands,
    Fleet,
    Follower,
    committed_ticks,
    log_ends,
    longest_pauses,
    pauses_by_change,
    percentile,
    world_names,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_WORLDS = 30
TICK_HZ = 10.0
STEADY_S = 3.0  # between membership changes, all worlds ticking


def test_workers_join_and_leave_without_a_gap_or_a_duplicate(settings: Settings, stack: Stack,
                                                             tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"test-ho-{run}"
    worlds = world_names(shard, N_WORLDS)
    registry = RegistryClient.from_settings(settings)
    ticks_from = log_ends(settings, topics.PHYSICS_TICKS)
    follower = Follower(settings, registry, shard, ticks_from, log_ends(settings, topics.WORLDS))
    commands = Commands(settings, registry, worlds, asteroids=6)
    commands.open(tick_rate_hz=TICK_HZ, snapshot_every=40)
    commands.play(rate_hz=30.0)
    fleet = Fleet(shard, tmp_path)
    ids = [f"ho-{run}-{k}" for k in "abc"]
    a, b, c = ids
    changes: list[tuple[str, int]] = []  # what, and when (ms since the epoch)

    def change(what: str, holders: set[str], *actions: Callable[[], object]) -> None:
        """Make a membership change, wait until every world ticks again after it, then
        let all run steadily a while. A pause counts for the change begun before it ended."""
        changes.append((what, int(time.time() * 1000)))
        for action in actions:
            assert action() in (None, 0)  # a leaving worker exits 0
        follower.wait_until_all_tick(worlds, fleet, since_ms=int(time.time() * 1000),
                                     holders=holders)
        time.sleep(STEADY_S)
        follower.poll()

    try:
        change(f"{a} starts", {a}, lambda: fleet.start(a))
        change(f"{b} joins", {a, b}, lambda: fleet.start(b))
        change(f"{c} joins", {a, b, c}, lambda: fleet.start(c))
        change(f"{a} leaves", {b, c}, lambda: fleet.leave(a))
        change(f"{a} joins again", {a, b, c}, lambda: fleet.start(a))
        # A crash, and the same worker back: static membership returns its partitions.
        change(f"{b} crashes and restarts", {b}, lambda: fleet.kill(b),
               lambda: fleet.start(b))
        change(f"{c} leaves", {a, b}, lambda: fleet.leave(c))
        commands.stop()
        time.sleep(2.0)  # the last commands reach a tick
        ended_ms = int(time.time() * 1000)  # what follows is the workers' own shutdown
    finally:
        commands.stop()
        fleet.stop_all()
        follower.close()

    ticks = committed_ticks(settings, registry, shard, ticks_from)
    assert sorted(ticks) == worlds
    texts = {p.stem: p.read_text() for p in tmp_path.glob("*.log")}
    logs = "\n".join(t[-1500:] for t in texts.values())
    for world, rows in ticks.items():
        numbers = [rec["tick"] for _, rec in rows]
        # Committed ticks only (read_committed), each exactly once, in order: 1, 2, ..., n.
        assert numbers == list(range(1, len(numbers) + 1)), (world, _first_fault(numbers), logs)

    # The log proves what ran live: every world rebuilt from nothing through its recorded
    # ticks reaches each recorded hash, and every player command was consumed exactly once.
    source = KafkaLog(settings, registry)
    for partition in range(topics.COMMANDS.partitions):
        mine = {w: [rec for _, rec in rows] for w, rows in ticks.items()
                if home_partition(w, topics.COMMANDS.partitions) == partition}
        commands_read = read_commands(source, partition, [t for ts in mine.values() for t in ts])
        for world, recs in mine.items():
            state = WorldState.empty(world, partition)
            assert replay(state, recs, commands_read, verify=True) == len(recs)
            applied = sum(r["n_applied"] + r["n_rejected"] for r in recs)
            sent = sum(1 for cmd in commands_read.values()
                       if cmd.world_id == world and not isinstance(cmd.command, NOT_PHYSICS))
            assert applied == sent, (world, applied, sent)
        # And `cosmic replay --from-tick 0 --verify`'s own path, for one world of each.
        world = min(mine)
        rebuilt = rebuild(source, world, from_tick=0, verify=True)
        assert rebuilt.state.state_hash() == mine[world][-1]["state_hash"]

    # A worker that leaves hands its worlds over (snapshots at their last tick, committed)
    # before it goes; no worker ever had to throw its worlds away and rebuild them from the
    # log (a rebalance that moved none of its partitions used to make it do so).
    for worker in (a, c):
        assert "worlds handed over" in texts[worker], texts[worker][-3000:]
    for worker, text in texts.items():
        assert "rebuilding worlds from the log" not in text, (worker, text[-3000:])

    during = {w: [(ts, r) for ts, r in rows if ts <= ended_ms] for w, rows in ticks.items()}
    waits = pauses_by_change(during, changes, 3.0 / TICK_HZ)
    handovers = {w: 0.0 for w in worlds}  # each world's longest pause in a handover
    for what, world, wait in waits:
        if "crashes" not in what:
            handovers[world] = max(handovers[world], wait)
    longest = sorted(handovers.values())
    print(f"\nhandover: {len(changes)} membership changes, {sum(len(r) for r in ticks.values())} "
          f"ticks of {len(ticks)} worlds at {TICK_HZ:g} Hz; each world's longest pause in a "
          f"handover (a crash aside): p50 {percentile(longest, 0.5):.2f}s "
          f"p99 {percentile(longest, 0.99):.2f}s max {longest[-1]:.2f}s; with the crash: "
          f"max {max(longest_pauses(during).values()):.2f}s")
    for what, _ in changes:
        found = [wait for change, _, wait in waits if change == what]
        print(f"  {what}: {len(found)} waits over {3.0 / TICK_HZ:.1f}s, longest "
              f"{max(found, default=0.0):.2f}s")
    registry.close()


def _first_fault(numbers: list[int]) -> str:
    for i, n in enumerate(numbers):
        if n != i + 1:
            return f"position {i}: tick {n} where {i + 1} belongs"
    return "none"
