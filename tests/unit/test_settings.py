from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from cosmic import secrets
from cosmic.settings import Settings


def test_defaults_describe_the_local_stack_on_loopback(monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path):
    for var in ("COSMIC_KAFKA__BOOTSTRAP_SERVERS", "COSMIC_POSTGRES__PORT",
                "COSMIC_KAFKA__SECURITY_PROTOCOL", "COSMIC_POSTGRES__PASSWORD"):
        monkeypatch.delenv(var, raising=False)
    s = Settings(state_dir=tmp_path)
    assert s.kafka.bootstrap_servers.startswith("127.0.0.1:")
    assert s.kafka.security_protocol == "SASL_PLAINTEXT"  # secured by default
    assert s.registry.url.startswith("http://127.0.0.1:")
    # No password until the stack generates one (none is offered); read when a client
    # needs it, not before.
    assert s.postgres.dsn.startswith("postgresql://cosmic:@")
    assert s.registry.auth() is None
    generated = secrets.ensure(tmp_path, "postgres", "cosmic")
    assert (tmp_path / "secrets" / "postgres" / "cosmic").stat().st_mode & 0o777 == 0o600
    assert s.postgres.dsn.startswith(f"postgresql://cosmic:{generated}@")
    assert "***" in s.postgres.dsn_redacted
    secret = Settings(postgres={"password": "hunter2-s3cret"})
    assert "hunter2-s3cret" not in repr(secret)
    assert "hunter2-s3cret" in secret.postgres.dsn


def test_environment_overrides_nested_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("COSMIC_KAFKA__BOOTSTRAP_SERVERS", "10.0.0.5:9092")
    monkeypatch.setenv("COSMIC_POSTGRES__PORT", "6543")
    monkeypatch.setenv("COSMIC_STATE_DIR", str(tmp_path))
    s = Settings()
    assert s.kafka.bootstrap_servers == "10.0.0.5:9092"
    assert s.postgres.port == 6543
    assert s.state_dir == tmp_path


def test_toml_file_is_read_and_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    for var in ("COSMIC_CLICKHOUSE__PORT", "COSMIC_CLICKHOUSE__HTTP_PORT"):
        monkeypatch.delenv(var, raising=False)
    toml = tmp_path / "cosmic.toml"
    toml.write_text('[clickhouse]\nport = 9999\nhttp_port = 8999\n[kafka]\nheap = "1g"\n')
    monkeypatch.setenv("COSMIC_CONFIG", str(toml))
    monkeypatch.setenv("COSMIC_KAFKA__HEAP", "2g")
    s = Settings()
    assert s.clickhouse.port == 9999
    assert s.clickhouse.http_port == 8999
    assert s.kafka.heap == "2g"


def test_settings_are_frozen_and_typed(monkeypatch: pytest.MonkeyPatch):
    s = Settings()
    with pytest.raises(ValidationError):
        s.startup_timeout_s = 1  # type: ignore[misc]
    monkeypatch.setenv("COSMIC_POSTGRES__PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()


def test_child_env_carries_every_setting_and_nothing_stale(monkeypatch, tmp_path):
    from pydantic import SecretStr

    from cosmic.settings import Settings, child_env

    monkeypatch.setenv("COSMIC_PHYSICS__SHARD", "stale")  # the parent's own, overridden below
    parent = Settings(
        state_dir=tmp_path / "state", startup_timeout_s=12.5,
        kafka={"bootstrap_servers": "broker-a:9092,broker-b:9092", "replication_factor": 3},
        postgres={"password": SecretStr("s3cret"), "port": 25432},
        physics={"shard": "blue", "max_worlds": 7, "hibernate_after_s": 0.0},
        living={"start_from": "earliest"},
        live_metrics={"python_executable": None},
    )
    env = child_env(parent, base={"PATH": "/usr/bin", "COSMIC_PHYSICS__WORKER_ID": "old"})
    assert env["PATH"] == "/usr/bin"
    assert env["COSMIC_PHYSICS__SHARD"] == "blue" and env["COSMIC_PHYSICS__WORKER_ID"] == "physics-0"
    assert env["COSMIC_POSTGRES__PASSWORD"] == "s3cret"
    assert "COSMIC_LIVE_METRICS__PYTHON_EXECUTABLE" not in env  # None: the child's default
    for key in [k for k in os.environ if k.startswith("COSMIC_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    child = Settings()
    assert child.model_dump() == parent.model_dump()
    assert child.postgres.password.get_secret_value() == "s3cret"


def test_timescale_path_setting_defaults_to_auto_and_accepts_only_its_values(
        monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("COSMIC_POSTGRES__TIMESCALE", raising=False)
    assert Settings().postgres.timescale == "auto"
    monkeypatch.setenv("COSMIC_POSTGRES__TIMESCALE", "off")
    assert Settings().postgres.timescale == "off"
    monkeypatch.setenv("COSMIC_POSTGRES__TIMESCALE", "no")
    with pytest.raises(ValidationError, match="timescale"):
        Settings()
