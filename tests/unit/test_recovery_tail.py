"""Recovery reads the tick log backwards from its end (``ticks_after``): for every layout of
a partition's log it finds exactly the ticks a full forward read past each world's snapshot
finds, however far back they lie, and it reads only the tail when the snapshots are at the
worlds' last ticks (a handover)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import pytest

from cosmic import topics
from schemas.serde import AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry
from streams.worlds import recovery
from streams.worlds.eventlog import EXPORT_SCHEMA, Decoded, ExportedLog, KeyFilter, export_file
from streams.worlds.recovery import ticks_after

TICKS = topics.PHYSICS_TICKS.name
PARTITION = 1


def _tick(world: str, tick: int, ts: int) -> dict[str, Any]:
    return {"world_id": world, "tick": tick, "sim_time": tick * 0.1, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": 0,
            "n_rejected": 0, "body_count": 3, "total_energy": -1.0, "state_hash": f"h{tick}",
            "step_duration_us": 10, "backend": "cpu", "precision": "float64", "ts": ts}


class CountingLog(ExportedLog):
    """An exported log that counts the records its reads step through."""

    stepped = 0

    def read(self, topic: str, partition: int, start: int | None = None,
             stop: int | None = None, key: bytes | None = None,
             keys: KeyFilter | None = None) -> Iterator[Decoded]:
        for r in self._records(topic):
            if r["partition"] == partition and (start is None or r["offset"] >= start) and (
                    stop is None or r["offset"] <= stop):
                self.stepped += 1
        return super().read(topic, partition, start, stop, key, keys)


def _log(tmp_path: Path, ticks: list[dict[str, Any]]) -> CountingLog:
    """The ticks in this order at offsets 0, 2, 4, ... (transaction markers between)."""
    registry = LocalRegistry()
    encode = AvroSerializer(registry, "PhysicsTick")
    ctx = SerializationContext(TICKS)
    rows = [{"topic": TICKS, "partition": PARTITION, "offset": 2 * i, "timestamp": t["ts"],
             "key": t["world_id"].encode(), "value": encode(t, ctx)}
            for i, t in enumerate(ticks)]
    with export_file(tmp_path, TICKS).open("wb") as f:
        fastavro.writer(f, EXPORT_SCHEMA, rows)
    return CountingLog(tmp_path, registry)


def _layout(seed: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Worlds ticking side by side, another shard's among them, some stopped long ago
    (hibernated), with each world's snapshot somewhere in its ticks."""
    rng = random.Random(seed)
    worlds = [f"s:w{k}" for k in range(6)] + ["other:w0"]
    last = {w: rng.choice([40, 400, 4000]) for w in worlds}
    tick = dict.fromkeys(worlds, 0)
    out: list[dict[str, Any]] = []
    ts = 1_000_000
    while any(tick[w] < last[w] for w in worlds):
        w = rng.choice([w for w in worlds if tick[w] < last[w]])
        tick[w] += 1
        ts += 10
        out.append(_tick(w, tick[w], ts))
    snapshots = {w: rng.choice([0, last[w] // 2, last[w] - 1, last[w]]) for w in worlds[:-1]}
    return out, snapshots


def _forward(ticks: list[dict[str, Any]], after: dict[str, int]) -> list[tuple[str, int]]:
    return [(t["world_id"], t["tick"]) for t in ticks
            if t["world_id"] in after and t["tick"] > after[t["world_id"]]]


@pytest.mark.parametrize("seed", range(6))
def test_backwards_finds_what_a_forward_read_finds(tmp_path: Path, seed: int) -> None:
    ticks, after = _layout(seed)
    found = [(t["world_id"], t["tick"]) for t in
             ticks_after(_log(tmp_path, ticks), PARTITION, after, since_ms=0)]
    assert found == _forward(ticks, after)  # and in log order


def test_a_handover_reads_only_the_tail(tmp_path: Path) -> None:
    worlds = [f"s:w{k}" for k in range(10)]
    ticks = [_tick(w, n, 1_000_000 + 10 * (n * len(worlds) + i))
             for n in range(1, 1001) for i, w in enumerate(worlds)]
    log = _log(tmp_path, ticks)
    # Every world snapshotted at its last tick (1000): nothing to replay.
    assert ticks_after(log, PARTITION, dict.fromkeys(worlds, 1000), since_ms=0) == []
    assert log.stepped <= recovery._TAIL_SPAN
    # One world's snapshot is 300 ticks back (a crash): those 300, from further back.
    after = dict.fromkeys(worlds, 1000) | {"s:w3": 700}
    found = ticks_after(log, PARTITION, after, since_ms=0)
    assert [t["tick"] for t in found if t["world_id"] == "s:w3"] == list(range(701, 1001))
    assert {t["world_id"] for t in found} == {"s:w3"}


def test_no_tick_since_the_bound_means_none_to_replay(tmp_path: Path) -> None:
    ticks = [_tick("s:w0", n, 1_000_000 + n) for n in range(1, 50)]
    log = _log(tmp_path, ticks)
    assert ticks_after(log, PARTITION, {"s:w0": 10}, since_ms=2_000_000) == []
    assert [t["tick"] for t in ticks_after(log, PARTITION, {"s:w0": 10}, since_ms=1_000_030)] \
        == list(range(30, 50))
