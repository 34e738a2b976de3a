"""The shared exposition: one /metrics per process, merged families, file_sd targets,
and every service's families clean under `promtool check metrics`."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess

import httpx
import pytest
from prometheus_client import Counter

from connectors.metrics import ConnectorMetrics
from cosmic import metrics
from cosmic.settings import Settings
from schemas.registry.core import Registry
from schemas.registry.server import serve
from schemas.registry.store import MemoryStore
from streams.gateway.metrics import GatewayMetrics
from streams.worlds.metrics import WorkerMetrics


def promtool_check(text: str) -> str:
    """What `promtool check metrics` says about ``text`` (empty: nothing to report)."""
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True,
                          text=True, timeout=30, check=False)
    return (proc.stdout + proc.stderr).strip()


def test_every_service_family_passes_promtool_and_merges_by_name():
    workers = [WorkerMetrics(f"w{i}", lambda: {(0, "live"): 2, (1, "hibernating"): 1})
               for i in range(2)]
    for i, w in enumerate(workers):
        w.tick(i, 0.2, 0.1, applied=3, rejected=["UNKNOWN_BODY"])
    gateway = GatewayMetrics(lambda: 4, lambda: 1)
    gateway.opened("websocket")
    gateway.sent(120, 0, deferred=5)
    connector = ConnectorMetrics("archive", batches=3)
    connector.lag[("cosmic.physics.ticks.v1", 2)] = 7
    sources = [*workers, gateway, connector]
    for s in sources:
        metrics.hub().add(s)
    try:
        text = metrics.exposition().decode()
    finally:
        for s in sources:
            metrics.hub().discard(s)
    assert promtool_check(text) == ""
    # Two workers in one process: one family, a series each.
    assert text.count("# TYPE cosmic_physics_ticks_total counter") == 1
    assert 'cosmic_physics_ticks_total{partition="0",worker="w0"} 1.0' in text
    assert 'cosmic_physics_ticks_total{partition="1",worker="w1"} 1.0' in text
    assert 'cosmic_physics_tick_overruns_total{partition="0",worker="w0"} 1.0' in text
    assert 'cosmic_physics_commands_rejected_total{reason="UNKNOWN_BODY",worker="w1"} 1.0' in text
    assert 'cosmic_physics_worlds{partition="1",state="hibernating",worker="w0"} 1.0' in text
    assert 'cosmic_gateway_connections{protocol="websocket"} 1.0' in text
    assert "cosmic_gateway_budget_deferrals_total 1.0" in text
    assert "cosmic_gateway_tick_to_send_seconds_count 1.0" in text
    assert ('cosmic_connector_lag{connector="archive",partition="2",'
            'topic="cosmic.physics.ticks.v1"} 7.0') in text
    assert "process_cpu_seconds_total" in text


def test_a_lost_partition_takes_its_series_with_it():
    w = WorkerMetrics("w", dict)
    w.tick(0, 0.01, 0.1, applied=1, rejected=[])
    w.tick(2, 0.01, 0.1, applied=1, rejected=[])
    w.forget([0])
    text = "".join(str(s) for m in w.collect() for s in m.samples)
    assert "'partition': '2'" in text and "'partition': '0'" not in text


def test_serve_reports_its_port_and_publishes_a_target(tmp_path):
    settings = Settings(state_dir=tmp_path, metrics={"port": 0})
    stale = tmp_path / "prometheus" / "targets" / "old-999999999.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("[]")
    counter = Counter("cosmic_test_things", "Things.", registry=None)
    counter.inc(3)
    endpoint = metrics.serve(settings, "unit")
    try:
        assert metrics.serve(settings, "unit") is endpoint  # one per process
        assert endpoint.port > 0
        with metrics.registered(counter):
            body = httpx.get(endpoint.url, timeout=10).text
        target = tmp_path / "prometheus" / "targets" / f"unit-{os.getpid()}.json"
        assert json.loads(target.read_text()) == [
            {"targets": [f"127.0.0.1:{endpoint.port}"], "labels": {"job": "unit"}}]
        assert not stale.exists()  # its process is gone
    finally:
        endpoint.close()
    assert "cosmic_test_things_total 3.0" in body
    assert promtool_check(body) == ""
    assert not target.exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(endpoint.url, timeout=2)


def test_registry_serves_its_metrics_on_its_own_port():
    with serve(Registry(MemoryStore())) as server:
        httpx.get(f"{server.url}/subjects", timeout=10).raise_for_status()
        httpx.get(f"{server.url}/subjects/nope/versions", timeout=10)
        response = httpx.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert promtool_check(text) == ""
    assert 'cosmic_registry_requests_total{code="200",route="subjects"} 1.0' in text
    assert 'cosmic_registry_requests_total{code="404",route="versions"} 1.0' in text
    assert "cosmic_registry_subjects 0.0" in text


def test_faust_app_metrics_pass_promtool(tmp_path):
    from streams import ecosystem
    from streams.living.metrics import FaustMetrics

    loop = asyncio.new_event_loop()  # a Faust app binds to the current loop when built
    asyncio.set_event_loop(loop)
    try:
        # No broker here: no credentials to look up either.
        app = ecosystem.build_app(Settings(state_dir=tmp_path, kafka={"security_protocol": "PLAINTEXT"}))
        check_faust(app, FaustMetrics(app))
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def check_faust(app, collector):
    app.monitor.messages_received_by_topic["cosmic.physics.ticks.v1"] += 4
    app.monitor.events_total = 4
    metrics.hub().add(collector)
    try:
        text = metrics.exposition().decode()
    finally:
        metrics.hub().discard(collector)
    assert promtool_check(text) == ""
    assert ('cosmic_faust_messages_received_total{app="cosmic-ecosystem",'
            'topic="cosmic.physics.ticks.v1"} 4.0') in text
