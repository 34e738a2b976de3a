"""A raw Kafka producer cannot act as anyone: the physics worker's own checks, live and
in replay.

Commands go straight to the command topic, bypassing any gateway: unsigned ones,
forged ones (a real signature on a changed command, or a key the platform does
not have), and properly signed player commands that overstep (another player's
body, operator actions). Each is rejected once with its reason, a retried
command id is a duplicate, and a verified replay of the world from its first
tick reproduces every hash; a replay that trusted every command would not.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import models
from schemas.models import Role
from schemas.registry.client import RegistryClient
from streams.security import signing
from streams.worlds.eventlog import KafkaLog
from streams.worlds.pointintime import rebuild
from streams.worlds.recovery import ReplayDivergence
from streams.worlds.scenario import MOON_ID
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]

ALICES = 920_001


def _cmd(world: str, player: str, body: models.Command) -> models.PlayerCommand:
    now = datetime.now(UTC)
    return models.PlayerCommand(command_id=uuid.uuid4(), player_id=player, world_id=world,
                                client_ts=now, received_ts=now, command=body)


def _rejections(settings: Settings, registry: RegistryClient, world: str, partition: int,
                start: int, wanted: set[str], timeout_s: float = 90.0) -> dict[str, dict[str, Any]]:
    log = KafkaLog(settings, registry)
    deadline = time.monotonic() + timeout_s
    while True:
        found = {str(r["command_id"]): r for _, _, r in log.read(
            topics.COMMANDS_REJECTED.name, partition, start, key=world.encode())}
        if wanted <= found.keys() or time.monotonic() > deadline:
            return found
        time.sleep(1.0)


def test_unsigned_forged_and_overstepping_commands_change_no_world(
        settings: Settings, stack: Stack, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"secure-{run}"
    world = f"{shard}:w"
    registry = RegistryClient.from_settings(settings)
    live = LiveWorld(settings, registry, world)
    partition = kafka.home_partition(world, topics.COMMANDS.partitions)
    probe = kafka.reader(settings, "secure-probe")
    _, rej_start = probe.get_watermark_offsets(
        TopicPartition(topics.COMMANDS_REJECTED.name, partition), timeout=30)
    probe.close()
    live.open(asteroids=5, tick_rate_hz=20.0, snapshot_every=20)
    log = tmp_path / "worker.log"
    worker = start_worker(f"secure-{run}", shard, log)
    ring = live.ring
    stranger = signing.KeyRing.generate()
    try:
        spawn = _cmd(world, "alice", models.SpawnBody(
            body_id=ALICES, kind=models.BodyKind.ASTEROID, mass=1e-12, radius=1e-7,
            position=models.Vec3(x=2.5, y=0, z=0), velocity=models.Vec3(x=0, y=4.0, z=0)))
        live.send(spawn.to_avro(), Role.PLAYER)
        nudge = {"x": 0.5, "y": 0.0, "z": 0.0}
        bobs_nudge = _cmd(world, "bob", models.ApplyImpulse(body_id=ALICES, dv=models.Vec3(**nudge)))
        # bob's real signature on his own nudge, then the player id changed to alice's.
        forged = signing.sign(_cmd(world, "bob", models.ApplyImpulse(
            body_id=ALICES, dv=models.Vec3(**nudge))), Role.PLAYER, ring).model_copy(
            update={"player_id": "alice"})
        expected: dict[str, tuple[models.PlayerCommand, Role | None, str]] = {
            "another player's body": (bobs_nudge, Role.PLAYER, "NOT_PERMITTED"),
            "removing another's body": (_cmd(world, "bob", models.RemoveBody(body_id=ALICES)),
                                        Role.PLAYER, "NOT_PERMITTED"),
            "the world's own body": (_cmd(world, "bob", models.RemoveBody(body_id=MOON_ID)),
                                     Role.PLAYER, "NOT_PERMITTED"),
            "world parameters": (_cmd(world, "bob", models.SetWorldParams(
                G=1.0, softening=0.1, tick_rate_hz=1.0, dt=1.0, merge_on_contact=False,
                snapshot_every=5)), Role.PLAYER, "NOT_PERMITTED"),
            "retiring the world": (_cmd(world, "bob", models.RetireWorld(reason="mine now")),
                                   Role.PLAYER, "NOT_PERMITTED"),
            "unsigned": (_cmd(world, "alice", models.RemoveBody(body_id=ALICES)), None,
                         "UNAUTHENTICATED"),
            "unsigned operator action": (_cmd(world, "ops", models.RetireWorld(reason="x")),
                                         None, "UNAUTHENTICATED"),
            "forged player id": (forged, None, "UNAUTHENTICATED"),
            "a key the platform lacks": (signing.sign(
                _cmd(world, "alice", models.RemoveBody(body_id=ALICES)), Role.OPERATOR, stranger),
                None, "UNAUTHENTICATED"),
            "retried command id": (spawn, Role.PLAYER, "DUPLICATE_COMMAND"),
        }
        for command, role, _ in expected.values():
            live.send(command.to_avro(), role)
        alices_nudge = _cmd(world, "alice", models.ApplyImpulse(
            body_id=ALICES, dv=models.Vec3(x=0.0, y=0.01, z=0.0)))
        live.send(alices_nudge.to_avro(), Role.PLAYER)
        assert live.producer.flush(30) == 0
        wanted = {str(c.command_id) for c, _, _ in expected.values()}
        rejected = _rejections(settings, registry, world, partition, rej_start,
                               wanted | {str(alices_nudge.command_id)}, timeout_s=60)
        # Give the last tick time to commit, then stop the worker.
        time.sleep(2.0)
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        stop_worker(worker)

    for why, (command, _, reason) in expected.items():
        got = [r for r in rejected.values() if str(r["command_id"]) == str(command.command_id)
               and r["reason"] == reason]
        assert got, (why, reason, rejected.get(str(command.command_id)))
    assert str(spawn.command_id) not in {k for k, r in rejected.items()
                                         if r["reason"] != "DUPLICATE_COMMAND"}
    assert str(alices_nudge.command_id) not in rejected

    # The log proves it: a verified replay from the first tick reaches the same hash, with
    # alice's body hers, bob's attempts without effect and the world not retired.
    rebuilt = rebuild(KafkaLog(settings, registry), world, from_tick=0, verify=True,
                      authenticate=signing.authenticator(settings))
    state = rebuilt.state
    assert state.owners.get(ALICES) == "alice" and ALICES in state.world
    assert MOON_ID in state.world
    assert state.world.params.G != 1.0 and state.tick_rate_hz == 20.0
    # ... and the checks are what made it so: trusting every command diverges.
    with pytest.raises(ReplayDivergence):
        rebuild(KafkaLog(settings, registry), world, from_tick=0, verify=True)
    registry.close()
