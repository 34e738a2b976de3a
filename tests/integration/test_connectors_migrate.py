"""`cosmic db migrate` against the real stores: applies each version once, then nothing."""

from __future__ import annotations

import subprocess
import sys
import uuid

import psycopg
import pytest
from psycopg import sql

from connectors import clickhouse, stores
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
        assert ("NOT available: fallback" in first) or ("extension present" in first)
        with psycopg.connect(private.postgres.dsn) as conn:
            versions = conn.execute(
                "SELECT version, variant FROM schema_migrations ORDER BY version").fetchall()
        shipped = sorted({m.version for m in discover(SQL_ROOT / "timescale")})
        assert [v for v, _ in versions] == shipped and shipped[:3] == [1, 2, 3]
        assert versions[0][1] is None and versions[1][1] in ("native", "timescale")
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
