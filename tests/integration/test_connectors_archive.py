"""Archive connector against real Kafka: the lake's files read back with fastavro to exactly
the records of the topic, in offset order per partition, also across a SIGKILL."""

from __future__ import annotations

import io
import signal
import uuid
from pathlib import Path
from typing import Any

import fastavro
import pytest
from confluent_kafka import TopicPartition
from fastavro.write import Writer

from connectors import archive
from connectors.lake import RolloverPolicy, manifests, read_topic
from cosmic import kafka, topics
from cosmic.settings import ConnectorSettings, Settings
from cosmic.stack import Stack
from schemas import catalog
from schemas.errors import SerializationError
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration


def _header_bytes(schema: str) -> int:
    buf = io.BytesIO()
    Writer(buf, catalog.parsed(schema), codec="deflate")
    return buf.tell()


def _kafka_records(s: Settings, topic: str, schema: str,
                   total: int) -> dict[int, list[tuple[int, Any]]]:
    """The decodable records of the topic, per partition, in offset order."""
    raw = cs.read_topic(s, topic, None, total)
    out: dict[int, list[tuple[int, Any]]] = {}
    with RegistryClient.from_settings(s) as registry:
        decode = AvroDeserializer(registry, schema)
        for p, msgs in raw.items():
            for offset, msg in msgs:
                try:
                    value = decode(msg.value(), SerializationContext(topic))
                except SerializationError:
                    continue  # dead-lettered, not archived
                # Only now: a partition holding nothing but the bad record has no key,
                # as the lake, which never archived it, has none.
                out.setdefault(p, []).append((offset, value))
    return out


def _lake_records(lake: Path, topic: str) -> dict[int, list[tuple[int, Any]]]:
    out: dict[int, list[tuple[int, Any]]] = {}
    for rec in read_topic(lake, topic):
        out.setdefault(rec.partition, []).append((rec.offset, rec.value))
    return out


def _partitions(consumer: Any, topic: str) -> list[int]:
    return sorted(consumer.list_topics(topic, timeout=10).topics[topic].partitions)


def _committed(s: Settings, group: str, topic: str) -> dict[int, int]:
    consumer = kafka.consumer(s, group)
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in _partitions(consumer, topic)],
                                 timeout=10)
        return {tp.partition: tp.offset for tp in tps if tp.offset >= 0}
    finally:
        consumer.close()


def _ends(s: Settings, topic: str) -> dict[int, int]:
    """End offsets of the partitions holding records (an empty one has nothing to commit)."""
    consumer = kafka.consumer(s, f"ends-{uuid.uuid4().hex[:6]}")
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in _partitions(consumer, topic)}
        return {p: end for p, end in ends.items() if end > 0}
    finally:
        consumer.close()


