"""Topic administration: reconcile the cluster with :mod:`cosmic.topics`, and describe it."""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)

from cosmic import kafka, topics
from cosmic.errors import TopicError
from cosmic.settings import Settings
from cosmic.topics import Topic

_TIMEOUT_S = 30.0

# Topics whose partition count may change. Every other topic is keyed by a world,
# planet or civilization id, and a key's partition is murmur2(key) mod the count:
# a new count sends each key to another partition, away from its history (replay
# and recovery read one partition per world). The DLQ's records keep whatever key
# they had, and nothing reads the DLQ by key.
UNKEYED: frozenset[str] = frozenset({topics.DLQ.name})


class PartitionCountMismatch(TopicError):
    """A keyed topic's partition count differs from the declared one; reconciling refuses it."""

    def __init__(self, mismatches: list[tuple[str, int, int]], done: list[str]) -> None:
        lines = [
            f"{name} has {have} partitions but {want} are declared: refusing to change it. "
            "A world's home partition is murmur2(world id) mod the partition count, so a new "
            "count remaps every world and orphans its history (see runbooks/partitions.md)"
            for name, have, want in mismatches
        ]
        super().__init__("\n".join(lines))
        self.mismatches, self.done = mismatches, done




def _replication(settings: Settings, topic: Topic) -> int:
    return topic.replication or settings.kafka.replication_factor


def _wait(futures: Mapping[str, Future[Any]], what: str) -> None:
    for name, fut in futures.items():
        try:
            fut.result(timeout=_TIMEOUT_S)
        except KafkaException as exc:
            raise TopicError(f"could not {what} {name}: {exc.args[0].str()}") from None


def reconcile_topics(
    settings: Settings, declared: Iterable[Topic] = topics.ALL,
    unkeyed: Collection[str] = UNKEYED,
) -> list[str]:
    """Make the cluster match the declared topics; return what was done, one line each.

    Missing topics are created and configs that differ are set. Partition counts
    of keyed topics are never changed: when one differs from the declaration,
    everything else is still reconciled, then :class:`PartitionCountMismatch`
    is raised (it carries what was done). Unkeyed topics (the DLQ) are raised
    to the declared count; Kafka cannot lower one, so too many is reported.
    ``unkeyed`` names the topics whose count may change.
    """
    client = kafka.admin(settings)
    declared = list(declared)
    existing = client.list_topics(timeout=_TIMEOUT_S).topics
    report: list[str] = []

    missing = [t for t in declared if t.name not in existing]
    if missing:
        new = [
            NewTopic(t.name, num_partitions=t.partitions,
                     replication_factor=_replication(settings, t), config=t.configs())
            for t in missing
        ]
        _wait(client.create_topics(new, operation_timeout=_TIMEOUT_S), "create")
        report += [f"created {t.name} ({t.partitions} partitions)" for t in missing]

    grow = []
    refused: list[tuple[str, int, int]] = []
    for t in declared:
        if t.name not in existing:
            continue
        have = len(existing[t.name].partitions)
        if have != t.partitions and t.name not in unkeyed:
            refused.append((t.name, have, t.partitions))
        elif have < t.partitions:
            grow.append(NewPartitions(t.name, t.partitions))
            report.append(f"raised {t.name} partitions {have} -> {t.partitions}")
        elif have > t.partitions:
            report.append(
                f"warning: {t.name} has {have} partitions, more than the {t.partitions} "
                "declared; Kafka cannot shrink a topic"
            )
    if grow:
        _wait(client.create_partitions(grow, operation_timeout=_TIMEOUT_S), "grow")

    present = [t for t in declared if t.name in existing]
    if present:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t.name) for t in present]
        described = client.describe_configs(resources, request_timeout=_TIMEOUT_S)
        for t, fut in zip(present, described.values(), strict=True):
            current = {k: v.value for k, v in fut.result(timeout=_TIMEOUT_S).items()}
            wrong = {k: v for k, v in t.configs().items() if current.get(k) != v}
            if not wrong:
                continue
            fix = ConfigResource(
                ConfigResource.Type.TOPIC, t.name,
                incremental_configs=[
                    ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
                    for k, v in wrong.items()
                ],
            )
            (future,) = client.incremental_alter_configs([fix]).values()
            _wait({t.name: future}, "configure")
            report += [f"set {t.name} {k}={v}" for k, v in wrong.items()]

    if refused:
        raise PartitionCountMismatch(refused, report)
    if not report:
        report.append(f"all {len(declared)} topics up to date")
    return report


@dataclass(frozen=True)
class TopicRow:
    name: str
    partitions: int | None
    cleanup_policy: str
    retention: str
    messages: int | None


def _retention_text(ms: int) -> str:
    if ms < 0:
        return "forever"
    hours = ms / 3_600_000
    return f"{hours / 24:g}d" if hours >= 24 else f"{hours:g}h"


def describe_topics(
    settings: Settings, declared: Iterable[Topic] = topics.ALL
) -> list[TopicRow]:
    """Declared topics with their live partition counts and message counts (by offsets)."""
    client = kafka.admin(settings)
    existing = client.list_topics(timeout=_TIMEOUT_S).topics
    probe = kafka.consumer(settings, group_id=f"cosmic-topics-{uuid.uuid4().hex[:8]}",
                           **{"isolation.level": "read_uncommitted"})
    rows = []
    try:
        for t in declared:
            meta = existing.get(t.name)
            if meta is None:
                rows.append(TopicRow(t.name, None, t.cleanup_policy,
                                     _retention_text(t.retention_ms), None))
                continue
            total = 0
            for pid in meta.partitions:
                low, high = probe.get_watermark_offsets(
                    TopicPartition(t.name, pid), timeout=_TIMEOUT_S)
                total += high - low
            rows.append(TopicRow(t.name, len(meta.partitions), t.cleanup_policy,
                                 _retention_text(t.retention_ms), total))
    finally:
        probe.close()
    return rows
