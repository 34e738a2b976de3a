"""One result line per headline figure: printed for people, appended as JSON for the README.

Each bench calls :func:`result` for every headline ratio it prints (ours beside
its anchor, measured in the same run). The bench's own human line is printed
unchanged (``line``); when ``COSMIC_BENCH_RESULTS`` names a file, one JSON
object per result is appended to it, which ``scripts/bench-table`` renders as
the README's performance table. Stdlib only, so every bench can import it
(the benches run as scripts: ``bench/`` is on ``sys.path``).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

ENV = "COSMIC_BENCH_RESULTS"


def result(bench: str, measure: str, workload: str, ours: float | None, anchor_name: str,
           anchor: float | None, ratio: float | None, goal: str | None = None,
           met: bool | None = None, unit: str = "", line: str | None = None,
           note: str | None = None) -> None:
    """Record one headline figure.

    ``ratio`` is the bench's own ratio as it prints it (ours / anchor, or the
    inverse where the bench says so in ``measure``); ``goal`` is its text
    (``">= 0.9x"``) and ``met`` whether this run reached it, as the bench
    judged. ``line``, when given, is printed exactly as the bench printed it.
    """
    if line is not None:
        print(line, flush=True)
    path = os.environ.get(ENV)
    if not path:
        return
    record: dict[str, Any] = {
        "bench": bench, "measure": measure, "workload": workload, "ours": ours,
        "anchor_name": anchor_name, "anchor": anchor, "ratio": ratio, "goal": goal,
        "met": met, "unit": unit, "argv": sys.argv[1:],
    }
    if note:
        record["note"] = note
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def not_run(bench: str, reason: str, line: str | None = None) -> None:
    """Record that a bench could not measure here (no GPU, a tool missing), and why."""
    if line is not None:
        print(line, flush=True)
    path = os.environ.get(ENV)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps({"bench": bench, "not_run": reason, "argv": sys.argv[1:]}) + "\n")
