"""Every runbook, run command by command against a live world, as an SRE would."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cosmic import topics
from cosmic.metrics import targets_dir
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.registry.client import RegistryClient
from streams.worlds.eventlog import KafkaLog
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
_BLOCK = re.compile(r"```bash\n(.*?)```", re.S)


def runbook_script(name: str) -> str:
    blocks = _BLOCK.findall((RUNBOOKS / name).read_text())
    assert blocks, f"{name} has no bash blocks"
    return "set -euo pipefail\n" + "\n".join(blocks)


def run_runbook(name: str, env: dict[str, str]) -> str:
    proc = subprocess.run(["bash", "-c", runbook_script(name)], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def _json_docs(out: str) -> list[object]:
    """The results of every Prometheus query the runbook printed (pretty-printed JSON)."""
    decoder, found, i = json.JSONDecoder(), [], 0
    while (start := out.find("{", i)) != -1:
        try:
            doc, i = decoder.raw_decode(out, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        if isinstance(doc, dict) and doc.get("status") == "success":
            found.extend(doc["data"].get("result", []))
    return found


def _ticks(log: KafkaLog, world: str) -> list[dict]:
    part = log.world_partition(world)
    return sorted((r for _, _, r in log.read(topics.PHYSICS_TICKS.name, part, key=world.encode())),
                  key=lambda r: r["tick"])


def test_every_runbook_runs_as_written(settings: Settings, stack: Stack, tmp_path: Path):
    assert {p.name for p in RUNBOOKS.glob("*.md")} >= {
        "replay-and-verify.md", "fork-a-world.md", "restore-after-bad-deploy.md",
        "consumer-lag.md"}
    run = uuid.uuid4().hex[:8]
    shard = f"rb-{run}"
    world, group = f"{shard}:world", f"cosmic-physics.{shard}"
    registry = RegistryClient.from_settings(settings)
    log = KafkaLog(settings, registry)
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=30, tick_rate_hz=60.0, snapshot_every=50)
    live.play(rate_hz=20, seed=5, asteroids=30, invalid_every=8)
    worker_log = tmp_path / "worker.log"
    worker = start_worker(f"rb-{run}", shard, worker_log)
    try:
        deadline = time.monotonic() + 180
        while len(ticks := _ticks(log, world)) < 250:
            assert worker.poll() is None, worker_log.read_text()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(1)
        bad_deploy = datetime.fromtimestamp(ticks[149]["ts"].timestamp(), UTC)
        env = os.environ | {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "WORLD": world, "TICK": "120", "FORK": f"{world}-fork", "WORK": str(tmp_path),
            "BAD_DEPLOY_TIME": bad_deploy.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "TOPIC": topics.COMMANDS.name, "GROUP": group,
        }

        out = run_runbook("replay-and-verify.md", env)
        assert "verified: all" in out and f"world {world} (partition" in out
        assert (tmp_path / f"{world}-120.avro").exists()

        out = run_runbook("fork-a-world.md", env)
        assert f"forked into world {world}-fork" in out
        assert f"forked into world {world}-fork-from-file" in out
        assert len(_ticks(log, f"{world}-fork")) > 0

        out = run_runbook("restore-after-bad-deploy.md", env)
        assert "AdoptSnapshot" in out and "restore before deploy" in out
        # The world applied the restore: the AdoptSnapshot command is in a recorded tick's
        # range and was not rejected. (Its tick's body count may differ from the good
        # state's: players' commands in the same tick apply after it.)
        part = log.world_partition(world)
        (adopt,) = [(off, rec) for off, _, rec in log.read(topics.COMMANDS.name, part,
                                                          key=world.encode())
                    if rec["command"][0].endswith("AdoptSnapshot")]
        after = _ticks(log, world)
        assert any(t["first_command_offset"] is not None
                   and t["first_command_offset"] <= adopt[0] <= t["last_command_offset"]
                   for t in after), "no recorded tick took the restore"
        refused = [rec for _, _, rec in log.read(topics.COMMANDS_REJECTED.name, part,
                                                 key=world.encode())
                   if str(rec["command_id"]) == str(adopt[1]["command_id"])]
        assert refused == [], f"the restore was rejected: {refused}"

        out = run_runbook("consumer-lag.md", env)
        assert f"{group}:" in out  # lag line of the test workers' group
        # Kafka's own tool described the group: its header and a row of the commands topic.
        assert "CONSUMER-ID" in out and "LAG" in out
        assert any(line.startswith(group) and topics.COMMANDS.name in line
                   for line in out.splitlines()), out[-2000:]

        # The observability runbook's first checks find this worker scraped and up.
        out = run_runbook("observability.md", env)
        assert re.search(r"scraping \d+ of \d+ targets up", out), out[-2000:]
        target = targets_dir(settings) / f"physics-{worker.pid}.json"
        assert target.name in out.split()
        instance = json.loads(target.read_text())[0]["targets"][0]
        up = {r["metric"]["instance"]: r["value"][1] for r in _json_docs(out)
              if isinstance(r, dict) and r.get("metric", {}).get("__name__") == "up"}
        assert up.get(instance) == "1", f"{instance} is not up in {up}"
    finally:
        live.stop()
        stop_worker(worker)
        registry.close()
