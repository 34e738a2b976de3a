"""Event contracts against the real local Kafka: interop through a topic, registry restarts, DLQ.

Each test runs its own registry server (ephemeral port) over a Kafka store
in a unique topic, so tests never touch the platform's ``_schemas``.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition
from confluent_kafka.admin import ConfigResource
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.serialization import MessageField as CMessageField
from confluent_kafka.serialization import SerializationContext as CContext

from cosmic import kafka, topics
from cosmic.settings import Settings, child_env
from schemas import catalog, dlq
from schemas.dlq import DeadLettered, DeadLetterQueue, Decoded, decode_or_dead_letter
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.kafka_store import KafkaStore
from schemas.registry.server import RegistryHTTPServer, serve
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext

pytestmark = pytest.mark.integration

T0 = datetime(2026, 4, 1, 0, 0, 0, 500000, tzinfo=UTC)
TopicFactory = Callable[..., str]


def _metric(i: int) -> dict[str, Any]:
    return {"name": f"m{i}", "world_id": None if i % 2 else f"w{i}", "window_start": T0, "window_end": T0,
            "value": i / 3, "labels": {"i": str(i)}}


@contextmanager
def registry_on_kafka(settings: Settings, store_topic: str) -> Iterator[RegistryHTTPServer]:
    store = KafkaStore(settings, topic=store_topic)
    try:
        with serve(Registry(store)) as server:
            yield server
    finally:
        store.close()


@pytest.fixture
def store_topic(settings: Settings) -> Iterator[str]:
    """A unique topic for one test's registry store, deleted afterwards."""
    name = f"_schemas.test.{uuid.uuid4().hex[:8]}"
    yield name
    admin = kafka.admin(settings)
    for future in admin.delete_topics([name], operation_timeout=30).values():
        with contextlib.suppress(KafkaException):  # never created, or already gone
            future.result(timeout=30)


def _consume_all(settings: Settings, topic: str, expected: int, timeout_s: float = 30.0) -> list[Message]:
    consumer: Consumer = kafka.consumer(settings, f"test-{uuid.uuid4().hex[:8]}")
    try:
        md = consumer.list_topics(topic, timeout=10).topics[topic]
        consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
        out: list[Message] = []
        deadline = time.monotonic() + timeout_s
        while len(out) < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and not msg.error():
                out.append(msg)
        return out
    finally:
        consumer.close()


def test_confluent_and_our_serde_interoperate_through_a_real_topic(
    settings: Settings, topic_factory: TopicFactory, store_topic: str
) -> None:
    topic = topic_factory(partitions=3)
    with registry_on_kafka(settings, store_topic) as server, \
            SchemaRegistryClient({"url": server.url}) as theirs, RegistryClient(server.url) as ours:
        cser = ConfluentSerializer(theirs, catalog.schema_text("MetricPoint"))
        oser = AvroSerializer(ours, "MetricPoint")
        producer = kafka.producer(settings)
        for i in range(20):
            value = (cser(_metric(i), CContext(topic, CMessageField.VALUE)) if i % 2 == 0
                     else oser(_metric(i), SerializationContext(topic)))
            producer.produce(topic, key=f"m{i}".encode(), value=value)
        assert producer.flush(30) == 0

        messages = _consume_all(settings, topic, 20)
        assert len(messages) == 20
        ode = AvroDeserializer(ours, "MetricPoint")
        cde = ConfluentDeserializer(theirs)
        by_ours = sorted((ode(m.value(), SerializationContext(topic)) for m in messages), key=lambda r: r["value"])
        by_theirs = sorted((cde(m.value(), CContext(topic, CMessageField.VALUE)) for m in messages),
                           key=lambda r: r["value"])
        assert by_ours == by_theirs == [_metric(i) for i in range(20)]
        assert ours.versions(f"{topic}-value") == [1]  # both registered the same schema once


