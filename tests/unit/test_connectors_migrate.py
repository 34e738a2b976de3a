"""Migration files: naming, variant selection, statement splitting; and row flattening."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import orjson
import pytest

from connectors.errors import MigrationError
from connectors.metrics import ConnectorMetrics
from connectors.migrate import (
    SQL_ROOT,
    choose_variant,
    discover,
    for_variant,
    parse_name,
    split_statements,
)
from connectors.records import COMMAND_COLUMNS, command_row, ecosystem_row
from connectors.timescale import day_range
from cosmic.timeutil import to_ms


def test_variant_follows_the_extension_and_then_sticks():
    assert choose_variant(None, extension_available=True) == "timescale"
    assert choose_variant(None, extension_available=False) == "native"
    assert choose_variant("native", extension_available=True) == "native"
    assert choose_variant(None, True, prefer="native") == "native"
    with pytest.raises(MigrationError):
        choose_variant(None, False, prefer="timescale")
    with pytest.raises(MigrationError):
        choose_variant("timescale", True, prefer="native")
    with pytest.raises(MigrationError):
        choose_variant("bogus", True)


def test_shipped_timescale_migrations_have_both_variants():
    found = discover(SQL_ROOT / "timescale")
    native = [m.path.name for m in for_variant(found, "native")]
    timescale = [m.path.name for m in for_variant(found, "timescale")]
    assert native[0] == timescale[0] == "001_connector_offsets.sql"
    assert all(".timescale." not in n for n in native)
    assert all(".native." not in n for n in timescale)
    versions = [m.version for m in for_variant(found, "native")]
    assert versions[:3] == [1, 2, 3] and versions == sorted({m.version for m in found})
    assert "date_bin" in (SQL_ROOT / "timescale" / "003_aggregates.native.sql").read_text()
    agg = next(m for m in for_variant(found, "timescale") if m.version == 3)
    assert agg.no_transaction


def test_clickhouse_ddl_stays_within_clickhouse_18():
    code = [line for m in discover(SQL_ROOT / "clickhouse") for line in m.text.splitlines()
            if not line.strip().startswith("--")]
    text = "\n".join(code).upper()
    for banned in ("DATETIME64", "LOWCARDINALITY", "TTL", "CODEC", "MAP(", "JSON", "WITH "):
        assert banned not in text, banned
    assert "PARTITION BY TOYYYYMM(TS)" in text


def test_file_names_and_version_conflicts(tmp_path: Path):
    with pytest.raises(MigrationError):
        parse_name(tmp_path / "1_bad.sql")
    for name in ("001_a.sql", "002_b.native.sql", "002_b.timescale.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    found = discover(tmp_path)
    assert [m.path.name for m in for_variant(found, "native")] == ["001_a.sql", "002_b.native.sql"]
    with pytest.raises(MigrationError):
        for_variant(found, None)
    (tmp_path / "002_b.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="both"):
        for_variant(discover(tmp_path), "native")


def test_statements_split_outside_quotes_dollar_quotes_and_comments():
    script = """
    -- a comment; with a semicolon
    CREATE TABLE a (x text DEFAULT 'a;b');
    CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $$
    BEGIN RETURN 1; END
    $$;
    SELECT 'it''s; fine';
    -- trailing comment only
    """
    parts = split_statements(script)
    assert len(parts) == 3
    assert parts[0].endswith("DEFAULT 'a;b')")
    assert "RETURN 1; END" in parts[1]
    assert parts[2] == "SELECT 'it''s; fine'"


def test_day_range_covers_gaps():
    days = {date(2026, 1, 30), date(2026, 2, 2)}
    assert day_range(days) == [date(2026, 1, 30), date(2026, 1, 31), date(2026, 2, 1),
                               date(2026, 2, 2)]
    assert day_range(set()) == []


def test_rows_flatten_unions_into_typed_columns():
    ts = datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC)
    assert to_ms(ts) == 1767225600123
    row = dict(zip(COMMAND_COLUMNS, command_row({
        "command_id": "c1", "player_id": "p", "world_id": "w", "client_ts": ts,
        "received_ts": ts,
        "command": ("io.cosmicgarden.ApplyImpulse",
                    {"body_id": 4, "dv": {"x": 1.0, "y": 2.0, "z": 3.0}})}), strict=True))
    assert row["command_type"] == "ApplyImpulse" and row["body_id"] == 4
    assert (row["vx"], row["vy"], row["vz"]) == (1.0, 2.0, 3.0) and row["x"] is None
    assert orjson.loads(row["detail"])["dv"]["z"] == 3.0
    eco = ecosystem_row({"event_id": "e", "world_id": "w", "planet_id": 1, "tick": 2, "ts": ts,
                         "event": ("io.cosmicgarden.PopulationChanged",
                                   {"species_id": 5, "previous": 3, "current": 8})})
    assert eco[6:10] == ("PopulationChanged", 5, 8, 3)


def test_prometheus_text():
    m = ConnectorMetrics("timescale", rows_written=7, retries=2)
    m.lag[("cosmic.physics.ticks.v1", 1)] = 5
    text = m.prometheus_text()
    assert 'cosmic_connector_rows_written_total{connector="timescale"} 7.0' in text
    assert "# TYPE cosmic_connector_retries_total counter" in text
    assert ('cosmic_connector_lag{connector="timescale",partition="1",'
            'topic="cosmic.physics.ticks.v1"} 5.0') in text
    assert m.total_lag == 5


def test_tick_columns_match_tick_rows():
    from connectors.records import TICK_COLUMNS, columns_of, tick_columns, tick_row

    ts = datetime(2026, 1, 1, 0, 0, 0, 5000, tzinfo=UTC)
    values = [{"world_id": f"w{i}", "tick": i, "sim_time": 0.5 * i, "command_partition": None,
               "first_command_offset": None, "last_command_offset": i or None,
               "n_applied": 1, "n_rejected": 0, "body_count": 3, "total_energy": -1.0,
               "state_hash": "ab", "step_duration_us": 7, "ts": ts} for i in range(3)]
    assert tick_columns(values) == columns_of(tick_row, values)
    assert len(tick_columns(values)) == len(TICK_COLUMNS)
    assert columns_of(tick_row, []) == []
