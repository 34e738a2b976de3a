"""`cosmic topics create` semantics: idempotent, and it reconciles drifted topics."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka.admin import ConfigResource

from cosmic import admin, kafka
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.topics import Topic

pytestmark = pytest.mark.integration


def _declared(n_partitions: int, retention_ms: int) -> list[Topic]:
    suffix = uuid.uuid4().hex[:8]
    return [
        Topic(f"test.reconcile.a.{suffix}", key="k", value="v", doc="a",
              partitions=n_partitions, retention_ms=retention_ms),
        Topic(f"test.reconcile.b.{suffix}", key="k", value="v", doc="b",
              partitions=1, cleanup_policy="compact", retention_ms=-1),
    ]


def test_create_is_idempotent_and_reconciles(settings: Settings, stack: Stack):
    declared = _declared(2, 3_600_000)
    first = admin.reconcile_topics(settings, declared)
    assert sorted(first) == sorted(
        [f"created {declared[0].name} (2 partitions)", f"created {declared[1].name} (1 partitions)"]
    )
    assert admin.reconcile_topics(settings, declared) == ["all 2 topics up to date"]

    # The declaration changes: a longer retention. (Partition counts of keyed topics are
    # never changed: see test_topics_partitions.py.)
    drifted = [
        Topic(declared[0].name, key="k", value="v", doc="a", partitions=2,
              retention_ms=7_200_000),
        declared[1],
    ]
    changes = admin.reconcile_topics(settings, drifted)
    assert f"set {declared[0].name} retention.ms=7200000" in changes

    client = kafka.admin(settings)
    md = client.list_topics(timeout=10).topics
    assert len(md[declared[0].name].partitions) == 2
    res = ConfigResource(ConfigResource.Type.TOPIC, declared[0].name)
    configs = next(iter(client.describe_configs([res]).values())).result(timeout=10)
    assert configs["retention.ms"].value == "7200000"
    assert admin.reconcile_topics(settings, drifted) == ["all 2 topics up to date"]

    rows = {r.name: r for r in admin.describe_topics(settings, drifted)}
    assert rows[declared[0].name].partitions == 2
    assert rows[declared[0].name].messages == 0
    assert rows[declared[1].name].cleanup_policy == "compact"
    client.delete_topics([t.name for t in declared])
