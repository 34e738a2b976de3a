"""TimescaleDB connector against real PostgreSQL: exactly N rows, crash between write and
commit, and a PostgreSQL outage. Each test writes into a private database, so counts are
exact and nothing is left in the shared one."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from connectors import timescale, timescale_convert
from cosmic import topics
from cosmic.settings import ConnectorSettings, PostgresSettings, Settings
from cosmic.stack import Stack
from cosmic.stack.postgres import PostgresService
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration


@pytest.fixture
def pg_db(settings: Settings, stack: Stack) -> Iterator[Settings]:
    """Settings pointing at a fresh private database, dropped afterwards."""
    with cs.private_database(settings, "cosmic_t") as private:
        yield private.model_copy(update={"connectors": ConnectorSettings(
            batch_rows=50, batch_interval_s=0.3)})


def _timescale_off(s: Settings) -> Settings:
    """The same database with the fallback forced by the setting (as COSMIC_POSTGRES__TIMESCALE=off)."""
    return s.model_copy(update={"postgres": s.postgres.model_copy(update={"timescale": "off"})})


HYPERTABLES = ["civilization_events", "ecosystem_events", "live_metrics", "metric_points",
               "physics_ticks"]


def _count(s: Settings, query: str, *params: Any) -> int:
    try:
        with psycopg.connect(s.postgres.dsn, connect_timeout=3) as conn:
            row = conn.execute(query, params).fetchone()
    except psycopg.OperationalError:
        return -1
    return int(row[0]) if row else 0


def _ticks(world: str, n: int) -> list[dict[str, Any]]:
    # A few ticks two days back: their daily partition must be created on demand.
    return [cs.tick(f"{world}-{i % 3}", i, cs.NOW - timedelta(days=2) if i < 3 else None)
            for i in range(n)]


def _assert_ticks_exact(s: Settings, world: str, n: int) -> None:
    with psycopg.connect(s.postgres.dsn) as conn:
        rows = conn.execute("SELECT tick, count(*) FROM physics_ticks WHERE world_id LIKE %s "
                            "GROUP BY tick ORDER BY tick", (f"{world}-%",)).fetchall()
    assert rows == [(i, 1) for i in range(n)], "every tick exactly once, no gap"


def test_fallback_path_exactly_n_rows_and_views(pg_db: Settings, topic_factory):
    """The native-partitioning fallback, which runs everywhere: forced by the setting, so it
    runs where TimescaleDB is installed too."""
    pg_db = _timescale_off(pg_db)
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_ticks, t_eco, t_civ, t_met, t_dlq = (topic_factory() for _ in range(5))
    n = 60
    cs.produce(pg_db, t_ticks, "PhysicsTick", _ticks(world, n), garbage=2)
    cs.produce(pg_db, t_eco, "EcosystemEvent", [cs.ecosystem(world, i) for i in range(12)])
    cs.produce(pg_db, t_civ, "CivilizationEvent", [cs.civilization(world, i) for i in range(9)])
    cs.produce(pg_db, t_met, "MetricPoint", [cs.metric(world, i) for i in range(6)],
               key_field="name")
    routes = {t_ticks: topics.PHYSICS_TICKS, t_eco: topics.ECOSYSTEM_EVENTS,
              t_civ: topics.CIVILIZATION_EVENTS, t_met: topics.METRICS}
    dlq = topics.Topic(t_dlq, key="k", value="v", doc="test dead letters")
    conn = timescale.build(pg_db, routes, group_id=f"g-{uuid.uuid4().hex[:8]}", dlq_topic=dlq)
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.rows_written >= n + 12 + 9 + 6, 60, "all rows",
                    conn.failure)
    finally:
        conn.stop()
    print(f"\nTimescaleDB connector path: {conn.store_note}")
    assert conn.store_note.startswith("native: ")
    _assert_ticks_exact(pg_db, world, n)
    assert _count(pg_db, "SELECT count(*) FROM ecosystem_events WHERE world_id = %s", world) == 12
    assert _count(pg_db, "SELECT count(*) FROM civilization_events WHERE world_id = %s",
                  world) == 9
    assert _count(pg_db, "SELECT count(*) FROM metric_points WHERE world_id = %s", world) == 6
    assert conn.metrics.dead_letters == 2
    dead = cs.read_topic(pg_db, t_dlq, None, 2, timeout_s=10)
    assert sum(len(v) for v in dead.values()) == 2
    with psycopg.connect(pg_db.postgres.dsn) as c:
        parts = {r[0] for r in c.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'physics_ticks'::regclass")}
        per_minute = c.execute(
            "SELECT sum(ticks) FROM physics_ticks_per_world_minute WHERE world_id LIKE %s",
            (f"{world}-%",)).fetchone()
        civ_types = dict(c.execute(
            "SELECT event_type, count(*) FROM civilization_events GROUP BY 1").fetchall())
    old_day = (cs.NOW - timedelta(days=2)).strftime("%Y%m%d")
    assert f"physics_ticks_p{old_day}" in parts
    assert f"physics_ticks_p{cs.NOW:%Y%m%d}" in parts
    assert per_minute is not None and per_minute[0] == n
    if cs.timescaledb_available(pg_db):
        # The setting kept the extension out of this database altogether.
        assert _count(pg_db, "SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'") == 0
    assert civ_types == {"TechAdvanced": 3, "ResourceUsed": 3, "CivilizationFounded": 3}
    text = conn.metrics_text()
    assert f'cosmic_connector_rows_written_total{{connector="timescale"}} {n + 27}.0' in text


def test_values_postgres_refuses_are_dead_lettered_alone(pg_db: Settings, topic_factory):
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic, t_dlq = topic_factory(partitions=1), topic_factory()
    ticks = [cs.tick(world, i) for i in range(30)]
    ticks[17]["state_hash"] = "nul\x00inside"  # valid Avro, but no PostgreSQL text holds NUL
    cs.produce(pg_db, topic, "PhysicsTick", ticks)
    conn = timescale.build(pg_db, {topic: topics.PHYSICS_TICKS},
                           group_id=f"g-{uuid.uuid4().hex[:8]}", prefer="native",
                           dlq_topic=topics.Topic(t_dlq, key="k", value="v", doc="test"))
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.dead_letters >= 1 and conn.metrics.batches >= 1, 60,
                    "the refused row to be dead-lettered", conn.failure)
    finally:
        conn.stop()
    with psycopg.connect(pg_db.postgres.dsn) as c:
        ticks_stored = [r[0] for r in c.execute(
            "SELECT tick FROM physics_ticks WHERE world_id = %s ORDER BY tick", (world,))]
        (position,) = c.execute("SELECT next_offset FROM connector_offsets WHERE topic = %s",
                                (topic,)).fetchone() or (None,)
    assert ticks_stored == [i for i in range(30) if i != 17]
    assert position == 30
    dead = [msg for msgs in cs.read_topic(pg_db, t_dlq, None, 1, timeout_s=10).values()
            for _, msg in msgs]
    assert len(dead) == 1
    headers = dict(dead[0].headers() or [])
    assert headers["cosmic.source.offset"] == b"17"
    assert headers["cosmic.error.type"] == b"StoreRejected"


def test_timescaledb_extension_path(pg_db: Settings, topic_factory):
    if not cs.timescaledb_available(pg_db):
        pytest.skip("TimescaleDB extension not installed on this PostgreSQL: only the native "
                    "partitioning fallback ran (test_fallback_path_exactly_n_rows_and_views)")
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic = topic_factory()
    cs.produce(pg_db, topic, "PhysicsTick", _ticks(world, 30))
    # No preference: "auto" takes the extension wherever it is installed.
    conn = timescale.build(pg_db, {topic: topics.PHYSICS_TICKS},
                           group_id=f"g-{uuid.uuid4().hex[:8]}")
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.rows_written >= 30, 60, "all rows", conn.failure)
    finally:
        conn.stop()
    print(f"\nTimescaleDB connector path: {conn.store_note}")
    assert conn.store_note.startswith("timescale: ")
    _assert_ticks_exact(pg_db, world, 30)
    with psycopg.connect(pg_db.postgres.dsn) as c:
        hypertables = [r[0] for r in c.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1")]
        caggs = {r[0] for r in c.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates")}
        chunk_days = {r[0] for r in c.execute(
            "SELECT (range_start AT TIME ZONE 'UTC')::date FROM timescaledb_information.chunks "
            "WHERE hypertable_name = 'physics_ticks'")}
    # The background refresh policy may have materialized the old days already, before
    # those rows came (then they wait for its next run): refresh now, as it would.
    with psycopg.connect(pg_db.postgres.dsn, autocommit=True) as c:
        timescale_convert.refresh_aggregate(c, "physics_ticks_per_world_minute", timeout_s=60)
        per_minute = c.execute(
            "SELECT sum(ticks) FROM physics_ticks_per_world_minute WHERE world_id LIKE %s",
            (f"{world}-%",)).fetchone()
    assert hypertables == HYPERTABLES
    assert caggs == {"physics_ticks_per_world_minute", "metric_points_per_world_minute",
                     "ecosystem_events_per_world_minute", "civilization_events_per_world_minute"}
    # Daily chunks: one for the ticks two days back, one for today's (no partition was made
    # ahead: that is the fallback's job).
    assert chunk_days == {(cs.NOW - timedelta(days=2)).date(), cs.NOW.date()}
    assert per_minute is not None and per_minute[0] == 30


def test_sigkill_between_write_and_commit(pg_db: Settings, topic_factory, tmp_path: Path):
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic, t_dlq = topic_factory(), topic_factory()
    n = 150
    cs.produce(pg_db, topic, "PhysicsTick", _ticks(world, n))
    timescale.migrate(pg_db, prefer="native")
    args = ("timescale", "--route", f"{topic}={topics.PHYSICS_TICKS.name}",
            "--group-id", f"g-{uuid.uuid4().hex[:8]}", "--dlq-topic", t_dlq,
            "--instance-id", f"i-{uuid.uuid4().hex[:8]}")
    env = {"COSMIC_CONNECTORS__BATCH_ROWS": "40", "COSMIC_CONNECTORS__BATCH_INTERVAL_S": "0.3",
           "COSMIC_POSTGRES__TIMESCALE": "off"}
    log = tmp_path / "connector.log"
    first = cs.start_cli(pg_db, log, *args, **env, COSMIC_CONNECTORS__CRASH_AFTER_WRITE="1")
    assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    written = _count(pg_db, "SELECT count(*) FROM physics_ticks")
    assert 0 < written < n, "the crash came after a first batch, before the rest"
    second = cs.start_cli(pg_db, log, *args, **env)
    try:
        cs.wait_for(lambda: _count(pg_db, "SELECT count(*) FROM physics_ticks") >= n, 60,
                    "the restarted connector to catch up",
                    lambda: AssertionError(log.read_text()) if second.poll() is not None else None)
    finally:
        assert cs.stop_cli(second) == 0, log.read_text()
    _assert_ticks_exact(pg_db, world, n)


@pytest.mark.slow
def test_postgres_outage_backs_off_and_catches_up(settings: Settings, topic_factory,
                                                  tmp_path: Path, stack: Stack):
    private = settings.model_copy(update={
        "state_dir": tmp_path / "state",
        "postgres": PostgresSettings(port=25442),
        "connectors": ConnectorSettings(batch_rows=20, batch_interval_s=0.2, backoff_max_s=1.0),
    })
    pg = PostgresService(private)
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic = topic_factory()
    pg.start()
    conn = timescale.build(private, {topic: topics.PHYSICS_TICKS},
                           group_id=f"g-{uuid.uuid4().hex[:8]}")
    try:
        conn.start()
        cs.produce(private, topic, "PhysicsTick", _ticks(world, 40)[:20])
        cs.wait_for(lambda: conn.metrics.rows_written >= 20, 60, "rows before the outage",
                    conn.failure)
        # Fast shutdown (SIGINT): a plain SIGTERM waits for the connector to disconnect.
        pid = pg.pid()
        assert pid is not None
        os.kill(pid, signal.SIGINT)
        pg.stop(grace_s=10)
        cs.produce(private, topic, "PhysicsTick", _ticks(world, 40)[20:])
        cs.wait_for(lambda: conn.metrics.retries >= 4, 30, "retries during the outage",
                    conn.failure)
        assert conn.metrics.rows_written == 20
        assert conn.failure() is None
        pg.start()
        cs.wait_for(lambda: conn.metrics.rows_written >= 40, 60, "catching up", conn.failure)
        conn.stop()
        _assert_ticks_exact(private, world, 40)
    finally:
        conn.stop()
        pg.stop()


def test_a_zombie_instance_is_fenced_and_duplicates_nothing(pg_db: Settings):
    """Two instances of one connector believe they own a partition: the one whose view of
    the stored position is stale (its partitions moved on) is refused, whole batch and all."""
    from connectors.base import Batch, Item
    from connectors.errors import StoreFenced
    from connectors.timescale import TimescaleSink

    world = f"w-{uuid.uuid4().hex[:8]}"
    tp = ("ticks-in", 0)
    routes = {"ticks-in": topics.PHYSICS_TICKS}

    def batch(first: int, last: int) -> Batch:
        items = [Item("ticks-in", topics.PHYSICS_TICKS, 0, o, 0, None, cs.tick(f"{world}-0", o))
                 for o in range(first, last)]
        return Batch(items, {tp: last})

    zombie, owner = (TimescaleSink(pg_db, routes, "fenced") for _ in range(2))
    for sink in (zombie, owner):
        sink.open()
        assert sink.resume_positions([tp]) == {}
    try:
        owner.write(batch(0, 10))
        with pytest.raises(StoreFenced, match="another instance"):
            zombie.write(batch(0, 10))  # it never saw the owner's write: a duplicate
        owner.write(batch(10, 15))
        assert zombie.resume_positions([tp]) == {tp: 15}  # re-reads, then may go on
        zombie.write(batch(15, 20))
        with pytest.raises(StoreFenced):
            owner.write(batch(15, 20))  # now the owner is the stale one
    finally:
        zombie.close()
        owner.close()
    _assert_ticks_exact(pg_db, world, 20)
    assert _count(pg_db, "SELECT next_offset FROM connector_offsets WHERE connector = %s",
                  "fenced") == 20
