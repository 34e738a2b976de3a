"""TimescaleDB's policies on the platform's own schema, run as the scheduler would run them:
daily chunks, the per-minute continuous aggregate refreshed by its policy, old chunks
compressed and still read back exactly, and chunks past retention dropped.

Every policy job of the private database is unscheduled first and then run by hand
(``CALL run_job``), so what each one does is seen alone and the scheduler cannot race
the assertions."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from connectors import timescale
from cosmic.settings import Settings
from cosmic.stack import Stack
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration

COLUMNS = ("ts", "ts_ms", "world_id", "tick", "sim_time", "n_applied", "n_rejected",
           "body_count", "total_energy", "state_hash", "step_duration_us")


def _fresh(settings: Settings, scheduled: bool) -> Iterator[psycopg.Connection[Any]]:
    with cs.private_database(settings, "cosmic_p", needs_timescaledb=(
            "TimescaleDB is not installed on this PostgreSQL "
            "(infra/local/timescaledb.sh builds it)")) as private:
        variant, _ = timescale.migrate(private)
        assert variant == "timescale"
        with psycopg.connect(private.postgres.dsn, autocommit=True) as conn:
            if scheduled:
                yield conn
                return
            conn.execute("SELECT alter_job(job_id, scheduled => false) "
                         "FROM timescaledb_information.jobs WHERE job_id >= 1000")
            # A policy's first run starts as soon as it is added: let it finish.
            deadline = time.monotonic() + 30
            while conn.execute("SELECT count(*) FROM timescaledb_information.job_stats "
                               "WHERE job_id >= 1000 AND job_status = 'Running'"
                               ).fetchone() != (0,):
                assert time.monotonic() < deadline, "policy jobs still running after 30 s"
                time.sleep(0.2)
            yield conn


@pytest.fixture
def tsdb(settings: Settings, stack: Stack) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to a fresh database migrated onto the TimescaleDB path,
    its policies unscheduled (the test runs them)."""
    yield from _fresh(settings, scheduled=False)


@pytest.fixture
def scheduled_tsdb(settings: Settings, stack: Stack) -> Iterator[psycopg.Connection[Any]]:
    """The same, with its policies left to TimescaleDB's scheduler."""
    yield from _fresh(settings, scheduled=True)


def _insert_ticks(conn: psycopg.Connection[Any], world: str, first_tick: int,
                  stamps: list[datetime]) -> None:
    with conn.cursor() as cur, cur.copy(
            f"COPY physics_ticks ({', '.join(COLUMNS)}) FROM STDIN") as copy:
        for i, ts in enumerate(stamps):
            tick = first_tick + i
            copy.write_row((ts, int(ts.timestamp() * 1000), world, tick, tick * 0.01, tick % 3,
                            0, 5, -1.5, f"{tick:016x}", 100 + tick))


def _job(conn: psycopg.Connection[Any], proc: str, target: str) -> int:
    row = conn.execute("SELECT job_id FROM timescaledb_information.jobs "
                       "WHERE proc_name = %s AND hypertable_name = %s", (proc, target)).fetchone()
    assert row is not None, f"no {proc} job on {target}"
    return int(row[0])


def _chunks(conn: psycopg.Connection[Any]) -> dict[date, bool]:
    """physics_ticks' chunks: UTC day each starts on -> whether it is compressed."""
    return {d: c for d, c in conn.execute(
        "SELECT (range_start AT TIME ZONE 'UTC')::date, is_compressed "
        "FROM timescaledb_information.chunks WHERE hypertable_name = 'physics_ticks'")}


