"""Kafka itself, through our client factory: partitions, group resume, transactions."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import TopicPartition

from cosmic import kafka
from cosmic.settings import Settings

pytestmark = pytest.mark.integration


def _drain(consumer, expected: int, timeout_s: float = 30.0):  # type: ignore[no-untyped-def]
    import time

    got = []
    deadline = time.monotonic() + timeout_s
    while len(got) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(500, timeout=0.5):
            assert msg.error() is None, msg.error()
            got.append(msg)
    return got


def test_produce_consume_round_trip_through_three_partitions(settings: Settings, topic_factory):
    topic = topic_factory(partitions=3)
    producer = kafka.producer(settings)
    sent = {}
    for i in range(300):
        key = f"world-{i % 7}".encode()
        value = f"event-{i}".encode()
        producer.produce(topic, key=key, value=value)
        sent.setdefault(key, []).append(value)
    assert producer.flush(30) == 0

    consumer = kafka.consumer(settings, group_id=f"rt-{uuid.uuid4().hex}")
    consumer.subscribe([topic])
    try:
        got = _drain(consumer, 300)
    finally:
        consumer.close()

    assert len(got) == 300
    assert {m.partition() for m in got} == {0, 1, 2}
    by_key: dict[bytes, list[bytes]] = {}
    partition_of: dict[bytes, set[int]] = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(m.value())
        partition_of.setdefault(m.key(), set()).add(m.partition())
    # Per key: same partition every time, and the order in which it was sent.
    assert by_key == sent
    assert all(len(p) == 1 for p in partition_of.values())


def test_consumer_group_resumes_from_committed_offset(settings: Settings, topic_factory):
    topic = topic_factory(partitions=1)
    group = f"resume-{uuid.uuid4().hex}"
    producer = kafka.producer(settings)
    for i in range(20):
        producer.produce(topic, value=str(i).encode())
    assert producer.flush(30) == 0

    first = kafka.consumer(settings, group_id=group)
    first.subscribe([topic])
    try:
        batch = _drain(first, 8)[:8]
        first.commit(offsets=[TopicPartition(topic, 0, batch[-1].offset() + 1)],
                     asynchronous=False)
    finally:
        first.close()
    assert [m.value() for m in batch] == [str(i).encode() for i in range(8)]

    second = kafka.consumer(settings, group_id=group)
    second.subscribe([topic])
    try:
        rest = _drain(second, 12)
    finally:
        second.close()
    assert [m.value() for m in rest] == [str(i).encode() for i in range(8, 20)]


def test_aborted_transaction_is_invisible_to_read_committed(settings: Settings, topic_factory):
    topic = topic_factory(partitions=1)
    producer = kafka.producer(settings, transactional_id=f"tx-{uuid.uuid4().hex}")
    producer.init_transactions(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"committed-1")
    producer.commit_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"aborted")
    producer.flush(30)
    producer.abort_transaction(30)

    producer.begin_transaction()
    producer.produce(topic, value=b"committed-2")
    producer.commit_transaction(30)

    committed = kafka.consumer(settings, group_id=f"rc-{uuid.uuid4().hex}")
    uncommitted = kafka.consumer(settings, group_id=f"ru-{uuid.uuid4().hex}",
                                 **{"isolation.level": "read_uncommitted"})
    try:
        committed.subscribe([topic])
        uncommitted.subscribe([topic])
        seen_committed = [m.value() for m in _drain(committed, 2)]
        seen_all = [m.value() for m in _drain(uncommitted, 3)]
        assert committed.consume(10, timeout=2) == []
    finally:
        committed.close()
        uncommitted.close()
    assert seen_committed == [b"committed-1", b"committed-2"]
    # The aborted record really was written: only isolation hides it.
    assert seen_all == [b"committed-1", b"aborted", b"committed-2"]
