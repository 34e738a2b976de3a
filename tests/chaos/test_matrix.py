"""The short fault matrix: every built cell once, small inputs, against the real stack.

Each cell runs real ``cosmic`` processes under its fault and asserts what the
verifier read from committed output: nothing lost, nothing duplicated, nothing
out of order, every restart recovered (and, for a kill of a transactional
processor or of the broker under it, aborted transactions seen read_uncommitted:
the kill landed). The broker-restart and registry-outage cells share one private
Kafka and registry, started at the first of them and stopped when the module ends
(pass or fail). ``cosmic chaos run`` runs the same cells and prints them as a table.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic_app.chaos import matrix, private, table

pytestmark = [pytest.mark.chaos, pytest.mark.integration, pytest.mark.slow]

PLAN = matrix.Plan.short()
# Fault events per cell, and so recovery times.
EVENTS = {"sigterm": 1, "sigkill": 3, "rebalance": 4, "store-outage": 1, "broker-restart": 1,
          "registry-outage": 1}


@pytest.fixture(scope="module", autouse=True)
def _private_stack() -> Iterator[None]:
    yield
    private.close()


@pytest.mark.parametrize("cell", matrix.cells(PLAN), ids=lambda c: f"{c.row}-{c.fault}")
def test_cell(cell: matrix.Cell, settings: Settings, stack: Stack, tmp_path: Path):
    (outcome,) = matrix.run(settings, [cell], PLAN, workdir=tmp_path, keep_private=True)
    print("\n" + table.render([outcome]))
    for e in outcome.events:
        print("  " + e)
    assert outcome.error is None, outcome.error + "\n" + _tail(tmp_path)
    assert outcome.verdict is not None
    t = outcome.verdict.tally
    assert (t.lost, t.duplicated, t.unexpected, t.out_of_order) == (0, 0, 0, 0), t
    assert t.seen == t.expected > 0
    if matrix.ROWS[cell.row].one_output_per_input:
        assert t.expected == cell.size
    assert outcome.verdict.failures == []
    assert len(outcome.recoveries_s) == EVENTS[cell.fault], outcome.events
    if outcome.proof_needed:
        assert outcome.verdict.aborted, "no aborted transaction seen: the kills did not land"
    if cell.fault in matrix.PRIVATE_STACK_FAULTS:
        # Never the shared stack: the row ran on the private one.
        (where,) = [e for e in outcome.events if e.startswith("private stack:")]
        assert settings.kafka.bootstrap_servers not in where
        assert settings.registry.url not in where
    assert outcome.passed


def test_every_named_fault_is_built():
    assert matrix.NOT_BUILT_FAULTS == ()
    assert set(EVENTS) == set(matrix.FAULTS)


def _tail(folder: Path) -> str:
    return "\n".join(p.read_text()[-3000:] for p in folder.glob("*.log"))
