"""Dashboards as code: every panel queries the provisioned datasource with valid PromQL,
and the compose file mounts what it provisions."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
BOARDS = sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json"))


def panel_queries() -> list[tuple[str, str, str]]:
    """(dashboard file, panel title, expression) for every panel's every target."""
    out = []
    for path in BOARDS:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                out.append((path.name, panel["title"], target["expr"]))
    return out


def test_dashboards_use_the_provisioned_datasource():
    sources = yaml.safe_load((ROOT / "infra/grafana/provisioning/datasources/prometheus.yml")
                             .read_text())["datasources"]
    uids = {s["uid"] for s in sources}
    assert {p.stem for p in BOARDS} >= {"overview", "physics", "gateway", "lag", "pipelines"}
    seen_uids = set()
    for path in BOARDS:
        board = json.loads(path.read_text())
        assert board["panels"], path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), f"{path.name}: panel ids repeat"
        for panel in board["panels"]:
            assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
            seen_uids.add(panel["datasource"]["uid"])
    assert seen_uids <= uids


def test_compose_provisions_prometheus_and_grafana_from_the_repository():
    compose = yaml.safe_load((ROOT / "docker-compose.kafka.yml").read_text())["services"]
    for name in ("prometheus", "grafana"):
        for volume in compose[name]["volumes"]:
            source = volume.split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is missing"