def test_chunks_aggregate_compression_and_retention(tsdb: psycopg.Connection[Any]):
    conn = tsdb
    world = f"w-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    # Four whole minutes inside the refresh policy's window (7 days back to 1 minute
    # back), with 3, 4, 5 and 6 ticks: one two days back, three in the last hour.
    sizes = (3, 4, 5, 6)
    minutes = [now - timedelta(days=2), *(now - timedelta(minutes=m) for m in (30, 20, 10))]
    recent = [m + timedelta(seconds=s) for m, n in zip(minutes, sizes, strict=True)
              for s in range(0, 6 * n, 6)]
    week_old = [now - timedelta(days=10, seconds=s) for s in range(50)]  # past compression
    expired = [now - timedelta(days=40, seconds=s) for s in range(20)]  # past retention
    _insert_ticks(conn, world, 0, recent)
    _insert_ticks(conn, world, 1000, week_old)
    _insert_ticks(conn, world, 2000, expired)

    # Chunks: one per UTC day that holds rows, none compressed yet.
    days = {ts.date() for ts in recent + week_old + expired}
    assert _chunks(conn) == dict.fromkeys(days, False)

    def total_ticks() -> int:
        row = conn.execute("SELECT coalesce(sum(ticks), 0) FROM physics_ticks_per_world_minute "
                           "WHERE world_id = %s", (world,)).fetchone()
        return int(row[0]) if row else -1

    # Before any refresh the real-time aggregate computes every minute from the raw rows.
    assert total_ticks() == 18 + 50 + 20

    # The refresh policy materializes exactly the minutes inside its window, with values.
    schema, table = conn.execute(
        "SELECT materialization_hypertable_schema, materialization_hypertable_name "
        "FROM timescaledb_information.continuous_aggregates "
        "WHERE view_name = 'physics_ticks_per_world_minute'").fetchone() or ("", "")
    materialized = sql.SQL(
        "SELECT bucket, ticks, last_tick, commands_applied, max_step_us FROM {}.{} "
        "WHERE world_id = %s ORDER BY bucket").format(sql.Identifier(schema),
                                                      sql.Identifier(table))
    assert conn.execute(materialized, (world,)).fetchall() == []
    conn.execute("CALL run_job(%s)",
                 (_job(conn, "policy_refresh_continuous_aggregate",
                       "physics_ticks_per_world_minute"),))
    expected, tick = [], 0
    for minute, n in zip(minutes, sizes, strict=True):
        ticks = range(tick, tick + n)
        expected.append((minute, n, ticks[-1], sum(t % 3 for t in ticks), 100 + ticks[-1]))
        tick += n
    assert conn.execute(materialized, (world,)).fetchall() == expected
    view = conn.execute(
        "SELECT bucket, ticks, last_tick, commands_applied, max_step_us "
        "FROM physics_ticks_per_world_minute WHERE world_id = %s AND bucket > %s "
        "ORDER BY bucket", (world, now - timedelta(days=7))).fetchall()
    assert view == expected
    # Minutes older than the window are below the refresh watermark: not shown until a
    # refresh covers them (what the SQL file says a replay of old history needs).
    assert total_ticks() == 18
    conn.execute("CALL refresh_continuous_aggregate('physics_ticks_per_world_minute', %s, %s)",
                 (now - timedelta(days=41), now - timedelta(days=7)))
    assert total_ticks() == 18 + 50 + 20

    # Compression: the policy compresses every chunk older than 7 days, not the recent ones;
    # the compressed rows read back exactly.
    conn.execute("CALL run_job(%s)", (_job(conn, "policy_compression", "physics_ticks"),))
    old_days = {ts.date() for ts in week_old + expired}
    assert _chunks(conn) == {d: d in old_days for d in days}
    stats = conn.execute("SELECT sum(after_compression_total_bytes) FROM "
                         "chunk_compression_stats('physics_ticks')").fetchone()
    assert stats is not None and stats[0] > 0
    back = conn.execute("SELECT tick, ts, state_hash FROM physics_ticks WHERE world_id = %s "
                        "AND ts < %s ORDER BY tick", (world, now - timedelta(days=7))).fetchall()
    assert back == [(1000 + i, ts, f"{1000 + i:016x}") for i, ts in enumerate(week_old)] + \
        [(2000 + i, ts, f"{2000 + i:016x}") for i, ts in enumerate(expired)]

    # Retention: chunks past 30 days are dropped, their rows with them; the rest stays, and
    # the per-minute aggregate keeps the dropped minutes.
    conn.execute("CALL run_job(%s)", (_job(conn, "policy_retention", "physics_ticks"),))
    expired_days = {ts.date() for ts in expired}
    assert _chunks(conn) == {d: d in old_days for d in days - expired_days}
    counts = conn.execute(
        "SELECT count(*) FILTER (WHERE tick >= 2000), count(*) FILTER (WHERE tick >= 1000 "
        "AND tick < 2000), count(*) FILTER (WHERE tick < 1000) FROM physics_ticks "
        "WHERE world_id = %s", (world,)).fetchone()
    assert counts == (0, 50, 18)
    assert total_ticks() == 18 + 50 + 20


def test_the_scheduler_runs_a_policy_and_records_success(scheduled_tsdb: psycopg.Connection[Any]):
    """In the background, as in production: the compression policy, told to start now,
    compresses the old chunk and its run is recorded as a success. (Unpatched, TimescaleDB
    2.28.3 on PostgreSQL 15.20 did the work and then failed every background job with
    "cannot drop portal while it is being set up": infra/local/timescaledb-patches/.)"""
    conn = scheduled_tsdb
    now = datetime.now(UTC).replace(microsecond=0)
    stamps = [now - timedelta(days=10, seconds=s) for s in range(10)]
    _insert_ticks(conn, "w-bg", 0, stamps)
    job = _job(conn, "policy_compression", "physics_ticks")
    conn.execute("SELECT alter_job(%s, next_start => now())", (job,))
    deadline = time.monotonic() + 60
    while True:
        row = conn.execute("SELECT total_runs, last_run_status FROM "
                           "timescaledb_information.job_stats WHERE job_id = %s",
                           (job,)).fetchone()
        # The policy's first run may have come right after the migration, before the rows.
        # The policy commits each chunk as it goes, so the chunk can read compressed while
        # its run is still going: the status is null until that run finishes.
        if (row and row[0] and row[1] is not None
                and _chunks(conn) == {ts.date(): True for ts in stamps}):
            break
        assert time.monotonic() < deadline, f"the scheduler did not compress the chunk: {row}"
        time.sleep(0.5)
    errors = conn.execute("SELECT job_id, err_message FROM timescaledb_information.job_errors "
                          "WHERE job_id >= 1000").fetchall()
    assert (row[1], errors) == ("Success", [])
