"""The console script's commands all resolve, and bad input gets a clear message."""

from __future__ import annotations

import importlib
import subprocess
import sys

from click.testing import CliRunner

from cosmic_app.cli import _COMMAND_MODULES, build_cli


def test_every_registered_command_module_imports():
    group = build_cli()
    names = {getattr(importlib.import_module(m), attr).name for m, attr in _COMMAND_MODULES}
    assert names <= set(group.commands)
    assert "lag-exporter" in names
    for name in ("stack", "topics", "up"):
        assert name in group.commands


def test_help_lists_the_command_families():
    result = CliRunner().invoke(build_cli(), ["--help"])
    assert result.exit_code == 0
    for name in ("stack", "topics", "up"):
        assert name in result.output


def test_unknown_service_is_reported_not_traced():
    proc = subprocess.run([sys.executable, "-m", "cosmic_app", "stack", "logs", "zookeeper"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1
    assert "unknown service 'zookeeper'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_kafka_down_is_one_clear_line_not_a_traceback():
    import os
    import subprocess
    import sys

    env = {**os.environ, "COSMIC_KAFKA__BOOTSTRAP_SERVERS": "127.0.0.1:1"}
    done = subprocess.run([sys.executable, "-m", "cosmic_app", "log", "tail", "cosmic.commands.v1"],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert "error: kafka at 127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr
