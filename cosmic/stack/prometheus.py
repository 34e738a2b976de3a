"""Prometheus from Debian's package, scraping every process of this state folder.

Each process with a ``/metrics`` (:mod:`cosmic.metrics`) writes a file_sd
target under ``<state_dir>/prometheus/targets``; the generated configuration
scrapes those, the embedded registry (``/metrics`` on its own port) and
Prometheus itself, and loads the alert rules under ``infra/prometheus/rules``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import httpx

from cosmic.errors import DependencyMissing
from cosmic.metrics import targets_dir
from cosmic.stack.artifacts import REPO_ROOT
from cosmic.stack.service import LocalService

RULES_DIR = REPO_ROOT / "infra" / "prometheus" / "rules"


def prometheus_bin() -> str:
    if found := shutil.which("prometheus"):
        return found
    raise DependencyMissing("prometheus", "install it with `apt-get install prometheus` "
                                          "(infra/local/install.sh does)")


class PrometheusService(LocalService):
    name = "prometheus"

    @property
    def port(self) -> int:
        return self.settings.prometheus.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def endpoint(self) -> dict[str, Any]:
        return {"url": self.url, "targets": str(targets_dir(self.settings)),
                "rules": str(RULES_DIR)}

    def config(self) -> dict[str, Any]:
        p = self.settings.prometheus
        return {
            "global": {"scrape_interval": f"{p.scrape_interval_s:g}s",
                       "evaluation_interval": f"{p.evaluation_interval_s:g}s",
                       "external_labels": {"stack": "local"}},
            "rule_files": [str(RULES_DIR / "*.yml")],
            "scrape_configs": [
                # Every process of the platform: the job label comes from its target file.
                {"job_name": "cosmic",
                 "file_sd_configs": [{"files": [str(targets_dir(self.settings) / "*.json")],
                                      "refresh_interval": "5s"}]},
                {"job_name": "registry",
                 "static_configs": [{"targets": [f"127.0.0.1:{self.settings.registry.port}"]}]},
                {"job_name": "prometheus",
                 "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}]},
            ],
        }

    def prepare(self) -> None:
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        targets_dir(self.settings).mkdir(parents=True, exist_ok=True)
        # JSON is YAML: no YAML writer needed.
        self.config_file.write_text(json.dumps(self.config(), indent=2) + "\n")

    def command(self) -> list[str]:
        p = self.settings.prometheus
        return [prometheus_bin(), f"--config.file={self.config_file}",
                f"--storage.tsdb.path={self.home / 'data'}",
                f"--storage.tsdb.retention.time={p.retention}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle"]

    def executable(self) -> str:
        return "prometheus"

    def probe(self, timeout_s: float) -> None:
        httpx.get(f"{self.url}/-/ready", timeout=timeout_s).raise_for_status()

    def version(self) -> str | None:
        info = httpx.get(f"{self.url}/api/v1/status/buildinfo", timeout=3).json()
        return str(info["data"]["version"]).split("+", 1)[0]

    def notes(self) -> list[str]:
        try:
            active = httpx.get(f"{self.url}/api/v1/targets", timeout=3).json()["data"]
        except (httpx.HTTPError, KeyError, ValueError):
            return []
        targets = active.get("activeTargets", [])
        up = sum(t.get("health") == "up" for t in targets)
        return [f"scraping {up} of {len(targets)} targets up"]
