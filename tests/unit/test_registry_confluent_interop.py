"""confluent-kafka's own registry client and Avro serde against our registry and our serde.

No Kafka needed: bytes cross between the two serdes directly; the Kafka
round trip is in tests/integration.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField as CMessageField
from confluent_kafka.serialization import SerializationContext as CContext

from cosmic import topics
from schemas import catalog
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import RegistryHTTPServer, serve
from schemas.registry.store import MemoryStore
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext

T0 = datetime(2026, 3, 1, 8, 30, 0, 250000, tzinfo=UTC)
METRIC = {"name": "physics.step_us.p99", "world_id": "w-7", "window_start": T0, "window_end": T0,
          "value": 812.5, "labels": {"worker": "3"}}


@pytest.fixture
def server() -> Iterator[RegistryHTTPServer]:
    with serve(Registry(MemoryStore())) as srv:
        yield srv


@pytest.fixture
def confluent_client(server: RegistryHTTPServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": server.url}) as client:
        yield client


def test_confluent_client_registers_and_reads_schemas(confluent_client: SchemaRegistryClient) -> None:
    text = catalog.schema_text("MetricPoint")
    sid = confluent_client.register_schema("cosmic.metrics.v1-value", Schema(text, "AVRO"))
    assert confluent_client.get_schema(sid).schema_str is not None
    latest = confluent_client.get_latest_version("cosmic.metrics.v1-value")
    assert (latest.schema_id, latest.version) == (sid, 1)
    found = confluent_client.lookup_schema("cosmic.metrics.v1-value", Schema(text, "AVRO"))
    assert found.schema_id == sid
    assert confluent_client.get_subjects() == ["cosmic.metrics.v1-value"]
    assert confluent_client.get_versions("cosmic.metrics.v1-value") == [1]
    assert confluent_client.test_compatibility("cosmic.metrics.v1-value", Schema(text, "AVRO"))
    assert confluent_client.set_compatibility(level="FULL")["compatibility"] == "FULL"
    assert confluent_client.get_compatibility() == "FULL"
    with pytest.raises(SchemaRegistryError) as info:
        confluent_client.get_schema(4242)
    assert info.value.error_code == 40403
    assert confluent_client.delete_subject("cosmic.metrics.v1-value") == [1]


def test_our_serde_reads_confluent_bytes_and_vice_versa(server: RegistryHTTPServer, confluent_client: SchemaRegistryClient) -> None:
    topic = topics.METRICS.name
    text = catalog.schema_text("MetricPoint")
    theirs_ser = ConfluentSerializer(confluent_client, text)
    theirs_de = ConfluentDeserializer(confluent_client)
    cctx = CContext(topic, CMessageField.VALUE)
    with RegistryClient(server.url) as ours:
        ours_ser = AvroSerializer(ours, "MetricPoint")
        ours_de = AvroDeserializer(ours, "MetricPoint")
        ctx = SerializationContext(topic)

        theirs = theirs_ser(METRIC, cctx)
        mine = ours_ser(METRIC, ctx)
        assert theirs == mine  # same subject, same id, same Avro body: byte-identical
        assert ours_de(theirs, ctx) == METRIC
        assert theirs_de(mine, cctx) == METRIC


def test_command_unions_cross_between_the_serdes(server: RegistryHTTPServer, confluent_client: SchemaRegistryClient) -> None:
    topic = topics.COMMANDS.name
    record: dict[str, Any] = {
        "command_id": uuid.UUID(int=7), "player_id": "p", "world_id": "w", "client_ts": T0, "received_ts": T0,
        "command": ("io.cosmicgarden.ApplyImpulse", {"body_id": 5, "dv": {"x": 1.0, "y": -2.0, "z": 0.5}}),
        "admission": {"key_id": "k1", "role": "player", "signature": b"\x01" * 32},
    }
    cctx = CContext(topic, CMessageField.VALUE)
    with RegistryClient(server.url) as ours:
        mine = AvroSerializer(ours, "PlayerCommand")(record, SerializationContext(topic))
        # confluent-kafka returns a union's record without its name
        assert ConfluentDeserializer(confluent_client)(mine, cctx) == {**record, "command": record["command"][1]}
        theirs = ConfluentSerializer(confluent_client, catalog.schema_text("PlayerCommand"))(record, cctx)
        assert AvroDeserializer(ours, "PlayerCommand")(theirs, SerializationContext(topic)) == record
