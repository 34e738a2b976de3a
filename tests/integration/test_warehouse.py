"""The warehouse built by `cosmic jobs run warehouse` (spark-submit) from a synthetic lake.

Four known players over 31 days; every expected number below is worked out by
hand in the comments (and cross-checked with jobs.spark.definitions). The build runs
in a private ClickHouse database and lake, through the real CLI.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime

import pytest

from connectors import stores
from cosmic import topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.timeutil import to_ms
from jobs.spark import definitions
from jobs.spark import testing as t
from jobs.spark.warehouse import TABLES
from tests.integration import connectors_support as cs
from tests.integration.warehouse_scenario import (
    D0,
    D1,
    D2,
    D7,
    D8,
    D14,
    D30,
    GUIDE,
    fmt,
    guide_examples,
    scenario,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

def _build(private: Settings, first: date, last: date | None = None, *extra: str) -> str:
    args = ["--date", first.isoformat()] + (["--end-date", last.isoformat()] if last else [])
    args += extra
    r = subprocess.run([sys.executable, "-m", "cosmic_app", "jobs", "run", "warehouse", *args],
                       env=cs.cli_env(private), capture_output=True, text=True, timeout=600,
                       check=False)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r.stdout


@pytest.fixture(scope="module")
def built(settings: Settings, stack: Stack, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[Settings, object]]:
    name = f"cosmic_wh_{uuid.uuid4().hex[:8]}"
    lake = tmp_path_factory.mktemp("lake")
    private = settings.model_copy(update={
        "lake_dir": lake, "clickhouse": settings.clickhouse.model_copy(update={"database": name})})
    t.write_lake(lake, scenario(), partitions=2, settings=private)
    admin = stores.clickhouse_client(settings)
    admin.execute(f"CREATE DATABASE {name}")
    cl = stores.clickhouse_client(private)
    try:
        out = _build(private, D0, D30)
        print(out)
        assert out.count("warehouse 20") == 31
        yield private, cl
    finally:
        cl.disconnect()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


def _q(built: tuple[Settings, object], sql: str, params: dict | None = None) -> list[tuple]:
    _, cl = built
    return cl.execute(sql, params)  # type: ignore[attr-defined]


def _active_days() -> dict[str, set[date]]:
    out: dict[str, set[date]] = {}
    for c in scenario()[topics.COMMANDS.name]:
        day = datetime.fromtimestamp(c["received_ts"] / 1000, tz=UTC).date()
        out.setdefault(c["player_id"], set()).add(day)
    return out


def test_dau_wau_mau(built):
    rows = _q(built, "SELECT date, dau, wau, mau FROM wh_active_users "
                     "WHERE date IN %(d)s ORDER BY date", {"d": (D0, D1, D2, D7, D30)})
    assert rows == [
        (D0, 2, 2, 2),   # alice, bob
        (D1, 3, 3, 3),   # bob (00:15), alice, carol
        (D2, 1, 3, 3),   # carol; the week: alice, bob, carol
        (D7, 2, 4, 4),   # alice, dave; the week D1..D7 adds bob and carol
        (D30, 1, 1, 4),  # bob; the 30 days D1..D30: everyone
    ]
    days = _active_days()
    assert [r[1:] for r in rows] == [definitions.active_users(days, d) for d in (D0, D1, D2, D7, D30)]
    # Every one of the 31 days has exactly one row.
    assert _q(built, "SELECT count(), uniqExact(date) FROM wh_active_users") == [(31, 31)]


def test_retention_cohorts(built):
    rows = _q(built, "SELECT date, cohort_date, day_n, cohort_size, retained FROM wh_retention "
                     "WHERE day_n IN (1, 7, 30) ORDER BY date, cohort_date")
    assert rows == [
        (D1, D0, 1, 2, 2),    # alice and bob both back on day 1
        (D2, D1, 1, 1, 1),    # carol's 00:10 on D2
        (D7, D0, 7, 2, 1),    # alice
        (D8, D1, 7, 1, 0),    # carol does not come back
        (D8, D7, 1, 1, 0),    # nor does dave
        (D14, D7, 7, 1, 0),
        (D30, D0, 30, 2, 1),  # bob
    ]
    days = _active_days()
    for _, cohort, n, size, kept in rows:
        assert definitions.retained(days, cohort, n) == (size, kept)
    assert _q(built, "SELECT cohort_date, day_n, cohort_size, retained FROM wh_retention "
                     "WHERE date = %(d)s ORDER BY cohort_date", {"d": D30}) == [
        (D0, 30, 2, 1), (D1, 29, 1, 0), (D7, 23, 1, 0)]


def test_sessions(built):
    rows = _q(built, "SELECT date, sessions, players, avg_length_s, median_length_s, "
                     "max_length_s, commands FROM wh_sessions_daily "
                     "WHERE date IN %(d)s ORDER BY date", {"d": (D0, D1, D2, D7, D30)})
    assert rows == [
        (D0, 3, 2, 1400.0, 1500.0, 2400.0, 7),  # alice 2400 + 300, bob 1500 across midnight
        (D1, 3, 2, 800.0, 0.0, 2400.0, 5),      # alice 0, carol 0 and 2400 across midnight
        (D2, 0, 0, 0.0, 0.0, 0.0, 0),           # carol's D2 commands continue D1's session
        (D7, 2, 2, 600.0, 1200.0, 1200.0, 3),   # alice 0, dave 1200
        (D30, 1, 1, 0.0, 0.0, 0.0, 1),
    ]
    by_player = _q(built, "SELECT player_id, length_s, commands FROM wh_sessions "
                          "WHERE date = %(d)s ORDER BY player_id, start_ms", {"d": D0})
    assert by_player == [("alice", 2400.0, 3), ("alice", 300.0, 2), ("bob", 1500.0, 2)]
    alice = [c["received_ts"] for c in scenario()[topics.COMMANDS.name]
             if c["player_id"] == "alice" and c["received_ts"] < to_ms(t.at(D1))]
    assert [s.length_s for s in definitions.split_sessions(alice)] == [2400.0, 300.0]


def test_facts_world_growth_and_diversity(built):
    assert _q(built, "SELECT world_id, player_id, commands, seed_species FROM wh_player_hourly "
                     "WHERE date = %(d)s ORDER BY world_id, player_id, hour", {"d": D0}) == [
        ("w1", "alice", 2, 1), ("w1", "alice", 2, 0), ("w1", "bob", 1, 0),
        ("w2", "alice", 1, 0)]
    # Spark's exact percentile interpolates: p50 of 100..400 is 250.
    assert _q(built, "SELECT ticks, bodies_last, bodies_max, step_us_p50, step_us_p90, "
                     "step_us_max FROM wh_world_ticks_hourly") == [(4, 5, 5, 250.0, 370.0, 400)]
    growth = _q(built, "SELECT date, bodies, ticks, species_seen, species_alive, extinctions, "
                       "civilizations_founded, civilizations_alive, active_players "
                       "FROM wh_world_growth WHERE world_id = 'w1' AND date IN %(d)s "
                       "ORDER BY date", {"d": (D0, D1, D7)})
    assert growth == [(D0, 5, 4, 2, 2, 0, 1, 1, 2), (D1, 5, 0, 2, 1, 1, 0, 1, 3),
                      (D7, 5, 0, 2, 1, 0, 0, 0, 2)]
    div = _q(built, "SELECT date, species, population, round(shannon, 4), round(simpson, 4) "
                    "FROM wh_species_diversity WHERE world_id = 'w1' AND date IN %(d)s "
                    "ORDER BY date", {"d": (D0, D1)})
    assert div == [(D0, 2, 400, 0.5623, 0.375), (D1, 1, 300, 0.0, 0.0)]


def test_dimensions(built):
    assert _q(built, "SELECT player_id, first_date, last_date, active_days, commands, worlds "
                     "FROM wh_dim_players ORDER BY player_id") == [
        ("alice", D0, D7, 3, 7, 2), ("bob", D0, D30, 3, 3, 1), ("carol", D1, D2, 2, 4, 1),
        ("dave", D7, D7, 1, 2, 1)]
    assert _q(built, "SELECT species_id, origin, parent_species_id, extinct, last_population "
                     "FROM wh_dim_species ORDER BY species_id") == [
        (7, "SpeciesSeeded", None, 0, 300), (8, "SpeciesEmerged", 7, 1, 100)]
    assert _q(built, "SELECT civilization_id, name, founder_player_id, collapsed "
                     "FROM wh_dim_civilizations") == [(1, "Ur", "alice", 1)]


def _snapshot(built) -> dict[str, list[tuple]]:
    return {table: sorted(_q(built, f"SELECT * FROM {table}"), key=repr) for table in TABLES}


def test_rebuilding_a_day_changes_nothing_and_replaces_only_it(built):
    private, _ = built
    before = _snapshot(built)
    # A stray row in D1's partition: a rebuild of D1 must remove it, and touch no other day.
    _q(built, "INSERT INTO wh_active_users (date, dau, wau, mau) VALUES", [(D1, 99, 99, 99)])
    out = _build(private, D1)
    assert "warehouse 2026-10-02: built" in out
    assert _snapshot(built) == before


def test_analyst_guide_examples_return_the_documented_rows(built):
    examples = guide_examples()
    # Every SQL example of the guide is one of these (a block the pattern misses, say a
    # changed heading, fails here instead of going untested).
    assert len(examples) == GUIDE.read_text(encoding="utf-8").count("```sql") == 12
    for title, sql, expected in examples:
        got = [tuple(fmt(v) for v in row) for row in _q(built, sql)]
        assert got == expected, f"{title}:\n{sql}"


def test_kafka_source_builds_the_same_day(settings: Settings, stack: Stack, topic_factory):
    """--source kafka: the same events read from (private) topics instead of the lake."""
    routes = []
    for declared, events in scenario().items():
        actual = topic_factory(partitions=2)
        cs.produce(settings, actual, topics.get(declared).value, events)
        routes += ["--route", f"{actual}={declared}"]
    name = f"cosmic_whk_{uuid.uuid4().hex[:8]}"
    private = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": name})})
    admin = stores.clickhouse_client(settings)
    admin.execute(f"CREATE DATABASE {name}")
    cl = stores.clickhouse_client(private)
    try:
        _build(private, D0, D1, "--source", "kafka", *routes)
        assert cl.execute("SELECT date, dau, wau, mau FROM wh_active_users ORDER BY date") == [
            (D0, 2, 2, 2), (D1, 3, 3, 3)]
        assert cl.execute("SELECT date, sessions, avg_length_s FROM wh_sessions_daily "
                          "ORDER BY date") == [(D0, 3, 1400.0), (D1, 3, 800.0)]
        assert cl.execute("SELECT species, population FROM wh_species_diversity "
                          "WHERE date = %(d)s", {"d": D0}) == [(2, 400)]
    finally:
        cl.disconnect()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()
