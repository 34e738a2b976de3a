"""``cosmic log tail`` filters and ``cosmic log stats`` against a real topic."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner
from confluent_kafka import TopicPartition

from cosmic import kafka
from cosmic.settings import Settings
from cosmic_app.cli import build_cli
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

pytestmark = pytest.mark.integration

T0 = 1_700_000_000_000


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat()


def _fill(settings: Settings, topic: str) -> None:
    with RegistryClient.from_settings(settings) as registry:
        serialize = AvroSerializer(registry, "MetricPoint")
        producer = kafka.producer(settings)
        for i in range(12):
            world = f"w{i % 3}"
            point = {"name": "ticks_per_s", "world_id": world if i % 4 else None,
                     "window_start": datetime(2026, 1, 1, tzinfo=UTC),
                     "window_end": datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
                     "value": float(i), "labels": {}}
            # Keyed by world for even i, by metric name for odd i (world only in the value).
            key = world if i % 2 == 0 else "ticks_per_s"
            producer.produce(topic, key=key.encode(), timestamp=T0 + 1000 * i,
                             value=serialize(point, SerializationContext(topic)))
        assert producer.flush(30) == 0


def test_tail_filters_by_key_world_and_time(settings: Settings, topic_factory: Callable[..., str]):
    topic = topic_factory(partitions=3)
    _fill(settings, topic)
    cli, runner = build_cli(), CliRunner()

    def values(*args: str) -> list[float]:
        res = runner.invoke(cli, ["log", "tail", topic, *args])
        assert res.exit_code == 0, res.output
        return [json.loads(x)["value"]["value"] for x in res.output.splitlines()]

    assert values("--key", "w0", "-n", "100") == [0.0, 6.0]
    # w1: keyed records 4 and 10, plus 1 and 7 which name it in the value (when not None).
    assert values("--world", "w1", "-n", "100") == [1.0, 4.0, 7.0, 10.0]
    assert values("--from-time", _iso(T0 + 3000), "--to-time", _iso(T0 + 5000)) == [3.0, 4.0, 5.0]
    assert values("--from-time", _iso(T0 + 9000)) == [9.0, 10.0, 11.0]
    assert values("--world", "w2", "-n", "1") == [11.0]
    bad = runner.invoke(cli, ["log", "tail", topic, "--from-time", "yesterday"])
    assert bad.exit_code != 0 and "ISO 8601" in bad.output


def test_stats_shows_offsets_times_and_group_lag(settings: Settings, topic_factory: Callable[..., str]):
    topic = topic_factory(partitions=1)
    _fill(settings, topic)
    group = f"lagging-{uuid.uuid4().hex[:8]}"
    consumer = kafka.consumer(settings, group)
    consumer.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    consumer.close()

    res = CliRunner().invoke(build_cli(), ["log", "stats", topic, "--json"])
    assert res.exit_code == 0, res.output
    (part,) = json.loads(res.output)["partitions"]
    assert (part["low"], part["high"], part["records"]) == (0, 12, 12)
    assert (part["first_ts"], part["last_ts"]) == (T0, T0 + 11_000)
    assert part["groups"][group] == {"committed": 5, "lag": 7}

    table = CliRunner().invoke(build_cli(), ["log", "stats", topic])
    assert f"{group}: p0=7" in table.output


def test_tail_ends_on_a_transactional_topic(settings: Settings, topic_factory: Callable[..., str]):
    """A transactional topic ends in commit markers that are never returned as records."""
    topic = topic_factory(partitions=2)
    producer = kafka.producer(settings, transactional_id=f"tail-{uuid.uuid4().hex}")
    producer.init_transactions(30)
    for i in range(3):
        producer.begin_transaction()
        producer.produce(topic, key=f"k{i}".encode(), value=b"v", partition=i % 2,
                         timestamp=T0 + i)
        producer.commit_transaction(30)
    res = CliRunner().invoke(build_cli(), ["log", "tail", topic, "-n", "2", "--raw"])
    assert res.exit_code == 0, res.output
    assert [json.loads(x)["key"] for x in res.output.splitlines()] == ["k1", "k2"]
