"""A world no input can break: hostile records against a live worker, and hibernation."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
import zlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer, TopicPartition

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas import catalog, dlq, models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext, header
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.eventlog import KafkaLog
from streams.worlds.pointintime import nearest_snapshot
from tests.integration.test_physics_worker import TickWatcher
from tests.liveworld import LiveWorld, start_worker, stop_worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CMD_CTX = SerializationContext(topics.COMMANDS.name)


def minimal_record(node: Any, named: dict[str, Any]) -> Any:
    """The smallest valid value of an Avro schema node (first union branch, first symbol)."""
    if isinstance(node, str):
        if node in named:
            return minimal_record(named[node], named)
        return {"null": None, "boolean": False, "int": 0, "long": 0, "float": 0.0,
                "double": 0.0, "bytes": b"", "string": "x"}[node]
    if isinstance(node, list):
        return minimal_record(node[0], named)
    kind = node["type"]
    if node.get("logicalType") == "uuid":
        return str(uuid.uuid4())
    if node.get("logicalType") == "timestamp-millis":
        return datetime.now(UTC)
    if kind == "record":
        named[node["name"]] = node
        if "namespace" in node:
            named[f"{node['namespace']}.{node['name']}"] = node
        return {f["name"]: minimal_record(f["type"], named) for f in node["fields"]}
    if kind == "enum":
        named[node["name"]] = node
        return node["symbols"][0]
    if kind == "array":
        return []
    if kind == "map":
        return {}
    if kind == "fixed":
        return b"\0" * node["size"]
    return minimal_record(kind, named)


def _world_split_by_partitioners(shard: str) -> str:
    """A world id that librdkafka's default partitioner (CRC32) sends off its home partition."""
    n = topics.COMMANDS.partitions
    for i in range(100):
        world = f"{shard}:world-{i}"
        if zlib.crc32(world.encode()) % n != kafka.home_partition(world, n):
            return world
    raise AssertionError("no world id the two partitioners disagree on")


def _command(world: str, body: models.Command, player: str = "hostile") -> models.PlayerCommand:
    now = datetime.now(UTC)
    return models.PlayerCommand(command_id=uuid.uuid4(), player_id=player, world_id=world,
                                client_ts=now, received_ts=now, command=body)


def _read_all(settings: Settings, topic: str, starts: dict[int, int], key: bytes,
              settle_s: float = 3.0) -> list[Any]:
    """Committed records of ``topic`` from ``starts`` with this key, up to the end the
    partitions have once ``settle_s`` has passed (the last transactions commit meanwhile)."""
    time.sleep(settle_s)
    consumer = kafka.consumer(settings, f"check-{uuid.uuid4().hex}")
    ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1]
            for p in starts}
    todo = {p for p in starts if starts[p] < ends[p]}
    consumer.assign([TopicPartition(topic, p, o) for p, o in starts.items() if p in todo])
    out = []
    deadline = time.monotonic() + 120
    while todo:
        assert time.monotonic() < deadline, f"{topic}: partitions {todo} never reached their end"
        out += [m for m in consumer.consume(1000, timeout=0.3)
                if m.error() is None and m.key() == key]
        for tp in consumer.position([TopicPartition(topic, p) for p in todo]):
            if tp.offset >= ends[tp.partition]:
                todo.discard(tp.partition)
    consumer.close()
    return out


def _ends(settings: Settings, topic: topics.Topic) -> dict[int, int]:
    consumer = kafka.reader(settings, "ends")
    out = {p: consumer.get_watermark_offsets(TopicPartition(topic.name, p), timeout=30)[1]
           for p in range(topic.partitions)}
    consumer.close()
    return out


