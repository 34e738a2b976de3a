"""The stack's Prometheus, started alone under a private state folder and port.

It finds this process's /metrics through the file_sd target the process wrote,
`cosmic stack status` shows it, and an alert fires for real: a consumer group
whose consumer stops while records keep coming is STOPPED, and after the rule's
minute ConsumerGroupStalled is firing.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import httpx
import pytest

from cosmic import kafka, metrics
from cosmic.lag import LagExporter
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.stack.prometheus import PrometheusService

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(240)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(1)


def test_prometheus_scrapes_the_platform_and_fires_an_alert(
        settings: Settings, stack: Stack, topic_factory, tmp_path):
    group = f"test-alert-{uuid.uuid4().hex[:8]}"
    private = settings.model_copy(update={
        "state_dir": tmp_path,
        "prometheus": settings.prometheus.model_copy(update={
            "port": free_port(), "scrape_interval_s": 1.0, "evaluation_interval_s": 1.0}),
        "lag": settings.lag.model_copy(update={"interval_s": 0.5, "group_prefix": group}),
        "metrics": settings.metrics.model_copy(update={"targets_dir": None})})
    prometheus = PrometheusService(private)
    topic = topic_factory(partitions=1, prefix="test-alert")
    stop_producing = threading.Event()

    def produce() -> None:
        producer = kafka.producer(settings)
        while not stop_producing.wait(0.05):
            producer.produce(topic, value=b"x")
            producer.poll(0)
        producer.flush(10)

    feeder = threading.Thread(target=produce, daemon=True)
    exporter = LagExporter(private)
    assert prometheus.start() == "started"
    endpoint = metrics.serve(private, "test")
    try:
        api = f"{prometheus.url}/api/v1"
        env = os.environ | {"COSMIC_STATE_DIR": str(tmp_path),
                            "COSMIC_PROMETHEUS__PORT": str(private.prometheus.port)}
        shown = subprocess.run([sys.executable, "-m", "cosmic_app", "stack", "status", "--json"],
                               env=env, capture_output=True, text=True, timeout=60, check=True)
        status = json.loads(shown.stdout)["prometheus"]
        assert status["running"] and status["version"].startswith("2."), status

        def our_target():
            targets = httpx.get(f"{api}/targets", timeout=5).json()["data"]["activeTargets"]
            return [t for t in targets if t["labels"].get("job") == "test"
                    and t["scrapeUrl"] == endpoint.url and t["health"] == "up"]

        wait_for(our_target, 30, "Prometheus to scrape this process through its target file")

        exporter.start()
        feeder.start()
        consumer = kafka.consumer(settings, group)
        consumer.subscribe([topic])
        until = time.monotonic() + 4
        while time.monotonic() < until:
            if consumer.consume(100, timeout=0.1):
                consumer.commit(asynchronous=False)
        consumer.close()  # the group's only consumer stops; records keep coming

        def firing():
            alerts = httpx.get(f"{api}/alerts", timeout=5).json()["data"]["alerts"]
            return [a for a in alerts if a["labels"].get("alertname") == "ConsumerGroupStalled"
                    and a["labels"].get("group") == group and a["state"] == "firing"]

        alert = wait_for(firing, 150, "ConsumerGroupStalled to fire")[0]
        assert alert["labels"]["status"] == "STOPPED"
        query = httpx.get(f"{api}/query", timeout=5, params={
            "query": f'cosmic_consumergroup_lag_records{{group="{group}"}}'}).json()
        assert float(query["data"]["result"][0]["value"][1]) > 0
    finally:
        stop_producing.set()
        exporter.stop()
        endpoint.close()
        prometheus.stop()
    assert exporter.failure() is None
    assert not prometheus.is_running()
