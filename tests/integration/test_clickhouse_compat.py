"""Every ClickHouse statement the platform runs, on the stack's ClickHouse and on a current one.

The local stack's ClickHouse is Debian's (18.16, from 2018); the compose file and
real deployments run current releases. So each engine here gets the same work,
through the production code paths, with the same input rows:

- the migrations (every DDL statement of ``infra/sql/clickhouse/``, read from the files);
- the ClickHouse sink's inserts for every event family it carries, and its resume query;
- a 31-day warehouse build (``jobs.spark.warehouse.write_day``: the fact inserts, the
  partition drops, every mart statement of ``jobs.spark.marts``), fed the facts of the
  analyst guide's data set;
- every example query of ``runbooks/analyst-guide.md``.

The engines are the stack's server (clickhouse-driver) and ``chdb``, a current
ClickHouse embedded in-process. Each must give the expected rows (the guide's
documented results; the connector rows worked out from the input below), both
must create the same columns with the same types and hold the same rows, and
every statement enumerated from its source must have run on both.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from connectors import clickhouse, stores
from connectors.base import Batch, Item
from connectors.records import FLATTENERS
from cosmic import topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from cosmic.timeutil import to_ms
from jobs.spark import marts
from jobs.spark.warehouse import FACTS, TABLES, write_day
from schemas.catalog import full_name
from tests.integration import warehouse_scenario as ws
from tests.integration.chdb_engine import ChdbClient, Recording

pytestmark = pytest.mark.integration

T0 = datetime(2026, 10, 1, 12, 0, 0, tzinfo=UTC)
T0_MS = to_ms(T0)
WORLD = "w-compat"


def _item(topic: topics.Topic, partition: int, offset: int, value: dict[str, Any]) -> Item:
    return Item(topic.name, topic, partition, offset, T0_MS, None, value)


def connector_batch() -> Batch:
    """One batch of every family the ClickHouse sink carries, as the serde decodes them
    (unions as (record name, body), timestamps as aware datetimes)."""
    vec = {"x": 1.5, "y": 2.0, "z": -3.0}
    cmds = [
        ("SpawnBody", {"body_id": 11, "kind": "PLANET", "mass": 5.0, "radius": 0.5,
                       "position": vec, "velocity": {"x": 0.0, "y": 0.1, "z": 0.0}}),
        ("ApplyImpulse", {"body_id": 11, "dv": {"x": 0.5, "y": 0.0, "z": 0.0}}),
        ("SeedSpecies", {"planet_id": 11, "species_id": 3, "traits": {},
                         "initial_population": 50}),
        ("FoundCivilization", {"planet_id": 11, "civilization_id": 9, "name": "Ur"}),
    ]
    items = [_item(topics.COMMANDS, i % 2, 100 + i, {
        "command_id": uuid.UUID(int=i + 1), "player_id": f"p{i % 2}", "world_id": WORLD,
        "client_ts": T0, "received_ts": T0, "command": (full_name(name), body)})
        for i, (name, body) in enumerate(cmds)]
    items += [_item(topics.PHYSICS_TICKS, 0, 200 + i, {
        "world_id": WORLD, "tick": i, "sim_time": i * 0.01, "command_partition": None,
        "first_command_offset": None, "last_command_offset": None, "n_applied": i,
        "n_rejected": 0, "body_count": 4, "total_energy": -2.5, "state_hash": f"{i:016x}",
        "step_duration_us": 100 * (i + 1), "ts": T0}) for i in range(5)]
    eco = [("PopulationChanged", {"species_id": 3, "previous": 50, "current": 80}),
           ("SpeciesExtinct", {"species_id": 3, "cause": "cold"}),
           ("PlanetDestroyed", {"cause": "collision", "merged_into": 7})]
    items += [_item(topics.ECOSYSTEM_EVENTS, 1, 300 + i, {
        "event_id": uuid.UUID(int=300 + i), "world_id": WORLD, "planet_id": 11, "tick": i,
        "ts": T0, "event": (full_name(name), body)}) for i, (name, body) in enumerate(eco)]
    civ = [("CivilizationFounded", {"name": "Ur", "founder_player_id": "p1", "species_id": 3}),
           ("TechAdvanced", {"tech": "fire", "level": 2}),
           ("ResourceUsed", {"resource": "ore", "amount": 1.5, "remaining": 98.5})]
    items += [_item(topics.CIVILIZATION_EVENTS, 0, 400 + i, {
        "event_id": uuid.UUID(int=400 + i), "world_id": WORLD, "planet_id": 11,
        "civilization_id": 9, "tick": i, "ts": T0, "event": (full_name(name), body)})
        for i, (name, body) in enumerate(civ)]
    items += [_item(topics.AUDIT, 0, 500 + i, {
        "ts": T0, "gateway_id": "gw1", "seq": i, "action": "submit", "face": "grpc",
        "outcome": "DENIED" if i == 1 else "ADMITTED", "player_id": "p0", "role": "player",
        "token_id": None, "world_id": WORLD, "command_id": uuid.UUID(int=i + 1),
        "command_type": "SpawnBody", "peer": "127.0.0.1", "reason": "rate" if i == 1 else "",
        "command_offset": None if i == 1 else 100 + i, "prev_hash": f"h{i}",
        "hash": f"h{i + 1}"}) for i in range(3)]
    # The detector delivers at least once: FLOOD twice (one flag id), BURST once.
    items += [_item(topics.SECURITY_FLAGS, 0, 600 + i, {
        "flag_id": f"mallory-{kind}", "player_id": "mallory", "world_id": WORLD, "kind": kind,
        "score": 2.5, "window_start": T0, "window_end": T0 + timedelta(seconds=10),
        "evidence": '{"commands": 611}', "ts": T0}) for i, kind in
        enumerate(("FLOOD", "BURST", "FLOOD"))]
    batch = Batch(items=items)
    for i in items:
        batch.positions[(i.topic, i.partition)] = i.offset + 1
    return batch


# What the batch above must read back as, on every engine (worked out from it by hand).
CONNECTOR_ROWS: dict[str, tuple[str, list[tuple[Any, ...]]]] = {
    "commands": (
        "SELECT command_type, player_id, body_id, kind, x, y, z, vx, initial_population, "
        "toString(ts), ts_ms, client_ms FROM commands ORDER BY _offset",
        [("SpawnBody", "p0", 11, "PLANET", 1.5, 2.0, -3.0, 0.0, None, "2026-10-01 12:00:00",
          T0_MS, T0_MS),
         ("ApplyImpulse", "p1", 11, None, None, None, None, 0.5, None, "2026-10-01 12:00:00",
          T0_MS, T0_MS),
         ("SeedSpecies", "p0", None, None, None, None, None, None, 50, "2026-10-01 12:00:00",
          T0_MS, T0_MS),
         ("FoundCivilization", "p1", None, None, None, None, None, None, None,
          "2026-10-01 12:00:00", T0_MS, T0_MS)]),
    "physics_ticks": (
        "SELECT count(), min(tick), max(tick), sum(n_applied), max(step_duration_us), "
        "any(command_partition), toString(max(ts)) FROM physics_ticks",
        [(5, 0, 4, 10, 500, None, "2026-10-01 12:00:00")]),
    "ecosystem_events": (
        "SELECT event_type, species_id, population, previous_population, cause "
        "FROM ecosystem_events ORDER BY _offset",
        [("PopulationChanged", 3, 80, 50, None), ("SpeciesExtinct", 3, None, None, "cold"),
         ("PlanetDestroyed", None, None, None, "collision")]),
    "civilization_events": (
        "SELECT event_type, name, tech, level, resource, amount, remaining "
        "FROM civilization_events ORDER BY _offset",
        [("CivilizationFounded", "Ur", None, None, None, None, None),
         ("TechAdvanced", None, "fire", 2, None, None, None),
         ("ResourceUsed", None, None, None, "ore", 1.5, 98.5)]),
    "audit_log": (
        "SELECT seq, outcome, reason, command_offset, token_id, toString(command_id) "
        "FROM audit_log ORDER BY seq",
        [(0, "ADMITTED", "", 100, None, str(uuid.UUID(int=1))),
         (1, "DENIED", "rate", None, None, str(uuid.UUID(int=2))),
         (2, "ADMITTED", "", 102, None, str(uuid.UUID(int=3)))]),
    "security_flags": (
        "SELECT kind, count(), toString(min(window_start)), toString(max(window_end)) "
        "FROM security_flags FINAL GROUP BY kind ORDER BY kind",
        [("BURST", 1, "2026-10-01 12:00:00", "2026-10-01 12:00:10"),
         ("FLOOD", 1, "2026-10-01 12:00:00", "2026-10-01 12:00:10")]),
}


@dataclass
class Run:
    """What one engine did with the work: its version, every statement, what it returned."""

    name: str
    client: Recording
    version: str = ""
    resumed: dict[tuple[str, int], int] = field(default_factory=dict)
    built: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> rows per table
    answers: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    work: list[str] = field(default_factory=list)  # the statements of the work, in order

    def q(self, sql: str) -> list[tuple[Any, ...]]:
        return list(self.client.execute(sql))


def run_everything(run: Run, settings: Settings, events: dict[str, Any]) -> None:
    """The whole of the platform's ClickHouse work, through the production code."""
    cl: Any = run.client
    sink = clickhouse.ClickHouseSink(settings, {t.name: t for t in clickhouse.TOPICS},
                                     client=cl)
    run.version = sink.open().split(":")[0]  # applies every migration
    batch = connector_batch()
    sink.write(batch)
    run.resumed = sink.resume_positions(list(batch.positions))
    sink.close()
    for day in ws.DAYS:
        run.built[day.isoformat()] = write_day(cl, day, ws.facts(events, day))
    for title, sql, _ in ws.guide_examples():
        run.answers[title] = [tuple(ws.fmt(v) for v in row) for row in cl.execute(sql)]
    for table, (sql, _) in CONNECTOR_ROWS.items():
        run.answers[table] = list(cl.execute(sql))
    run.work = list(run.client.statements)


