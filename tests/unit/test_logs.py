"""Log lines: text by default, JSON lines with the service and the world's context on demand."""

from __future__ import annotations

import logging
import subprocess
import sys

import orjson

from cosmic.logs import JsonFormatter


def test_json_lines_carry_service_world_tick_and_errors():
    formatter = JsonFormatter("physics")
    record = logging.LogRecord("streams.worlds.worker", logging.ERROR, __file__, 1,
                               "world %s quarantined", ("w1",), None)
    record.world, record.tick = "w1", 42
    line = orjson.loads(formatter.format(record))
    assert line["service"] == "physics" and line["level"] == "ERROR"
    assert line["message"] == "world w1 quarantined"
    assert (line["world"], line["tick"]) == ("w1", 42)
    assert line["ts"].endswith("+00:00")
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in orjson.loads(formatter.format(record))["error"]


def test_the_setting_picks_the_format_for_a_whole_process(tmp_path):
    code = ("import logging; from cosmic import logs; from cosmic.settings import Settings; "
            "logs.configure(Settings(), 'registry'); "
            "logging.getLogger('x').info('hello', extra={'world': 'w9'})")
    env = {"PATH": "/usr/bin:/bin", "COSMIC_LOG__FORMAT": "json", "COSMIC_STATE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=60, check=True).stderr.strip()
    line = orjson.loads(out)
    assert (line["service"], line["message"], line["world"]) == ("registry", "hello", "w9")
    env.pop("COSMIC_LOG__FORMAT")
    text = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          timeout=60, check=True).stderr.strip()
    assert text.endswith("INFO x hello") and not text.startswith("{")
