"""runbooks/partitions.md, run as written: a world's history copied out, proved, and the
world started again from its last state (under a new id: the shared topics stay)."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path

import pytest

from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.worlds.eventlog import KafkaLog
from streams.worlds.pointintime import read_snapshot_file
from tests.e2e.test_runbooks import _ticks, run_runbook
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def test_moving_a_world_keeps_its_history_and_state(settings: Settings, stack: Stack,
                                                    tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    world = f"part-{run}:world"
    registry = RegistryClient.from_settings(settings)
    log = KafkaLog(settings, registry)
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=20, tick_rate_hz=60.0, snapshot_every=50)
    live.play(rate_hz=20, seed=9, asteroids=20, invalid_every=7)
    worker_log = tmp_path / "worker.log"
    worker = start_worker(f"part-{run}", f"part-{run}", worker_log)
    try:
        deadline = time.monotonic() + 180
        while len(_ticks(log, world)) < 130:
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(1)
        live.stop()
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            # `cosmic` on PATH must run this checkout's code, not the one installed.
            "PYTHONPATH": str(REPO),
            "WORLD": world, "WORK": str(tmp_path), "MOVED": f"{world}-moved",
        }
        out = run_runbook("partitions.md", env)

        # The copy proved every tick since the world began.
        copied = _ticks(log, world)
        assert "snapshot of tick 0 + " in out and "verified: all " in out
        last, _ = read_snapshot_file(tmp_path / f"{world}-last.avro")
        assert last.world_id == world and last.world.tick >= 130
        assert last.state_hash() == copied[last.world.tick - 1]["state_hash"]
        # The moved world started from that state, and its own log verifies.
        assert f"forked into world {world}-moved" in out
        moved = _ticks(log, f"{world}-moved")
        adopted = next(t for t in moved if t["n_applied"])
        assert adopted["body_count"] == len(last.world)
        assert f"world {world}-moved (partition" in out
    finally:
        live.stop()
        stop_worker(worker)
        registry.close()
