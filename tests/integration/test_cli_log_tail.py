"""``cosmic log tail`` prints a real topic's records, decoded, as JSON lines."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from cosmic import kafka
from cosmic.settings import Settings
from cosmic_app.cli import build_cli
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import serve
from schemas.registry.store import MemoryStore
from schemas.serde import AvroSerializer, SerializationContext

pytestmark = pytest.mark.integration


def test_tail_decodes_records_and_shows_bad_ones(settings: Settings, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(partitions=2)
    with serve(Registry(MemoryStore())) as server, RegistryClient(server.url) as registry:
        serialize = AvroSerializer(registry, "MetricPoint")
        producer = kafka.producer(settings)
        for i in range(6):
            point = {"name": f"m{i}", "world_id": None, "window_start": datetime(2026, 1, 1, tzinfo=UTC),
                     "window_end": datetime(2026, 1, 1, 0, 1, tzinfo=UTC), "value": float(i), "labels": {}}
            producer.produce(topic, key=f"k{i}".encode(), value=serialize(point, SerializationContext(topic)),
                             partition=i % 2, timestamp=1_700_000_000_000 + i)
        producer.produce(topic, key=b"bad", value=b"\x05junk", partition=0, timestamp=1_700_000_000_100)
        assert producer.flush(30) == 0

        runner = CliRunner()
        last = runner.invoke(build_cli(), ["log", "tail", topic, "-n", "3", "--registry-url", server.url])
        assert last.exit_code == 0, last.output
        lines = [json.loads(x) for x in last.output.splitlines()]
        assert [ln["key"] for ln in lines] == ["k4", "k5", "bad"]
        assert lines[0]["value"]["name"] == "m4" and lines[0]["value"]["value"] == 4.0
        assert lines[2]["error"]["type"] == "UnknownMagicByte"

        everything = runner.invoke(build_cli(), ["log", "tail", topic, "--from-beginning", "--registry-url", server.url])
        assert everything.exit_code == 0, everything.output
        keys = [json.loads(x)["key"] for x in everything.output.splitlines()]
        assert keys == ["k0", "k1", "k2", "k3", "k4", "k5", "bad"]

        raw = runner.invoke(build_cli(), ["log", "tail", topic, "-n", "1", "--raw", "--bytes", "base64"])
        assert raw.exit_code == 0, raw.output
        assert json.loads(raw.output)["value"] == "BWp1bms="  # base64 of b"\x05junk"


def test_tail_of_a_missing_topic_is_a_clear_error() -> None:
    result = CliRunner().invoke(build_cli(), ["log", "tail", "no.such.topic.anywhere"])
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception)


def test_tail_counts_records_not_offsets_on_a_transactional_topic(
        settings: Settings, topic_factory: Callable[..., str]) -> None:
    """Each record in its own transaction: every other offset is a commit marker, so the
    last N offsets hold about N/2 records. `-n N` still prints N, the newest."""
    topic = topic_factory(partitions=1)
    producer = kafka.producer(settings, transactional_id=f"tail-{topic}")
    producer.init_transactions(30)
    for i in range(20):
        producer.begin_transaction()
        producer.produce(topic, key=f"k{i}".encode(), value=b"\x05raw", partition=0,
                         timestamp=1_700_000_000_000 + i)
        producer.commit_transaction(30)
    runner = CliRunner()
    for n in (1, 3, 7):
        out = runner.invoke(build_cli(), ["log", "tail", topic, "-n", str(n), "--raw"])
        assert out.exit_code == 0, out.output
        keys = [json.loads(x)["key"] for x in out.output.splitlines()]
        assert keys == [f"k{i}" for i in range(20 - n, 20)], (n, keys)
    first = runner.invoke(build_cli(), ["log", "tail", topic, "-n", "4", "--from-beginning", "--raw"])
    assert [json.loads(x)["key"] for x in first.output.splitlines()] == ["k0", "k1", "k2", "k3"]
