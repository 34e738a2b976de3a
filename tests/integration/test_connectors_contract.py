"""One sink contract, passed by the TimescaleDB, ClickHouse and archive sinks alike.

Straight at the sink (no consumer): what a restarted sink reports as its
resume positions is exactly past what it stored, per partition, and what it
stored is each record once, per key in offset order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from connectors.archive import ArchiveSink
from connectors.base import Batch, Item, Sink
from connectors.clickhouse import ClickHouseSink
from connectors.lake import read_topic
from connectors.stores import clickhouse_client as ch_client
from connectors.timescale import TimescaleSink
from cosmic import topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration


@dataclass
class Store:
    make: Callable[[], Sink]
    # (world, tick) pairs stored for the topic, per world in the store's own order
    stored: Callable[[str], list[tuple[str, int]]]


def _timescale(settings: Settings, tmp: Path, mode: str = "auto") -> Iterator[Store]:
    with cs.private_database(settings, "cosmic_c", timescale=mode) as s:

        def stored(world: str) -> list[tuple[str, int]]:
            with psycopg.connect(s.postgres.dsn) as conn:
                return [(w, t) for w, t in conn.execute(
                    "SELECT world_id, tick FROM physics_ticks WHERE world_id LIKE %s "
                    "ORDER BY world_id, tick", (f"{world}%",))]

        yield Store(lambda: TimescaleSink(s, {}, connector_id="contract"), stored)


def _timescale_fallback(settings: Settings, tmp: Path) -> Iterator[Store]:
    """The same sink on native partitions (COSMIC_POSTGRES__TIMESCALE=off)."""
    yield from _timescale(settings, tmp, mode="off")


def _clickhouse(settings: Settings, tmp: Path) -> Iterator[Store]:
    name = f"cosmic_c_{uuid.uuid4().hex[:8]}"
    admin = ch_client(settings)
    admin.execute(f"CREATE DATABASE {name}")
    s = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": name})})

    def stored(world: str) -> list[tuple[str, int]]:
        cl = ch_client(s)
        try:
            return [(w, t) for w, t in cl.execute(
                "SELECT world_id, tick FROM physics_ticks WHERE world_id LIKE %(w)s "
                "ORDER BY world_id, _partition, _offset", {"w": f"{world}%"})]
        finally:
            cl.disconnect()

    try:
        yield Store(lambda: ClickHouseSink(s, {_TOPIC: topics.PHYSICS_TICKS}), stored)
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


def _archive(settings: Settings, tmp: Path) -> Iterator[Store]:
    s = settings.model_copy(update={"lake_dir": tmp / "lake"})

    def stored(world: str) -> list[tuple[str, int]]:
        recs = sorted(read_topic(s.lake_dir, _TOPIC),
                      key=lambda r: (r.value["world_id"], r.partition, r.offset))
        return [(r.value["world_id"], r.value["tick"]) for r in recs]

    yield Store(lambda: ArchiveSink(s, {_TOPIC: topics.PHYSICS_TICKS}), stored)


_TOPIC = f"contract.{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=[_timescale, _timescale_fallback, _clickhouse, _archive],
                ids=["timescale", "timescale-fallback", "clickhouse", "archive"])
def store(request, settings: Settings, stack: Stack, tmp_path: Path) -> Iterator[Store]:
    yield from request.param(settings, tmp_path)


def _batch(world: str, partition: int, offsets: range) -> Batch:
    # Two worlds per partition; ticks follow offsets, so offset order is tick order per key.
    items = [Item(_TOPIC, topics.PHYSICS_TICKS, partition, o, 0, None,
                  cs.tick(f"{world}-{partition}-{o % 2}", o)) for o in offsets]
    return Batch(items, {(_TOPIC, partition): offsets.stop})


def test_resume_positions_are_exactly_past_what_was_stored(store: Store):
    world = f"c{uuid.uuid4().hex[:8]}"
    sink = store.make()
    sink.open()
    try:
        for b in (_batch(world, 0, range(0, 10)), _batch(world, 1, range(0, 4)),
                  _batch(world, 0, range(10, 15))):
            sink.write(b)
        sink.drain()
    finally:
        sink.close()
    restarted = store.make()
    restarted.open()
    try:
        tps = [(_TOPIC, 0), (_TOPIC, 1), (_TOPIC, 2)]
        assert restarted.resume_positions(tps) == {(_TOPIC, 0): 15, (_TOPIC, 1): 4}
    finally:
        restarted.close()
    expected = sorted([(f"{world}-0-{o % 2}", o) for o in range(15)]
                      + [(f"{world}-1-{o % 2}", o) for o in range(4)])
    got = store.stored(world)
    assert sorted(got) == expected, "each record exactly once"
    per_key: dict[str, list[int]] = {}
    for w, t in got:
        per_key.setdefault(w, []).append(t)
    assert all(ticks == sorted(ticks) for ticks in per_key.values()), "offset order per key"
