"""`cosmic up --duration N`: the main job moves events end to end and stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys

import psycopg
import pytest
from clickhouse_driver import Client

from cosmic.settings import Settings
from cosmic.stack import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_cosmic_up_moves_events_end_to_end(settings: Settings, stack: Stack):
    proc = subprocess.run(
        [sys.executable, "-m", "cosmic_app", "up", "--duration", "20"],
        capture_output=True, text=True, timeout=180, check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "platform stopped cleanly" in out
    progress = re.findall(r"produced (\d+), stored (\d+)", out)
    assert len(progress) >= 5, out  # a progress line every 2 s
    produced, stored = map(int, progress[-1])
    assert produced > 100
    assert stored > 0

    # Every event produced in that run reached both stores, once.
    with psycopg.connect(settings.postgres.dsn) as conn:
        run_id, pg_rows, pg_distinct = conn.execute(
            "SELECT run_id, count(*), count(DISTINCT seq) FROM smoke_events "
            "GROUP BY run_id ORDER BY max(stored_ms) DESC LIMIT 1"
        ).fetchone()  # type: ignore[misc]
    ch = settings.clickhouse
    client = Client(host=ch.host, port=ch.port, database=ch.database)
    try:
        ((ch_rows,),) = client.execute(
            "SELECT count() FROM smoke_events WHERE run_id = %(r)s", {"r": str(run_id)})
    finally:
        client.disconnect()
    assert pg_rows == pg_distinct >= produced
    assert ch_rows == pg_rows
