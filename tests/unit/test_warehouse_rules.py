"""The warehouse's definitions: session splitting, cohorts and retention, active users;
and the shape of the spark-submit line and of the SQL the warehouse runs on ClickHouse 18.16."""

from __future__ import annotations

import re
from datetime import date, timedelta
from itertools import pairwise

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.migrate import split_statements
from jobs.spark import definitions, marts
from jobs.spark.warehouse import FACTS, TABLES

MIN = 60_000
D0 = date(2026, 10, 1)


def test_a_gap_of_exactly_thirty_minutes_continues_a_session():
    sessions = definitions.split_sessions([0, 10 * MIN, 40 * MIN, 80 * MIN + 1, 85 * MIN])
    assert [(s.start_ms, s.end_ms, s.commands) for s in sessions] == [
        (0, 40 * MIN, 3), (80 * MIN + 1, 85 * MIN, 2)]
    assert [s.length_s for s in sessions] == [2400.0, 299.999]


def test_sessions_ignore_input_order_and_a_single_command_lasts_zero():
    assert definitions.split_sessions([5 * MIN, 0]) == definitions.split_sessions([0, 5 * MIN])
    assert [s.length_s for s in definitions.split_sessions([7])] == [0.0]
    assert definitions.split_sessions([]) == []


def test_a_custom_gap():
    assert len(definitions.split_sessions([0, 6 * MIN], gap=timedelta(minutes=5))) == 2


@given(st.lists(st.integers(0, 10**9), max_size=60))
def test_sessions_partition_the_commands(times):
    sessions = definitions.split_sessions(times)
    assert sum(s.commands for s in sessions) == len(times)
    gap = int(definitions.SESSION_GAP.total_seconds() * 1000)
    for a, b in pairwise(sessions):
        assert b.start_ms - a.end_ms > gap  # sessions are separated by more than the gap
    for s in sessions:
        inside = sorted(t for t in times if s.start_ms <= t <= s.end_ms)
        assert all(y - x <= gap for x, y in pairwise(inside))


ACTIVE = {
    "alice": {D0, D0 + timedelta(days=1), D0 + timedelta(days=7)},
    "bob": {D0, D0 + timedelta(days=30)},
    "carol": {D0 + timedelta(days=1)},
}


def test_cohorts_are_first_active_days():
    assert definitions.cohorts(ACTIVE) == {D0: {"alice", "bob"}, D0 + timedelta(days=1): {"carol"}}


@pytest.mark.parametrize(("cohort", "n", "expected"), [
    (D0, 0, (2, 2)), (D0, 1, (2, 1)), (D0, 7, (2, 1)), (D0, 30, (2, 1)), (D0, 2, (2, 0)),
    (D0 + timedelta(days=1), 6, (1, 0)), (D0 + timedelta(days=5), 1, (0, 0)),
])
def test_retention_counts_activity_exactly_n_days_later(cohort, n, expected):
    assert definitions.retained(ACTIVE, cohort, n) == expected


def test_active_users_windows_end_with_the_day():
    assert definitions.active_users(ACTIVE, D0) == (2, 2, 2)
    assert definitions.active_users(ACTIVE, D0 + timedelta(days=7)) == (1, 2, 3)
    assert definitions.active_users(ACTIVE, D0 + timedelta(days=30)) == (1, 1, 3)  # D1..D30


# What ClickHouse 18.16 refuses (FIELD-NOTES): the warehouse SQL must use none of it.
_REFUSED = re.compile(r"DateTime64|\bMap\(|LowCardinality|\bTTL\b|CODEC|\bOVER\s*\(|"
                      r"\bWITH\s+\w+\s+AS\s*\(|toStartOfInterval|JSONExtract|ON CLUSTER",
                      re.IGNORECASE)


def test_warehouse_sql_avoids_what_clickhouse_18_refuses():
    from connectors.clickhouse import SQL_DIR

    ddl = split_statements((SQL_DIR / "002_warehouse.sql").read_text(encoding="utf-8"))
    for statement in [*ddl, *marts.MARTS.values()]:
        code = "\n".join(line for line in statement.splitlines()
                         if not line.strip().startswith("--"))
        assert not _REFUSED.search(code), code
    created = {m.group(1) for s in ddl
               for m in [re.search(r"CREATE (?:TABLE|VIEW) IF NOT EXISTS (\w+)", s)] if m}
    assert set(TABLES) <= created
    # Every table the build replaces is partitioned by day, so DROP PARTITION <day> works.
    for s in ddl:
        name = re.search(r"IF NOT EXISTS (\w+)", s)
        if name and name.group(1) in TABLES:
            assert "PARTITION BY toYYYYMMDD(date)" in s, name.group(1)
    assert set(FACTS).isdisjoint(marts.MARTS)