def _replay_verifies(world: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "cosmic_app", "replay", "--world", world, "--from-tick", "0", "--verify"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_hostile_records_dead_letter_or_reject_once_and_every_world_goes_on(
        settings: Settings, stack: Stack, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"hostile-{run}"
    world = _world_split_by_partitioners(shard)
    bystander = f"{shard}:bystander"
    registry = RegistryClient.from_settings(settings)
    dlq_start, rej_start = _ends(settings, topics.DLQ), _ends(settings, topics.COMMANDS_REJECTED)
    watchers = {w: TickWatcher(settings, registry, w) for w in (world, bystander)}
    lives = {w: LiveWorld(settings, registry, w) for w in (world, bystander)}
    for live in lives.values():
        live.open(asteroids=10, tick_rate_hz=30.0, snapshot_every=20)
    log = tmp_path / "worker.log"
    worker = start_worker(f"hostile-{run}", shard, log)
    live = lives[world]
    try:
        for watcher in watchers.values():
            watcher.wait_for(25, 120, worker, log)

        # Bytes that are not a PlayerCommand, each keyed to the live world.
        good = AvroSerializer(registry, "PlayerCommand")(
            _command(world, models.RemoveBody(body_id=scenario.MOON_ID)).to_avro(), CMD_CTX)
        bad: dict[str, bytes] = {
            "garbage": b"definitely not avro",
            "truncated": good[:-7],
            "unknown schema id": header(987_654) + good[5:],
        }
        for name in catalog.names():
            if name == "PlayerCommand":
                continue
            schema = catalog.parsed(name)
            subject = {s: sub for sub, s in catalog.subjects().items()}[name]
            encode = AvroSerializer(registry, name, subject_name=lambda ctx, sch, sub=subject: sub)
            bad[f"a {name}"] = encode(minimal_record(schema, {}), CMD_CTX)
        for value in bad.values():
            live.send(value)

        # AdoptSnapshot commands that must be refused, each for its own reason.
        part = kafka.home_partition(world, topics.COMMANDS.partitions)
        _, snap = nearest_snapshot(KafkaLog(settings, registry), world, part)
        broken = dict(snap, ids=snap["ids"][:-3])
        delivered: dict[str, int] = {}
        p = kafka.producer(settings)
        p.produce(topics.STATE_SNAPSHOT_HISTORY.name, key=f"adopt:{world}".encode(), partition=part,
                  value=AvroSerializer(registry, "WorldSnapshot")(
                      broken, SerializationContext(topics.STATE_SNAPSHOT_HISTORY.name)),
                  on_delivery=lambda err, msg: delivered.update(offset=msg.offset()))
        assert p.flush(30) == 0
        real = next(off for off, _, rec in KafkaLog(settings, registry).read(
            topics.STATE_SNAPSHOT_HISTORY.name, part, key=world.encode())
            if rec["state_hash"] == snap["state_hash"])
        adopts = {
            "bad columns": (part, delivered["offset"], snap["state_hash"]),
            "wrong hash": (part, real, "00ff00ff"),
            "partition out of range": (99, real, snap["state_hash"]),
            "no snapshot at the offset": (part, 10**12, snap["state_hash"]),
        }
        adopt_ids = {}
        for why, (hp, ho, h) in adopts.items():
            cmd = _command(world, models.AdoptSnapshot(
                snapshot_partition=hp, snapshot_offset=ho, state_hash=h, source_world_id=world,
                source_tick=0, reason=why))
            adopt_ids[str(cmd.command_id)] = why
            live.send(cmd.to_avro())

        # New bodies sent by a plain confluent-kafka producer: its partitioner puts them
        # on another partition than the world's home.
        # (Its credentials still come from the factory; only the partitioner is librdkafka's.)
        plain = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers}
                         | kafka.security_config(settings))
        spawned, where = [], []
        for k in range(3):
            body_id = 900_000 + k
            cmd = _command(world, models.SpawnBody(
                body_id=body_id, kind=models.BodyKind.ASTEROID, mass=1e-12, radius=1e-7,
                position=models.Vec3(x=2.5 + k, y=0, z=0), velocity=models.Vec3(x=0, y=4.0, z=0)))
            spawned.append(body_id)
            plain.produce(topics.COMMANDS.name, key=world.encode(),
                          value=AvroSerializer(registry, "PlayerCommand")(signing.sign_record(
                              cmd.to_avro(), models.Role.OPERATOR, live.ring), CMD_CTX),
                          on_delivery=lambda err, msg: where.append(msg.partition()))
        assert plain.flush(30) == 0 and all(p != part for p in where), (where, part)
        assert live.producer.flush(30) == 0

        # The worker restarts in the middle: nothing is dead-lettered, forwarded or
        # rejected a second time when it reads those records again.
        for watcher in watchers.values():
            watcher.wait_for(len(watcher.ticks) + 30, 120, worker, log)
        assert stop_worker(worker) == 0
        worker = start_worker(f"hostile-{run}", shard, log)
        for watcher in watchers.values():
            watcher.wait_for(len(watcher.ticks) + 60, 120, worker, log)
        assert worker.poll() is None, log.read_text()[-3000:]
    finally:
        for live in lives.values():
            live.stop()
        stop_worker(worker)
    for watcher in watchers.values():
        watcher.poll()
        watcher.close()
        numbers = [t["tick"] for t in watcher.ticks]
        assert numbers == list(range(1, len(numbers) + 1)), (watcher.world, log.read_text()[-3000:])

    # Each bad record is in the DLQ exactly once, with its source and a reason.
    letters = _read_all(settings, topics.DLQ.name, dlq_start, world.encode())
    for name, value in bad.items():
        matching = [m for m in letters if m.value() == value]
        assert len(matching) == 1, (name, len(matching))
        headers = dict(matching[0].headers() or [])
        assert headers[dlq.SOURCE_TOPIC] == topics.COMMANDS.name.encode()
        assert headers[dlq.ERROR_MESSAGE], name
    assert len(letters) == len(bad)

    # Each refused AdoptSnapshot is rejected exactly once, with why.
    decode = AvroDeserializer(registry)
    rejected = [decode(m.value(), SerializationContext(topics.COMMANDS_REJECTED.name))
                for m in _read_all(settings, topics.COMMANDS_REJECTED.name, rej_start,
                                   world.encode())]
    for command_id, why in adopt_ids.items():
        mine = [r for r in rejected if str(r["command_id"]) == command_id]
        assert len(mine) == 1, (why, mine)
        assert mine[0]["reason"] == "INVALID_ARGUMENT", (why, mine[0])
    assert "cannot be restored" in next(r["message"] for r in rejected
                                        if adopt_ids.get(str(r["command_id"])) == "bad columns")
    assert not [r for r in rejected if r["reason"] == "DUPLICATE_ID"]

    # The misrouted bodies were forwarded home once and are in the world.
    home = _read_all(settings, topics.COMMANDS.name, {part: 0}, world.encode(), settle_s=1.0)
    forwarded = [m for m in home if dict(m.headers() or []).get("cosmic.forwarded.from")]
    assert len(forwarded) == 3
    out = _replay_verifies(world)
    assert "verified" in out
    rebuilt = _replay_state(settings, registry, world)
    assert set(spawned) <= rebuilt
    _replay_verifies(bystander)
    registry.close()


