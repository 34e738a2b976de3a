"""runbooks/timescale-convert.md: a database migrated on the native fallback, with rows in
every table, moves onto TimescaleDB with every row and the same per-minute answers, and
the platform's writers then use it as a TimescaleDB database."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from connectors import timescale
from cosmic.settings import Settings
from cosmic.stack import Stack
from jobs.flink.live_metrics import UPSERT
from tests.integration import connectors_support as cs
from tests.integration.connectors_support import cli_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "runbooks" / "timescale-convert.md"
TABLES = ["civilization_events", "ecosystem_events", "live_metrics", "metric_points",
          "physics_ticks"]
VIEW = ("SELECT bucket, world_id, ticks, last_tick, avg_step_us, max_step_us, avg_energy, "
        "max_bodies, commands_applied, commands_rejected FROM physics_ticks_per_world_minute "
        "ORDER BY bucket, world_id")


@pytest.fixture
def native_db(settings: Settings, stack: Stack) -> Iterator[Settings]:
    with cs.private_database(settings, "cosmic_v", needs_timescaledb=(
            "TimescaleDB is not installed on this PostgreSQL: nothing to convert to")) as private:
        yield private


def _fill(conn: psycopg.Connection[Any], now: datetime) -> None:
    stamps = [now - timedelta(days=d, seconds=7 * i) for d in (0, 2) for i in range(40)]
    for table in TABLES:
        for day in {ts.date() for ts in stamps}:
            conn.execute("SELECT cosmic_ensure_day_partitions(%s::regclass, %s, %s)",
                         (table, day, day))
    for i, ts in enumerate(stamps):
        ms, world = int(ts.timestamp() * 1000), f"w{i % 3}"
        conn.execute(
            "INSERT INTO physics_ticks (ts, ts_ms, world_id, tick, sim_time, n_applied, "
            "n_rejected, body_count, total_energy, state_hash, step_duration_us) "
            "VALUES (%s, %s, %s, %s, %s, %s, 0, %s, %s, %s, %s)",
            (ts, ms, world, i, i * 0.01, i % 4, 5 + i % 2, -1.5 - i, f"{i:016x}", 90 + i))
        conn.execute("INSERT INTO metric_points (ts, window_end, name, world_id, value, labels) "
                     "VALUES (%s, %s, 'physics.ticks', %s, %s, %s)",
                     (ts, ts + timedelta(seconds=10), world, float(i), Jsonb({"i": i})))
        conn.execute("INSERT INTO ecosystem_events (ts, ts_ms, event_id, world_id, planet_id, "
                     "tick, event_type, population, detail) VALUES (%s, %s, %s, %s, 1, %s, "
                     "'PopulationChanged', %s, '{}')", (ts, ms, uuid.uuid4(), world, i, 10 + i))
        conn.execute("INSERT INTO civilization_events (ts, ts_ms, event_id, world_id, planet_id, "
                     "civilization_id, tick, event_type, amount, detail) VALUES (%s, %s, %s, %s, "
                     "1, 2, %s, 'ResourceUsed', 1.5, '{}')", (ts, ms, uuid.uuid4(), world, i))
        conn.execute(UPSERT, (ts, ts + timedelta(seconds=10), "players.active", world, "",
                              float(i)))


def _counts(conn: psycopg.Connection[Any]) -> dict[str, int]:
    counts = {}
    for t in TABLES:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()
        counts[t] = int(row[0]) if row else -1
    return counts


def _runbook(s: Settings) -> subprocess.CompletedProcess[str]:
    """The runbook's bash blocks, in order, as an SRE would paste them."""
    script = "set -euo pipefail\n" + "\n".join(re.findall(r"```bash\n(.*?)```",
                                                           RUNBOOK.read_text(), re.S))
    env = cli_env(s) | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run(["bash", "-c", script], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def test_native_database_converts_to_hypertables_with_every_row(native_db: Settings):
    off = native_db.model_copy(update={
        "postgres": native_db.postgres.model_copy(update={"timescale": "off"})})
    assert timescale.migrate(off)[0] == "native"
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(native_db.postgres.dsn, autocommit=True) as conn:
        _fill(conn, now)
        before_counts, before_view = _counts(conn), conn.execute(VIEW).fetchall()
    assert before_counts == dict.fromkeys(TABLES, 80)

    run = _runbook(native_db)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout.splitlines()
    assert "on the native fallback: convert it" in out
    assert [line for line in out if "moved into a hypertable" in line] == [
        f"timescale-convert: {t}: 80 rows moved into a hypertable"
        for t in ("physics_ticks", "metric_points", "ecosystem_events", "civilization_events",
                  "live_metrics")]
    assert ("timescale-convert: physics_ticks_per_world_minute: continuous aggregate, "
            "refreshed over all rows") in out
    # Step 4's checks: the path is TimescaleDB now, and converting again does nothing.
    assert out[-1] == "timescale-convert: already on the TimescaleDB path: nothing to do"

    with psycopg.connect(native_db.postgres.dsn, autocommit=True) as conn:
        hypertables = [r[0] for r in conn.execute(
            "SELECT hypertable_name FROM timescaledb_information.hypertables ORDER BY 1")]
        caggs = sorted(r[0] for r in conn.execute(
            "SELECT view_name FROM timescaledb_information.continuous_aggregates"))
        partitioned = conn.execute("SELECT count(*) FROM pg_partitioned_table").fetchone()
        leftovers = conn.execute("SELECT count(*) FROM pg_class WHERE relname LIKE '%%__native' "
                                 "OR relname ~ '_p[0-9]{8}$'").fetchone()
        variants = conn.execute("SELECT DISTINCT variant FROM schema_migrations "
                                "WHERE variant IS NOT NULL").fetchall()
        assert hypertables == TABLES
        assert caggs == sorted(timescale_views())
        assert partitioned == (0,) and leftovers == (0,)
        assert variants == [("timescale",)]
        assert _counts(conn) == before_counts
        assert conn.execute(VIEW).fetchall() == before_view
        # The writers' statements work on the converted tables: the live-metrics upsert
        # (its primary key is back) and the connector's path, now TimescaleDB.
        conn.execute(UPSERT, (now, now + timedelta(seconds=10), "players.active", "w0", "", 99.0))
        assert conn.execute("SELECT count(*), max(value) FROM live_metrics WHERE ts = %s "
                            "AND world_id = 'w0' AND name = 'players.active'",
                            (now,)).fetchone() == (1, 99.0)
    assert timescale.migrate(native_db) == ("timescale", [])


def timescale_views() -> list[str]:
    return ["civilization_events_per_world_minute", "ecosystem_events_per_world_minute",
            "metric_points_per_world_minute", "physics_ticks_per_world_minute"]
