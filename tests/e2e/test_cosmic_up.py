"""`cosmic up --duration N`: the main job moves events end to end and stops cleanly."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg
import pytest
from clickhouse_driver import Client

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

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
    client = Client(host=ch.host, port=ch.port, user=ch.user, password=ch.secret(),
                    database=ch.database)
    try:
        ((ch_rows,),) = client.execute(
            "SELECT count() FROM smoke_events WHERE run_id = %(r)s", {"r": str(run_id)})
    finally:
        client.disconnect()
    assert pg_rows == pg_distinct >= produced
    assert ch_rows == pg_rows


def test_cosmic_up_keeps_running_through_hostile_records(settings: Settings, stack: Stack):
    """Records that are not commands, keyed to the demo world while `cosmic up` plays it:
    dead letters and rejections, and the platform runs its whole time and stops cleanly."""
    world = "garden-demo"
    registry = RegistryClient.from_settings(settings)
    ctx = SerializationContext(topics.COMMANDS.name)
    metric = AvroSerializer(registry, "MetricPoint")(
        {"name": "x", "world_id": world, "label": "", "window_start": 0, "window_end": 0,
         "value": 1.0, "count": 1, "ts": 0}, SerializationContext(topics.METRICS.name))
    now = datetime.now(UTC)
    adopt = models.PlayerCommand(
        command_id=uuid.uuid4(), player_id="hostile", world_id=world, client_ts=now,
        received_ts=now, command=models.AdoptSnapshot(
            snapshot_partition=99, snapshot_offset=0, state_hash="00", source_world_id=world,
            source_tick=0, reason="hostile"))
    hostile = [b"not avro", metric, AvroSerializer(registry, "PlayerCommand")(adopt.to_avro(), ctx)]
    proc = subprocess.Popen([sys.executable, "-m", "cosmic_app", "up", "--duration", "30"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        time.sleep(15)  # the platform is up and the demo world ticks
        assert proc.poll() is None
        producer = kafka.producer(settings)
        for _ in range(3):
            for value in hostile:
                producer.produce(topics.COMMANDS.name, key=world.encode(), value=value)
        assert producer.flush(30) == 0
        # The gateway `cosmic up` runs serves the demo world to `cosmic watch`.
        watched = subprocess.run(
            [sys.executable, "-m", "cosmic_app", "watch", "--world", world, "--radius", "50",
             "--lines", "2"], capture_output=True, text=True, timeout=60, check=False)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        views = [line for line in watched.stdout.splitlines() if line.startswith("tick ")]
        assert len(views) == 2 and all(" bodies " in v and "B/s" in v for v in views), views
        assert int(views[-1].split()[3]) > 0  # bodies in view
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        registry.close()
    assert proc.returncode == 0, out[-3000:]
    assert "platform stopped cleanly" in out
    assert "gateway: http://127.0.0.1:" in out
    physics = [part for line in out.splitlines() for part in line.split(" | ")
               if part.startswith("physics:")]
    assert physics and "6 dead letters" in physics[-1], physics[-3:]