def _replay_state(settings: Settings, registry: RegistryClient, world: str) -> set[int]:
    from streams.worlds.pointintime import rebuild

    return {int(i) for i in rebuild(KafkaLog(settings, registry), world).state.world.ids}


def _statuses(settings: Settings, registry: RegistryClient, world: str) -> list[dict]:
    part = kafka.home_partition(world, topics.WORLDS.partitions)
    return [rec for _, _, rec in KafkaLog(settings, registry).read(
        topics.WORLDS.name, part, key=world.encode())]


def test_an_idle_world_hibernates_wakes_on_a_command_and_replays_across_the_sleep(
        settings: Settings, stack: Stack, tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"sleep-{run}"
    world = f"{shard}:world"
    registry = RegistryClient.from_settings(settings)
    watcher = TickWatcher(settings, registry, world)
    live = LiveWorld(settings, registry, world)
    live.open(asteroids=5, tick_rate_hz=30.0, snapshot_every=50)
    log = tmp_path / "worker.log"
    worker = start_worker(f"sleep-{run}", shard, log, "--hibernate-after", "2")
    try:
        watcher.wait_for(10, 120, worker, log)
        deadline = time.monotonic() + 60
        while not any(s["status"] == "HIBERNATING" for s in _statuses(settings, registry, world)):
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(1.0)
        watcher.poll()
        asleep_at = len(watcher.ticks)
        # A restart does not wake it: the worker reads the world's status back.
        assert stop_worker(worker) == 0
        worker = start_worker(f"sleep-{run}", shard, log, "--hibernate-after", "2")
        time.sleep(8.0)
        watcher.poll()
        assert len(watcher.ticks) == asleep_at, "a hibernating world went on ticking"
        live.send(_command(world, models.ApplyImpulse(
            body_id=scenario.STAR_ID, dv=models.Vec3(x=0.001, y=0, z=0))).to_avro())
        assert live.producer.flush(30) == 0
        watcher.wait_for(asleep_at + 20, 60, worker, log)
    finally:
        stop_worker(worker)
    watcher.poll()
    watcher.close()
    numbers = [t["tick"] for t in watcher.ticks]
    assert numbers == list(range(1, len(numbers) + 1))  # the hash chain goes on, no gap
    woke = [t for t in watcher.ticks if t["n_applied"] and t["tick"] > asleep_at]
    assert woke, "the waking command was never applied"
    kinds = [s["status"] for s in _statuses(settings, registry, world)]
    assert kinds[0] == "ACTIVE" and "HIBERNATING" in kinds and kinds[-1] in ("ACTIVE", "HIBERNATING")
    assert kinds.index("HIBERNATING") < len(kinds) - 1  # woke after sleeping
    assert "verified" in _replay_verifies(world)
    registry.close()


def test_a_world_past_the_cap_is_refused_with_a_reason(settings: Settings, stack: Stack,
                                                       tmp_path: Path):
    run = uuid.uuid4().hex[:8]
    shard = f"cap-{run}"
    first, second = f"{shard}:first", f"{shard}:second"
    registry = RegistryClient.from_settings(settings)
    rej_start = _ends(settings, topics.COMMANDS_REJECTED)
    watcher = TickWatcher(settings, registry, first)
    LiveWorld(settings, registry, first).open(asteroids=2, tick_rate_hz=30.0, snapshot_every=50)
    log = tmp_path / "worker.log"
    worker = start_worker(f"cap-{run}", shard, log, "--max-worlds", "1")
    try:
        watcher.wait_for(5, 120, worker, log)
        LiveWorld(settings, registry, second).open(asteroids=2, tick_rate_hz=30.0,
                                                   snapshot_every=50)
        watcher.wait_for(len(watcher.ticks) + 30, 60, worker, log)
    finally:
        stop_worker(worker)
    watcher.close()
    decode = AvroDeserializer(registry)
    refused = [decode(m.value(), SerializationContext(topics.COMMANDS_REJECTED.name))
               for m in _read_all(settings, topics.COMMANDS_REJECTED.name, rej_start,
                                  second.encode())]
    opening = scenario.star_system(second, asteroids=2)
    assert len(refused) == len(opening)
    assert {r["reason"] for r in refused} == {"WORLD_LIMIT"}
    assert "limit of 1 worlds" in refused[0]["message"]
    registry.close()
