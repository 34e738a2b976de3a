"""The short fault matrix: every built cell once, small inputs, against the real stack.

Each cell runs real ``cosmic`` processes under its fault and asserts what the
verifier read from committed output: nothing lost, nothing duplicated, nothing
out of order, every restart recovered (and, for a kill of a transactional
processor, aborted transactions seen read_uncommitted: the kill landed).
``cosmic chaos run`` runs the same cells and prints them as a table.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic_app.chaos import matrix, table

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

PLAN = matrix.Plan.short()


@pytest.mark.parametrize("cell", matrix.cells(PLAN), ids=lambda c: f"{c.row}-{c.fault}")
def test_cell(cell: matrix.Cell, settings: Settings, stack: Stack, tmp_path: Path):
    (outcome,) = matrix.run(settings, [cell], PLAN, workdir=tmp_path)
    print("\n" + table.render([outcome]))
    for e in outcome.events:
        print("  " + e)
    assert outcome.error is None, outcome.error + "\n" + _tail(tmp_path)
    assert outcome.verdict is not None
    t = outcome.verdict.tally
    assert (t.lost, t.duplicated, t.unexpected, t.out_of_order) == (0, 0, 0, 0), t
    assert t.seen == t.expected == cell.size
    assert outcome.verdict.failures == []
    faults = {"sigterm": 1, "sigkill": 3, "rebalance": 4, "store-outage": 1}[cell.fault]
    assert len(outcome.recoveries_s) == faults, outcome.events
    if outcome.proof_needed:
        assert outcome.verdict.aborted, "no aborted transaction seen: the kills did not land"
    assert outcome.passed


def _tail(folder: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in folder.glob("*.log"))
