"""`cosmic topics create` never changes the partition count of a keyed topic."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from cosmic import admin, kafka
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.topics import Topic

pytestmark = pytest.mark.integration


def _topic(name: str, partitions: int, retention_ms: int = 3_600_000) -> Topic:
    return Topic(name, key="world id", value="v", doc="test", partitions=partitions,
                 retention_ms=retention_ms)


def _partitions(settings: Settings, name: str) -> int:
    return len(kafka.admin(settings).list_topics(name, timeout=10).topics[name].partitions)


def _retention(settings: Settings, name: str) -> str:
    client = kafka.admin(settings)  # held: the future fails if its client is collected
    res = ConfigResource(ConfigResource.Type.TOPIC, name)
    fut = next(iter(client.describe_configs([res]).values()))
    return str(fut.result(timeout=10)["retention.ms"].value)


@pytest.mark.parametrize("declared_count", [4, 1])
def test_a_keyed_topics_count_is_refused_and_the_rest_reconciled(
        settings: Settings, stack: Stack, declared_count: int):
    suffix = uuid.uuid4().hex[:8]
    keyed, fresh = f"test.partitions.keyed.{suffix}", f"test.partitions.fresh.{suffix}"
    admin.reconcile_topics(settings, [_topic(keyed, 2)])
    try:
        drifted = [_topic(keyed, declared_count, retention_ms=7_200_000), _topic(fresh, 1)]
        with pytest.raises(admin.PartitionCountMismatch) as caught:
            admin.reconcile_topics(settings, drifted)
        message = str(caught.value)
        assert f"{keyed} has 2 partitions but {declared_count} are declared" in message
        assert "murmur2(world id) mod the partition count" in message
        assert "orphans its history" in message
        # The count is untouched; the missing topic and the config were still done.
        assert _partitions(settings, keyed) == 2
        assert _retention(settings, keyed) == "7200000"
        assert f"created {fresh} (1 partitions)" in caught.value.done
        assert f"set {keyed} retention.ms=7200000" in caught.value.done
        # Asking again changes nothing and still refuses.
        with pytest.raises(admin.PartitionCountMismatch):
            admin.reconcile_topics(settings, drifted)
        assert _partitions(settings, keyed) == 2
    finally:
        kafka.admin(settings).delete_topics([keyed, fresh])


def test_an_unkeyed_topic_is_still_raised(settings: Settings, stack: Stack):
    name = f"test.partitions.unkeyed.{uuid.uuid4().hex[:8]}"
    admin.reconcile_topics(settings, [_topic(name, 1)], unkeyed={name})
    try:
        changes = admin.reconcile_topics(settings, [_topic(name, 3)], unkeyed={name})
        assert changes == [f"raised {name} partitions 1 -> 3"]
        assert _partitions(settings, name) == 3
    finally:
        kafka.admin(settings).delete_topics([name])


def test_the_platforms_keyed_topics_are_all_but_the_dlq():
    from cosmic import topics

    assert {topics.DLQ.name} == admin.UNKEYED