def test_registry_keeps_subjects_after_a_restart(settings: Settings, store_topic: str) -> None:
    v1 = catalog.load("MetricPoint")
    v2 = {**v1, "fields": [*v1["fields"], {"name": "unit", "type": "string", "default": "", "doc": "unit"}]}
    with registry_on_kafka(settings, store_topic) as first, RegistryClient(first.url) as client:
        id1 = client.register("metrics-value", v1)
        id2 = client.register("metrics-value", v2)
        client.register("gone-value", catalog.load("PhysicsTick"))
        client.delete_subject("gone-value")
        client.set_compatibility("FULL", "metrics-value")

    with registry_on_kafka(settings, store_topic) as second, RegistryClient(second.url) as client:
        assert client.subjects() == ["metrics-value"]
        assert client.subjects(deleted=True) == ["gone-value", "metrics-value"]
        assert client.versions("metrics-value") == [1, 2]
        assert (client.schema(id1).raw, client.schema(id2).raw) == (v1, v2)
        assert client.compatibility("metrics-value") == "FULL"
        assert client.register("next-value", catalog.load("WorldSnapshot")) > max(id1, id2)

    admin = kafka.admin(settings)
    [future] = admin.describe_configs([ConfigResource("topic", store_topic)]).values()
    assert future.result(timeout=30)["cleanup.policy"].value == "compact"


def test_bad_bytes_land_in_the_dlq_with_the_reason_and_good_ones_pass(
    settings: Settings, topic_factory: TopicFactory, store_topic: str
) -> None:
    source = topic_factory(partitions=1)
    dead = topics.Topic(topic_factory(partitions=1), key="original key", value="original bytes", doc="test DLQ")
    with registry_on_kafka(settings, store_topic) as server, \
            RegistryClient(server.url) as registry:
        good = AvroSerializer(registry, "MetricPoint")(_metric(1), SerializationContext(source))
        payloads = [good, b"not avro at all", good[:-3], b"\x00\x00\x0f\x42\x40" + good[5:], good]
        producer = kafka.producer(settings)
        for i, value in enumerate(payloads):
            producer.produce(source, key=f"k{i}".encode(), value=value)
        assert producer.flush(30) == 0

        deserialize = AvroDeserializer(registry, "MetricPoint")
        queue = DeadLetterQueue(producer, dead)
        results = [decode_or_dead_letter(m, deserialize, queue) for m in _consume_all(settings, source, 5)]
        assert producer.flush(30) == 0

    assert [type(r) for r in results] == [Decoded, DeadLettered, DeadLettered, DeadLettered, Decoded]
    letters = sorted(_consume_all(settings, dead.name, 3), key=lambda m: int(dict(m.headers() or [])[dlq.SOURCE_OFFSET]))
    assert [m.value() for m in letters] == payloads[1:4]
    assert [m.key() for m in letters] == [b"k1", b"k2", b"k3"]
    headers = [dict(m.headers() or []) for m in letters]
    assert [h[dlq.ERROR_TYPE] for h in headers] == [b"UnknownMagicByte", b"TruncatedPayload", b"UnknownSchemaId"]
    assert all(h[dlq.SOURCE_TOPIC] == source.encode() and h[dlq.SOURCE_PARTITION] == b"0" for h in headers)
    assert [h[dlq.SOURCE_OFFSET] for h in headers] == [b"1", b"2", b"3"]
    assert b"1000000" in headers[2][dlq.ERROR_MESSAGE]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def registry_process(settings: Settings, store_topic: str, port: int) -> Iterator[str]:
    """``python -m schemas.registry.server`` as its own process, as the stack runs it."""
    # These settings (credentials included) on a private port and store topic.
    env = child_env(settings.with_overrides(registry=settings.registry.model_copy(
        update={"port": port, "topic": store_topic})))
    proc = subprocess.Popen(
        [sys.executable, "-m", "schemas.registry.server"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/subjects", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    pytest.fail(f"registry process did not come up: {err}")
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stderr:
            proc.stderr.close()


def test_registry_process_keeps_subjects_across_a_restart(settings: Settings, store_topic: str) -> None:
    port = _free_port()
    auth = settings.registry.auth()
    with registry_process(settings, store_topic, port) as url, \
            RegistryClient(url, auth=auth) as client:
        sid = client.register("cosmic.commands.v1-value", catalog.load("PlayerCommand"))
        client.set_compatibility("FULL_TRANSITIVE", "cosmic.commands.v1-value")
    with registry_process(settings, store_topic, port) as url, RegistryClient(url) as client:
        latest = client.latest("cosmic.commands.v1-value")
        assert (latest.id, latest.version) == (sid, 1)
        assert latest.schema.raw == catalog.load("PlayerCommand")
        assert client.compatibility("cosmic.commands.v1-value") == "FULL_TRANSITIVE"
