"""PostgreSQL and ClickHouse round trips against the running stack."""

from __future__ import annotations

import datetime as dt
import uuid

import psycopg
import pytest
from clickhouse_driver import Client

from cosmic.settings import Settings
from cosmic.stack import Stack

pytestmark = pytest.mark.integration


def test_postgres_round_trip(settings: Settings, stack: Stack):
    table = f"rt_{uuid.uuid4().hex[:10]}"
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    with psycopg.connect(settings.postgres.dsn) as conn:
        conn.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, world text, at timestamptz)")
        with conn.cursor() as cur, cur.copy(f"COPY {table} (id, world, at) FROM STDIN") as copy:
            for i in range(1000):
                copy.write_row((i, f"w{i % 3}", now))
        conn.commit()
        rows = conn.execute(
            f"SELECT world, count(*), min(at) FROM {table} GROUP BY world ORDER BY world"
        ).fetchall()
        conn.execute(f"DROP TABLE {table}")
    assert rows == [("w0", 334, now), ("w1", 333, now), ("w2", 333, now)]


def test_postgres_has_date_bin_for_time_buckets(settings: Settings, stack: Stack):
    with psycopg.connect(settings.postgres.dsn) as conn:
        row = conn.execute(
            "SELECT date_bin('1 minute', timestamptz '2026-01-01 10:17:45+00', "
            "timestamptz '2000-01-01 00:00:00+00')"
        ).fetchone()
    assert row is not None
    assert row[0] == dt.datetime(2026, 1, 1, 10, 17, tzinfo=dt.UTC)


def test_clickhouse_round_trip(settings: Settings, stack: Stack):
    ch = settings.clickhouse
    client = Client(host=ch.host, port=ch.port, user=ch.user,
                    password=ch.secret(), database=ch.database)
    table = f"rt_{uuid.uuid4().hex[:10]}"
    try:
        client.execute(
            f"CREATE TABLE {table} (ts DateTime('UTC'), world String, tick UInt64) "
            "ENGINE = MergeTree PARTITION BY toYYYYMM(ts) ORDER BY (world, ts)"
        )
        base = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        rows = [(base + dt.timedelta(seconds=i), f"w{i % 2}", i) for i in range(10_000)]
        client.execute(f"INSERT INTO {table} (ts, world, tick) VALUES", rows)
        got = client.execute(
            f"SELECT world, count(), max(tick) FROM {table} GROUP BY world ORDER BY world"
        )
        client.execute(f"DROP TABLE {table}")
    finally:
        client.disconnect()
    assert got == [("w0", 5000, 9998), ("w1", 5000, 9999)]