@pytest.fixture(scope="module")
def runs(settings: Settings, stack: Stack, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[dict[str, Run]]:
    name = f"cosmic_compat_{uuid.uuid4().hex[:8]}"
    private = settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": name})})
    admin = stores.clickhouse_client(settings)
    admin.execute(f"CREATE DATABASE {name}")
    embedded = ChdbClient(Path(tmp_path_factory.mktemp("chdb")), name)
    served = stores.clickhouse_client(private)
    out = {"stack": Run("stack", Recording(served)), "chdb": Run("chdb", Recording(embedded))}
    try:
        events = ws.scenario()  # drawn once: its event ids are random
        for run in out.values():
            run_everything(run, private, events)
        yield out
    finally:
        served.disconnect()
        embedded.close()
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


ENGINES = pytest.mark.parametrize("engine", ["stack", "chdb"])


def test_two_different_engines_one_of_them_current(runs: dict[str, Run]):
    stack, current = runs["stack"].version, runs["chdb"].version
    assert stack.startswith("ClickHouse ") and current.startswith("ClickHouse ")
    assert stack != current
    assert int(current.split()[1].split(".")[0]) >= 24, current


def _source_statements() -> dict[str, list[str]]:
    """Every statement, enumerated from where it lives (a new one is covered by itself)."""
    day = ws.DAYS[0]
    return {
        "ddl": [clickhouse.MIGRATIONS_TABLE,
                *(s for _, statements in clickhouse.migrations() for s in statements)],
        "connector": [*(clickhouse.insert_statement(t.name) for t in clickhouse.TOPICS),
                      *{clickhouse.resume_statement(FLATTENERS[t.name][0])
                        for t in clickhouse.TOPICS}],
        "warehouse": [*marts.MARTS.values(),
                      *(f"ALTER TABLE {t} DROP PARTITION {day:%Y%m%d}" for t in TABLES),
                      *(f"SELECT count() FROM {t} WHERE date = %(day)s" for t in marts.MARTS)],
        "guide": [sql for _, sql, _ in ws.guide_examples()],
    }


@ENGINES
def test_every_statement_ran_on_the_engine(runs: dict[str, Run], engine: str):
    ran = runs[engine].work
    sources = _source_statements()
    for source, statements in sources.items():
        missing = [s for s in statements if s not in ran]
        assert not missing, f"{source} statements not run on {engine}: {missing}"
    # Fact rows come in from Spark (here: plain rows) with columns named by the frame:
    # the rows here fill every column, so a column added to a fact table is noticed.
    for table in FACTS:
        inserts = {s for s in ran if s.startswith(f"INSERT INTO {table} (")}
        assert inserts, table
        columns = {c for c, _ in _describe(runs[engine])[table]}
        for s in inserts:
            assert set(s.split("(", 1)[1].split(")")[0].split(", ")) == columns, s
    guide = ws.GUIDE.read_text(encoding="utf-8")
    assert len(sources["guide"]) == guide.count("```sql") > 0
    assert len(sources["ddl"]) > len(clickhouse.migrations())
    # The same work on both engines, statement for statement.
    assert ran == runs["stack" if engine == "chdb" else "chdb"].work


@ENGINES
def test_analyst_guide_examples_return_the_documented_rows(runs: dict[str, Run], engine: str):
    for title, sql, expected in ws.guide_examples():
        assert runs[engine].answers[title] == expected, f"{engine}: {title}:\n{sql}"


@ENGINES
def test_connector_rows_read_back_as_written(runs: dict[str, Run], engine: str):
    run = runs[engine]
    for table, (sql, expected) in CONNECTOR_ROWS.items():
        assert run.answers[table] == expected, f"{engine}: {table}:\n{sql}"
    batch = connector_batch()
    assert run.resumed == batch.positions  # max(_offset) + 1 per (topic, partition)


@ENGINES
def test_warehouse_build_rows_per_day(runs: dict[str, Run], engine: str):
    built = runs[engine].built
    assert len(built) == 31
    # One mart row per day; sessions as worked out in test_warehouse (D0 3, D1 3, D7 2, D30 1).
    assert {d: r["wh_active_users"] for d, r in built.items()} == dict.fromkeys(built, 1)
    assert {d: r["wh_sessions"] for d, r in built.items() if r["wh_sessions"]} == {
        "2026-10-01": 3, "2026-10-02": 3, "2026-10-08": 2, "2026-10-31": 1}
    # A civilization without a tech advance has 0 techs, not NULL, on every engine.
    assert runs[engine].q("SELECT name, techs, max_tech_level, resources_used "
                          "FROM wh_dim_civilizations") == [("Ur", 0, None, None)]


def _describe(run: Run) -> dict[str, list[tuple[str, str]]]:
    return {t: [(c[0], c[1]) for c in run.q(f"DESCRIBE TABLE {t}")]
            for (t,) in run.q("SHOW TABLES")}


def test_both_engines_create_the_same_columns(runs: dict[str, Run]):
    stack, current = _describe(runs["stack"]), _describe(runs["chdb"])
    assert set(stack) >= {FLATTENERS[t.name][0] for t in clickhouse.TOPICS} | set(TABLES)
    assert stack == current


def test_both_engines_hold_the_same_rows(runs: dict[str, Run]):
    tables = runs["stack"].q("SELECT name, engine FROM system.tables "
                             "WHERE database = currentDatabase() ORDER BY name")
    for table, engine in tables:
        if table == "schema_migrations":  # applied_at: when each engine ran it
            continue
        # A replacing table's duplicates go whenever a background merge runs: compare what
        # FINAL (the documented way to query it) shows.
        final = " FINAL" if engine.startswith("Replacing") else ""
        rows = {name: sorted(tuple(ws.fmt(v) for v in r)
                             for r in run.q(f"SELECT * FROM {table}{final}"))
                for name, run in runs.items()}
        assert rows["stack"] == rows["chdb"], table
        assert rows["stack"], f"{table} is empty: the comparison would prove nothing"
