"""`cosmic up` runs each platform service as its own Kafka identity (cosmic/acls.py)."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from cosmic import acls
from cosmic.settings import Settings
from cosmic_app.cli.up import build_services


def _identities(settings: Settings) -> dict[str, str]:
    out = {}
    for svc in build_services(settings, ("live-metrics",)):
        env = getattr(svc, "env", None)
        own = getattr(svc, "settings", None)
        name = getattr(svc, "name", type(svc).__name__)
        out[name] = env["COSMIC_KAFKA__IDENTITY"] if env else own.kafka.identity
    return out


def test_each_service_is_its_own_identity_and_every_one_is_in_the_table(tmp_path: Path):
    got = _identities(Settings(state_dir=tmp_path))
    assert got == {"smoke": "admin", "physics": "physics", "players": "players",
                   "ecosystem": "living", "civilization": "living", "timescale": "connectors",
                   "clickhouse": "connectors", "archive": "connectors", "bodies": "connectors",
                   "gateway": "gateway",
                   "detector": "detector", "lag-exporter": "admin", "live-metrics": "jobs"}
    assert set(got.values()) <= set(acls.by_name(Settings(state_dir=tmp_path)))


def test_with_one_explicit_password_every_service_is_that_identity(tmp_path: Path):
    settings = Settings(state_dir=tmp_path, kafka={"identity": "platform",
                                                   "sasl_password": SecretStr("given")})
    assert set(_identities(settings).values()) == {"platform"}
