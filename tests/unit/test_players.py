"""Synthetic players act on the world they see: body tracking and choices, without Kafka."""

from __future__ import annotations

from collections import Counter
from io import BytesIO
from typing import Any

import numpy as np
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from schemas import catalog, models
from schemas.typed import to_model
from streams.players import SeenWorld
from streams.worlds import scenario
from streams.worlds.commands import advance
from streams.worlds.deltas import DeadReckoner
from streams.worlds.events import snapshot_record
from streams.worlds.state import WORLD_RADIUS, WorldState


def _through_avro(schema: str, record: dict[str, Any]) -> dict[str, Any]:
    """Encode and decode with the real schema, as the players' reader receives it."""
    parsed = parse_schema(catalog.load(schema))
    buf = BytesIO()
    schemaless_writer(buf, parsed, record)
    buf.seek(0)
    out = schemaless_reader(buf, parsed, return_record_name=True,
                            return_record_name_override=True)
    assert isinstance(out, dict)
    return out


class World:
    """A world as the worker runs it (the same advance and dead reckoning), in memory."""

    def __init__(self, asteroids: int) -> None:
        self.state = WorldState.empty("w", 0)
        self.reckoner = DeadReckoner(1e-3)
        self.offset = 0
        self.reasons: Counter[str] = Counter()
        opening = [c.to_avro() for c in scenario.star_system("w", asteroids=asteroids)]
        self.opened = self.tick(opening)  # the delta that shows every opening body

    def tick(self, commands: list[dict[str, Any]]) -> dict[str, Any]:
        batch = []
        for record in commands:
            batch.append((self.offset, to_model(models.PlayerCommand,
                                                _through_avro("PlayerCommand", record))))
            self.offset += 1
        outcome = advance(self.state, batch)
        self.reasons.update(r.reason for r in outcome.rejections)
        delta = self.reckoner.delta(self.state, outcome)
        delta.update(world_id="w", tick=outcome.tick, sim_time=outcome.sim_time, ts=0)
        return _through_avro("StateDelta", delta)

    def snapshot(self) -> dict[str, Any]:
        return _through_avro("WorldSnapshot", snapshot_record(self.state, 0))


def play(world: World, seen: SeenWorld, players: scenario.Players, ticks: int) -> int:
    """Players choose one command a tick from what they saw after the previous tick."""
    sent = 0
    pending: list[dict[str, Any]] = []
    for _ in range(ticks):
        seen.apply_delta(world.tick(pending))
        pending = []
        move = players.next(seen.asteroids(), seen.highest_id)
        if move is not None:
            if move.removes is not None:
                seen.removing(move.removes)
            pending.append(move.record)
            sent += 1
    seen.apply_delta(world.tick(pending))
    return sent


def test_seen_world_follows_a_snapshot_then_its_deltas() -> None:
    world = World(asteroids=5)
    world.tick([])
    seen = SeenWorld()
    seen.load_snapshot(world.snapshot())
    assert seen.asteroids().tolist() == list(range(1000, 1005))
    early = world.tick([scenario._envelope("w", "p", scenario.models.RemoveBody(body_id=1001),
                                           scenario.datetime.now(scenario.UTC)).to_avro()])
    spawn = scenario.Players("w", seed=1, invalid_every=0)
    late = world.tick([_spawn(spawn, seen.highest_id)])
    seen.apply_delta(early)
    seen.apply_delta(late)
    assert seen.asteroids().tolist() == [1000, 1002, 1003, 1004, 1005]
    assert seen.highest_id == 1005
    # A delta from before what is already seen (a reader started early) changes nothing.
    seen.apply_delta(early | {"removed_ids": np.array([1000], np.int64).tobytes()})
    assert 1000 in seen.asteroids()


def _spawn(players: scenario.Players, highest: int) -> dict[str, Any]:
    while True:
        move = players.next([], highest)
        if move is not None:
            return move.record


def test_players_aim_only_at_asteroids_in_sight_and_spawn_untaken_ids() -> None:
    players = scenario.Players("w", seed=3, invalid_every=20)
    in_sight = [1003, 1500, 2_000_000]
    spawned: list[int] = []
    kinds: Counter[str] = Counter()
    moves = [m for m in (players.next(in_sight, highest_seen=2_000_000) for _ in range(2000))
             if m is not None]
    for move in moves:
        name, body = move.record["command"]
        kinds[name.rsplit(".", 1)[-1] + ("!" if move.invalid else "")] += 1
        if move.invalid:
            assert body["body_id"] < 0 or body["position"]["x"] > WORLD_RADIUS
        elif name.endswith("SpawnBody"):
            spawned.append(body["body_id"])
        else:
            assert body["body_id"] in in_sight
        assert move.removes in (None, body["body_id"])
    assert min(spawned) > 2_000_000 and len(set(spawned)) == len(spawned)
    assert players.invalid == kinds["RemoveBody!"] + kinds["SpawnBody!"] == len(moves) // 20
    assert kinds["ApplyImpulse"] > kinds["SpawnBody"] > kinds["RemoveBody"] > 0


def test_players_without_a_target_in_sight_only_spawn() -> None:
    players = scenario.Players("w", seed=4, invalid_every=0)
    moves = [players.next([], highest_seen=1199) for _ in range(200)]
    chosen = [m for m in moves if m is not None]
    assert 0 < len(chosen) < 100
    assert {m.record["command"][0].rsplit(".", 1)[-1] for m in chosen} == {"SpawnBody"}


def test_a_second_run_on_the_same_world_is_refused_only_on_purpose() -> None:
    world = World(asteroids=20)
    seen = SeenWorld()
    seen.apply_delta(world.opened)
    first = scenario.Players("w", seed=1, invalid_every=10)
    sent = play(world, seen, first, 600)
    first_reasons = dict(world.reasons)
    assert sum(first_reasons.values()) == first.invalid == sent // 10
    gone = set(range(1000, 1020)) - {int(i) for i in world.state.world.ids}
    assert gone, "the first run removed some of the opening asteroids"

    # The second run starts from the latest snapshot, as a new `cosmic up` does.
    world.reasons.clear()
    again = SeenWorld()
    again.load_snapshot(world.snapshot())
    second = scenario.Players("w", seed=2, invalid_every=10)
    sent = play(world, again, second, 600)
    assert sum(world.reasons.values()) == second.invalid == sent // 10
    assert set(world.reasons) <= {"UNKNOWN_BODY", "OUT_OF_BOUNDS"}
