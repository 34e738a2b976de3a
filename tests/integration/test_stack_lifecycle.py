"""A second, private stack on other ports: up, up again, stop one service, down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from cosmic import kafka
from cosmic.errors import ServiceUnavailable
from cosmic.settings import (
    ClickHouseSettings,
    KafkaSettings,
    PostgresSettings,
    PrometheusSettings,
    RegistrySettings,
    Settings,
)
from cosmic.stack import Stack

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _private_settings(state: Path, shared: Settings) -> Settings:
    return Settings(
        state_dir=state,
        cache_dir=shared.cache_dir,
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:29092", port=29092,
                            controller_port=29093, heap="256m"),
        registry=RegistrySettings(url="http://127.0.0.1:28081", port=28081),
        postgres=PostgresSettings(port=25432),
        clickhouse=ClickHouseSettings(port=29000, http_port=28123),
        prometheus=PrometheusSettings(port=29090),
        startup_timeout_s=120,
    )


def _cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "COSMIC_STATE_DIR": str(settings.state_dir),
        "COSMIC_CACHE_DIR": str(settings.cache_dir),
        "COSMIC_KAFKA__BOOTSTRAP_SERVERS": settings.kafka.bootstrap_servers,
        "COSMIC_KAFKA__PORT": str(settings.kafka.port),
        "COSMIC_KAFKA__CONTROLLER_PORT": str(settings.kafka.controller_port),
        "COSMIC_REGISTRY__PORT": str(settings.registry.port),
        "COSMIC_REGISTRY__URL": settings.registry.url,
        "COSMIC_POSTGRES__PORT": str(settings.postgres.port),
        "COSMIC_CLICKHOUSE__PORT": str(settings.clickhouse.port),
        "COSMIC_CLICKHOUSE__HTTP_PORT": str(settings.clickhouse.http_port),
        "COSMIC_PROMETHEUS__PORT": str(settings.prometheus.port),
    }
    return subprocess.run([sys.executable, "-m", "cosmic_app", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def test_stack_up_twice_stop_one_then_down(tmp_path: Path, settings: Settings):
    private = _private_settings(tmp_path / "state", settings)
    stack = Stack(private)
    try:
        first = _cli(private, "stack", "up")
        assert first.returncode == 0, first.stderr
        assert "kafka: started" in first.stdout

        status = json.loads(_cli(private, "stack", "status", "--json").stdout)
        assert set(status) == {"kafka", "registry", "postgres", "clickhouse", "prometheus"}
        assert status["registry"]["endpoint"]["url"] == "http://127.0.0.1:28081"
        assert all(s["running"] for s in status.values())
        assert status["kafka"]["version"].startswith("4.")
        assert "KRaft" in status["kafka"]["version"]
        assert status["kafka"]["endpoint"]["bootstrap_servers"] == "127.0.0.1:29092"
        assert status["postgres"]["version"].split(".")[0].isdigit()
        assert status["clickhouse"]["port"] == 29000
        assert all(s["rss_mib"] > 0 for s in status.values())
        # Idle, the whole stack fits in 2 GiB (measured ~0.8 GiB: Kafka's 512 MiB heap
        # first), leaving the rest of a small box to the platform and its jobs.
        assert sum(s["rss_mib"] for s in status.values()) < 2048, status
        pids = {name: s["pid"] for name, s in status.items()}

        again = _cli(private, "stack", "up")
        assert again.returncode == 0, again.stderr
        assert again.stdout.count("already running") == len(status)
        status2 = json.loads(_cli(private, "stack", "status", "--json").stdout)
        assert {n: s["pid"] for n, s in status2.items()} == pids

        # A stopped service gives a clear, typed error within the timeout, not a hang.
        stack.service("postgres").stop()
        stack.service("kafka").stop()
        for check in (
            lambda: stack.service("postgres").check(timeout_s=3),
            lambda: kafka.wait_for_cluster(private, timeout_s=3),
        ):
            t0 = time.monotonic()
            with pytest.raises(ServiceUnavailable) as err:
                check()
            assert time.monotonic() - t0 < 15
            assert "did not answer at 127.0.0.1:" in str(err.value)
        text = _cli(private, "stack", "status").stdout
        assert "postgres    stopped" in text
        assert "clickhouse  running" in text
    finally:
        down = _cli(private, "stack", "down")
    assert down.returncode == 0, down.stderr
    assert "clickhouse: stopped" in down.stdout
    for pid in pids.values():
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    leftovers = [
        p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(tmp_path) in part for part in (p.info["cmdline"] or []))
    ]
    assert leftovers == []


def test_wrong_port_gives_clear_error_quickly(settings: Settings):
    wrong = Settings(
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1", port=1),
        postgres=PostgresSettings(port=1),
        clickhouse=ClickHouseSettings(port=1),
    )
    stack = Stack(wrong)
    for check in (
        lambda: kafka.wait_for_cluster(wrong, timeout_s=2),
        lambda: stack.service("postgres").check(timeout_s=2),
        lambda: stack.service("clickhouse").check(timeout_s=2),
    ):
        t0 = time.monotonic()
        with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:1"):
            check()
        assert time.monotonic() - t0 < 10