def test_lake_reads_back_exactly_the_topic(settings: Settings, stack: Stack, topic_factory,
                                           tmp_path: Path):
    s = settings.model_copy(update={
        "lake_dir": tmp_path / "lake",
        "connectors": ConnectorSettings(batch_rows=25, batch_interval_s=0.3)})
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_cmd, t_snap, t_dlq = topic_factory(), topic_factory(), topic_factory()
    commands = [cs.command(f"{world}-{i % 5}", i) for i in range(90)]
    cs.produce(s, t_cmd, "PlayerCommand", commands, garbage=1)
    cs.produce(s, t_snap, "EcosystemEvent", [cs.ecosystem(world, i) for i in range(10)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    policy = RolloverPolicy(max_bytes=_header_bytes("PlayerCommand") + 1500, max_age_s=1.0)
    conn = archive.build(s, {t_cmd: topics.COMMANDS, t_snap: topics.ECOSYSTEM_EVENTS},
                         group_id=group, policy=policy,
                         dlq_topic=topics.Topic(t_dlq, key="k", value="v", doc="test"))
    conn.start()
    try:
        cs.wait_for(lambda: _committed(s, group, t_cmd) == _ends(s, t_cmd), 60,
                    "offsets committed to the end", conn.failure)
    finally:
        conn.stop()
    assert conn.metrics.dead_letters == 1
    expected = _kafka_records(s, t_cmd, "PlayerCommand", 91)
    assert sum(len(v) for v in expected.values()) == 90
    assert _lake_records(s.lake_dir, t_cmd) == expected
    assert _lake_records(s.lake_dir, t_snap) == _kafka_records(s, t_snap, "EcosystemEvent", 10)
    found = manifests(s.lake_dir, t_cmd)
    assert len(found) > 3, "files rolled over by size"
    for path, m in found:
        assert path.parent.name.startswith("hour=") and path.parent.parent.name.startswith("date=")
        assert path.parent.parent.parent.name == f"topic={t_cmd}"
        with path.with_name(m.file).open("rb") as fh:
            reader = fastavro.reader(fh)
            assert reader.writer_schema is not None
            assert reader.writer_schema["name"] == "io.cosmicgarden.PlayerCommand"
            assert sum(1 for _ in reader) == m.count
    assert not list(s.lake_dir.rglob("*.tmp"))


def test_sigkill_with_open_files_then_resume(settings: Settings, stack: Stack, topic_factory,
                                             tmp_path: Path):
    s = settings.model_copy(update={"lake_dir": tmp_path / "lake"})
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic, t_dlq = topic_factory(), topic_factory()
    n = 150
    cs.produce(s, topic, "PhysicsTick", [cs.tick(f"{world}-{i % 4}", i) for i in range(n)])
    group = f"g-{uuid.uuid4().hex[:8]}"
    args = ("archive", "--route", f"{topic}={topics.PHYSICS_TICKS.name}", "--group-id", group,
            "--dlq-topic", t_dlq, "--instance-id", f"i-{uuid.uuid4().hex[:8]}",
            "--roll-bytes", str(_header_bytes("PhysicsTick") + 2000), "--roll-seconds", "30")
    env = {"COSMIC_CONNECTORS__BATCH_ROWS": "40", "COSMIC_CONNECTORS__BATCH_INTERVAL_S": "0.3"}
    log = tmp_path / "connector.log"
    first = cs.start_cli(s, log, *args, **env, COSMIC_CONNECTORS__CRASH_AFTER_WRITE="2")
    assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    closed = sum(m.count for _, m in manifests(s.lake_dir, topic))
    assert 0 < closed < n, "some files closed, others left open by the crash"
    assert list(s.lake_dir.rglob("*.tmp")), "the crash left temporary files behind"
    # The restart closes files after 2 s, so the whole topic is in closed files once it has
    # caught up; waiting for a count that includes open files would race the stop.
    second = cs.start_cli(s, log, *args[:-1], "2", **env)
    try:
        cs.wait_for(lambda: sum(m.count for _, m in manifests(s.lake_dir, topic)) >= n,
                    60, "the restart to archive",
                    lambda: AssertionError(log.read_text()) if second.poll() is not None else None)
    finally:
        assert cs.stop_cli(second) == 0, log.read_text()
    assert _lake_records(s.lake_dir, topic) == _kafka_records(s, topic, "PhysicsTick", n)
    assert not list(s.lake_dir.rglob("*.tmp"))
    assert _committed(s, group, topic) == _ends(s, topic)


def test_dead_letters_are_archived_as_they_came(settings: Settings, stack: Stack, topic_factory,
                                                tmp_path: Path):
    s = settings.model_copy(update={
        "lake_dir": tmp_path / "lake",
        "connectors": ConnectorSettings(batch_rows=10, batch_interval_s=0.2)})
    topic = topic_factory(partitions=1)
    producer = kafka.producer(s)
    sent = [(f"k{i}".encode(), bytes([i, 0, 255]) * i, [("cosmic.error.type", b"Bad")])
            for i in range(12)]
    for key, value, headers in sent:
        producer.produce(topic, key=key, value=value, headers=headers)
    assert producer.flush(30) == 0
    group = f"g-{uuid.uuid4().hex[:8]}"
    conn = archive.build(s, {topic: topics.DLQ}, group_id=group,
                         policy=RolloverPolicy(max_age_s=0.5))
    conn.start()
    try:
        cs.wait_for(lambda: _committed(s, group, topic) == _ends(s, topic), 60,
                    "offsets committed to the end", conn.failure)
    finally:
        conn.stop()
    got = [(r.value["key"], r.value["value"], [(h["name"], h["value"]) for h in r.value["headers"]])
           for r in read_topic(s.lake_dir, topic)]
    assert got == [(k, v, h) for k, v, h in sent]
    assert {m.schema for _, m in manifests(s.lake_dir, topic)} == {"ArchivedMessage"}
