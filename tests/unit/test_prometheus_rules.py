"""The alert rules load, and every alert has a `promtool test rules` case that passes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "prometheus" / "rules"
TESTS = ROOT / "infra" / "prometheus" / "tests"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60,
                          check=False)


def alerts_in(path: Path) -> set[str]:
    doc = yaml.safe_load(path.read_text())
    return {r["alert"] for g in doc["groups"] for r in g["rules"] if "alert" in r}


def test_rules_are_valid():
    files = sorted(RULES.glob("*.yml"))
    assert files
    checked = promtool("check", "rules", *map(str, files))
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_every_alert_fires_in_its_promtool_case():
    alerts = set().union(*(alerts_in(f) for f in RULES.glob("*.yml")))
    assert {"TickOverrun", "WorldQuarantined", "ConsumerLagGrowing", "ConsumerGroupStalled",
            "DeadLetterRate", "ServiceDown", "HighCpu", "DiskFilling"} <= alerts
    cases = [yaml.safe_load(f.read_text()) for f in sorted(TESTS.glob("*_test.yml"))]
    fired = {t["alertname"] for c in cases for test in c["tests"]
             for t in test.get("alert_rule_test", []) if t["exp_alerts"]}
    assert alerts <= fired, f"alerts without a firing case: {sorted(alerts - fired)}"
    tested = promtool("test", "rules", *map(str, sorted(TESTS.glob("*_test.yml"))))
    assert tested.returncode == 0, tested.stdout + tested.stderr
