"""`cosmic db migrate` against the real stores: applies each version once, then nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql

from connectors import clickhouse, stores, timescale
from connectors.migrate import SQL_ROOT, discover
from cosmic.settings import Settings
from cosmic.stack import Stack
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration


def test_db_migrate_is_idempotent_and_reports_the_path(settings: Settings, stack: Stack):
    name = f"cosmic_m_{uuid.uuid4().hex[:8]}"
    admin_dsn = settings.postgres.model_copy(update={"database": "postgres"}).dsn
    private = settings.model_copy(update={
        "postgres": settings.postgres.model_copy(update={"database": name}),
        "clickhouse": settings.clickhouse.model_copy(update={"database": name})})
    ch_admin = stores.clickhouse_client(settings)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    ch_admin.execute(f"CREATE DATABASE {name}")
    try:
        runs = [subprocess.run([sys.executable, "-m", "cosmic_app", "db", "migrate"],
                               env=cs.cli_env(private), capture_output=True, text=True,
                               timeout=120, check=False) for _ in range(2)]
        assert [r.returncode for r in runs] == [0, 0], runs[0].stderr + runs[1].stderr
        first, second = runs[0].stdout, runs[1].stdout
        print(f"\n{first}")
        assert "timescale: applied 001_connector_offsets.sql" in first
        assert "clickhouse: applied 001_events.sql" in first
        assert "timescale: up to date" in second and "clickhouse: up to date" in second
        with psycopg.connect(admin_dsn) as conn:
            installed = conn.execute("SELECT 1 FROM pg_available_extensions "
                                     "WHERE name = 'timescaledb'").fetchone() is not None
        # Where the extension is installed it is the default; elsewhere the fallback.
        expected = "timescale" if installed else "native"
        assert f"timescale: {timescale.DESCRIPTIONS[expected]}" in first
        with psycopg.connect(private.postgres.dsn) as conn:
            versions = conn.execute(
                "SELECT version, variant FROM schema_migrations ORDER BY version").fetchall()
        shipped = sorted({m.version for m in discover(SQL_ROOT / "timescale")})
        assert [v for v, _ in versions] == shipped and shipped[:3] == [1, 2, 3]
        # Versions with per-path files took this path's; the common ones have no variant.
        split = {m.version for m in discover(SQL_ROOT / "timescale") if m.variant is not None}
        assert {v for version, v in versions if version in split} == {expected}
        assert all(v is None for version, v in versions if version not in split)
        tables = {t for (t,) in ch_admin.execute(f"SHOW TABLES FROM {name}")}
        assert {"commands", "physics_ticks", "ecosystem_events", "civilization_events",
                "schema_migrations"} <= tables
        ch_files = len(list(clickhouse.SQL_DIR.glob("*.sql")))
        assert ch_admin.execute(f"SELECT count() FROM {name}.schema_migrations") == [(ch_files,)]
    finally:
        ch_admin.execute(f"DROP DATABASE IF EXISTS {name}")
        ch_admin.disconnect()
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def test_db_migrate_with_timescale_off_takes_the_fallback(settings: Settings, stack: Stack):
    """COSMIC_POSTGRES__TIMESCALE=off: native partitions even where the extension exists."""
    name = f"cosmic_m_{uuid.uuid4().hex[:8]}"
    admin_dsn = settings.postgres.model_copy(update={"database": "postgres"}).dsn
    private = settings.model_copy(update={
        "postgres": settings.postgres.model_copy(update={"database": name})})
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        run = subprocess.run([sys.executable, "-m", "cosmic_app", "db", "migrate", "--store",
                              "timescale"], env=cs.cli_env(private, COSMIC_POSTGRES__TIMESCALE="off"),
                             capture_output=True, text=True, timeout=120, check=False)
        assert run.returncode == 0, run.stderr
        assert f"timescale: {timescale.DESCRIPTIONS['native']}" in run.stdout
        with psycopg.connect(private.postgres.dsn) as conn:
            variants = {v for (v,) in conn.execute(
                "SELECT variant FROM schema_migrations WHERE variant IS NOT NULL")}
            extension = conn.execute(
                "SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
            partitioned = conn.execute(
                "SELECT 1 FROM pg_partitioned_table WHERE partrelid = 'physics_ticks'::regclass"
            ).fetchone()
        assert variants == {"native"}
        assert extension is None and partitioned is not None
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))
