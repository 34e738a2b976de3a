"""A private PostgreSQL of the local stack preloads TimescaleDB where it is installed, with
telemetry off, and `cosmic stack status` says which version is enabled."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from cosmic.settings import PostgresSettings, Settings
from cosmic.stack.postgres import PostgresService

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_private_postgres_preloads_timescaledb_and_status_names_it(settings: Settings,
                                                                    tmp_path: Path):
    private = settings.model_copy(update={"state_dir": tmp_path / "state",
                                          "postgres": PostgresSettings(port=25452)})
    pg = PostgresService(private)
    pg.start()
    try:
        admin = private.postgres.model_copy(update={"database": "postgres"}).dsn
        with psycopg.connect(admin) as conn:
            row = conn.execute("SELECT default_version FROM pg_available_extensions "
                               "WHERE name = 'timescaledb'").fetchone()
            if row is None:
                pytest.skip("TimescaleDB is not installed on this PostgreSQL "
                            "(infra/local/timescaledb.sh builds it)")
            preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        with psycopg.connect(private.postgres.dsn) as conn:
            telemetry = conn.execute("SHOW timescaledb.telemetry_level").fetchone()
            enabled = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert preload == ("timescaledb",)
        assert telemetry == ("off",)
        assert enabled == row

        env = {k: v for k, v in os.environ.items() if not k.startswith("COSMIC_")} | {
            "COSMIC_STATE_DIR": str(private.state_dir),
            "COSMIC_POSTGRES__PORT": str(private.postgres.port)}
        status = subprocess.run([sys.executable, "-m", "cosmic_app", "stack", "status"], env=env,
                                capture_output=True, text=True, timeout=60, check=False)
        assert status.returncode == 0, status.stderr
        lines = status.stdout.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith("postgres    running"))
        assert lines[at + 1].strip() == (f"note: timescaledb extension enabled "
                                         f"(version {row[0]}, database cosmic)")
    finally:
        pg.stop()
