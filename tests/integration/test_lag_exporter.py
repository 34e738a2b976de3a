"""The lag exporter on the real stack: a consumer paused for 10 s at 100 records/s.

Its lag reads 10 ± 1 s and 1,000 ± 5 % records in the exporter's /metrics, its
group turns WARN or STALLED, and within 5 s of resuming the group is OK again.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cosmic import kafka, metrics
from cosmic.lag import LagExporter
from cosmic.settings import Settings
from cosmic.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

RATE = 100  # records per second


class Producer(threading.Thread):
    """100 records/s, each stamped when it is produced, until stopped."""

    def __init__(self, settings: Settings, topic: str) -> None:
        super().__init__(daemon=True)
        self.producer = kafka.producer(settings, **{"linger.ms": 0})
        self.topic = topic
        self.stop = threading.Event()

    def run(self) -> None:
        t0, n = time.monotonic(), 0
        while not self.stop.is_set():
            self.producer.produce(self.topic, key=b"k", value=b"%d" % n)
            self.producer.poll(0)
            n += 1
            self.stop.wait(max(0.0, t0 + n / RATE - time.monotonic()))
        self.producer.flush(10)


def read(url: str, group: str) -> tuple[float, float, str | None]:
    records = seconds = 0.0
    status = None
    text = httpx.get(url, timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.labels.get("group") != group:
                continue
            if s.name == "cosmic_consumergroup_lag_records":
                records += s.value
            elif s.name == "cosmic_consumergroup_lag_seconds":
                seconds = max(seconds, s.value)
            elif s.name == "cosmic_consumergroup_status" and s.value == 1:
                status = s.labels["status"]
    return records, seconds, status


def test_a_paused_consumer_shows_its_lag_in_records_and_seconds(
        settings: Settings, stack: Stack, topic_factory, tmp_path):
    topic = topic_factory(partitions=1, prefix="test-lag")
    group = f"test-lag-{uuid.uuid4().hex[:8]}"
    local = settings.model_copy(update={
        "lag": settings.lag.model_copy(update={"interval_s": 0.2, "stall_after_s": 5.0,
                                               "group_prefix": group}),
        "metrics": settings.metrics.model_copy(update={"targets_dir": tmp_path})})
    exporter = LagExporter(local)
    endpoint = metrics.serve(local, "test")
    # Short fetch waits: when it pauses, it has read up to the last few milliseconds.
    consumer = kafka.consumer(settings, group, **{"fetch.wait.max.ms": 20})
    producer = Producer(settings, topic)
    consumer.subscribe([topic])

    def consume_for(seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            if consumer.consume(1000, timeout=0.05):
                consumer.commit(asynchronous=False)

    try:
        exporter.start()
        producer.start()
        consume_for(5)  # caught up, committing as it goes
        records, seconds, status = read(endpoint.url, group)
        assert status == "OK" and records < 50, (records, seconds, status)

        consume_for(1)
        consumer.pause(consumer.assignment())
        paused_at = time.monotonic()
        while time.monotonic() < paused_at + 10:
            consumer.poll(0.1)  # still a member: it heartbeats, it just reads nothing
        records, seconds, status = read(endpoint.url, group)
        assert 9.0 <= seconds <= 11.0, seconds
        assert 950 <= records <= 1050, records
        assert status in ("WARN", "STALLED"), status

        consumer.resume(consumer.assignment())
        resumed_at = time.monotonic()
        recovered = None
        while time.monotonic() < resumed_at + 5:
            consume_for(0.2)
            records, seconds, status = read(endpoint.url, group)
            if status == "OK" and seconds < 1.0:
                recovered = time.monotonic() - resumed_at
                break
        assert recovered is not None, (records, seconds, status)
    finally:
        producer.stop.set()
        producer.join(15)
        consumer.close()
        exporter.stop()
        endpoint.close()
    assert exporter.failure() is None
