"""A scripted cheater on the real stack is flagged with evidence; normal players are not.

A physics worker runs a world; normal synthetic players play it while a cheater
sends impossible nudges to her own body, tries to remove the world's asteroids
(the worker refuses: NOT_PERMITTED) and floods. The detector, reading the
command and refusal topics as it does in production, writes flags to
``cosmic.security.flags.v1``; the test reads them back from there.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import models
from schemas.models import Role
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.security.detector import CheatDetector
from streams.worlds import scenario
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

MALLORY_SHIP = 930_001


def _cmd(world: str, player: str, body: models.Command) -> dict[str, Any]:
    now = datetime.now(UTC)
    return models.PlayerCommand(command_id=uuid.uuid4(), player_id=player, world_id=world,
                                client_ts=now, received_ts=now, command=body).to_avro()


def _nudge(world: str, dv: float) -> dict[str, Any]:
    return _cmd(world, "mallory", models.ApplyImpulse(body_id=MALLORY_SHIP,
                                                      dv=models.Vec3(x=dv, y=0, z=0)))


def _flags(settings: Settings, registry: RegistryClient, world: str,
           starts: dict[int, int]) -> list[dict[str, Any]]:
    decode = AvroDeserializer(registry)
    reader = kafka.reader(settings, "flags-check")
    reader.assign([TopicPartition(topics.SECURITY_FLAGS.name, p, o) for p, o in starts.items()])
    out = []
    for msg in reader.consume(10_000, timeout=2.0):
        if msg.error() is None:
            rec = decode(msg.value(), SerializationContext(topics.SECURITY_FLAGS.name))
            if rec["world_id"] == world:
                out.append(rec)
    reader.close()
    return out


def test_a_scripted_cheater_is_flagged_and_normal_players_are_not(
        settings: Settings, stack: Stack, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"cheat-{run}"
    world = f"{shard}:w"
    fast = settings.model_copy(update={"security": settings.security.model_copy(
        update={"flag_window_s": 2.0})})
    registry = RegistryClient.from_settings(settings)
    probe = kafka.reader(settings, "flags-probe")
    starts = {p: probe.get_watermark_offsets(TopicPartition(topics.SECURITY_FLAGS.name, p),
                                             timeout=30)[1]
              for p in range(topics.SECURITY_FLAGS.partitions)}
    probe.close()
    detector = CheatDetector(fast, registry, group_id=f"test-detector-{run}")
    detector.start()
    assert detector.watching.wait(60), detector.failure()
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=20, tick_rate_hz=20.0, snapshot_every=50)
    log = tmp_path / "worker.log"
    worker = start_worker(f"cheat-{run}", shard, log)
    try:
        live.send(_cmd(world, "mallory", models.SpawnBody(
            body_id=MALLORY_SHIP, kind=models.BodyKind.ASTEROID, mass=1e-12, radius=1e-7,
            position=models.Vec3(x=2.5, y=0, z=0), velocity=models.Vec3(x=0, y=4.0, z=0))),
            Role.PLAYER)
        # Normal players, as the platform's synthetic players play (20 commands a second).
        live.play(rate_hz=20, seed=5, asteroids=20, invalid_every=20)
        time.sleep(3)
        for _ in range(3):
            live.send(_nudge(world, 50.0), Role.PLAYER)  # no ship changes speed by 50 AU/yr
        for k in range(8):
            live.send(_cmd(world, "mallory", models.RemoveBody(
                body_id=scenario.FIRST_ASTEROID_ID + k)), Role.PLAYER)
        for _ in range(200):  # 200 in well under a second: 30/s is the limit
            live.send(_nudge(world, 1e-4), Role.PLAYER)
        assert live.producer.flush(30) == 0
        deadline = time.monotonic() + 90
        kinds: set[str] = set()
        while time.monotonic() < deadline and not {
                "IMPOSSIBLE_IMPULSE", "OTHERS_BODIES", "FLOOD"} <= kinds:
            time.sleep(1.0)
            kinds = {f.kind.value for f in detector.flags
                     if f.world_id == world and f.player_id == "mallory"}
            assert detector.failure() is None, detector.failure()
        time.sleep(6)  # a few more windows of normal play, judged too
    finally:
        live.stop()
        stop_worker(worker)
        detector.stop()
    assert detector.failure() is None

    flags = _flags(settings, registry, world, starts)
    by_kind = {f["kind"]: f for f in flags if f["player_id"] == "mallory"}
    assert {"IMPOSSIBLE_IMPULSE", "OTHERS_BODIES", "FLOOD"} <= by_kind.keys(), flags
    impossible = orjson.loads(by_kind["IMPOSSIBLE_IMPULSE"]["evidence"])
    assert impossible["impulses_over_cap"] == 3 and impossible["largest_impulse"] == 50.0
    refused = orjson.loads(by_kind["OTHERS_BODIES"]["evidence"])
    assert refused["refused"] >= 5 and len(refused["examples"]) == 5
    assert orjson.loads(by_kind["FLOOD"]["evidence"])["commands"] > 60
    assert not [f for f in flags if f["player_id"] != "mallory"], flags
    assert detector.commands > 200
    registry.close()
