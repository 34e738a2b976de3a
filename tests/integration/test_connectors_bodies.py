"""The bodies connector against real PostgreSQL with PostGIS: the table equals the state a
snapshot and its dead-reckoned deltas imply, "within r of p" is one indexed query, and
re-delivered or old records (a crash between write and commit) change nothing. Each test
writes into a private database."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from connectors import bodies
from connectors.errors import MigrationError
from cosmic import topics
from cosmic.settings import ConnectorSettings, Settings
from cosmic.stack import Stack
from schemas import columnar
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration

# The truth holds the very float32 values the deltas carry, so what is left is float64
# noise of the dead reckoning (coordinates below 10 AU); against the true positions the
# bound adds physics.delta_tolerance and float32 rounding (the connector's docstring).
F32_BOUND = 10 * float(np.finfo(np.float32).eps) * 2


@pytest.fixture
def pg_db(settings: Settings, stack: Stack) -> Iterator[Settings]:
    """Settings pointing at a fresh private database, dropped afterwards."""
    with cs.private_database(settings, "cosmic_b") as private:
        yield private.model_copy(update={"connectors": ConnectorSettings(
            batch_rows=3, batch_interval_s=0.3)})


class Truth:
    """What a world's bodies are, body by body, as a frontend applying the records has it."""

    def __init__(self) -> None:
        self.rows: dict[int, dict[str, Any]] = {}
        self.sim_time = 0.0

    def snapshot(self, world: str, tick: int, sim_time: float, ids: list[int],
                 rng: np.random.Generator) -> dict[str, Any]:
        n = len(ids)
        b = columnar.Bodies(ids=np.asarray(ids, np.int64), kinds=rng.integers(0, 4, n, np.uint8),
                            masses=rng.uniform(1e-6, 1.0, n), radii=rng.uniform(1e-4, 0.1, n),
                            positions=rng.uniform(-5, 5, (n, 3)),
                            velocities=rng.uniform(-0.5, 0.5, (n, 3)))
        owners = [f"p{i % 3}" for i in ids]
        self.rows = {int(i): {"kind": bodies.KINDS[b.kinds[k]], "owner": owners[k],
                              "mass": b.masses[k], "radius": b.radii[k],
                              "pos": b.positions[k].copy(), "vel": b.velocities[k].copy(),
                              "tick": tick, "t": sim_time} for k, i in enumerate(ids)}
        self.sim_time = sim_time
        return {"world_id": world, "tick": tick, "sim_time": sim_time,
                "params": {"G": 1.0, "softening": 0.01, "tick_rate_hz": 10.0, "dt": 0.1,
                           "merge_on_contact": True, "snapshot_every": 100},
                "command_partition": None, "last_command_offset": None, "body_count": n,
                "state_hash": "0" * 64, "backend": "cpu", **columnar.pack_bodies(b),
                "owners": owners, "world_owner": "p0", "recent_commands": [], "ts": cs.NOW}

    def delta(self, world: str, tick: int, sim_time: float, changed: list[int],
              removed: list[int], rng: np.random.Generator) -> dict[str, Any]:
        n = len(changed)
        b = columnar.Bodies(ids=np.asarray(changed, np.int64), kinds=np.full(n, 3, np.uint8),
                            masses=rng.uniform(1e-6, 1.0, n), radii=rng.uniform(1e-4, 0.1, n),
                            positions=rng.uniform(-5, 5, (n, 3)).astype(np.float32),
                            velocities=rng.uniform(-0.5, 0.5, (n, 3)).astype(np.float32))
        for k, i in enumerate(changed):
            old = self.rows.get(i, {"owner": None})
            self.rows[i] = {"kind": "ASTEROID", "owner": old["owner"], "mass": b.masses[k],
                            "radius": b.radii[k], "pos": b.positions[k].astype(np.float64),
                            "vel": b.velocities[k].astype(np.float64), "tick": tick,
                            "t": sim_time}
        for i in removed:
            self.rows.pop(i, None)
        self.sim_time = sim_time
        return {"world_id": world, "tick": tick, "sim_time": sim_time,
                **columnar.delta_fields(b, np.asarray(removed, np.int64)), "ts": cs.NOW}

    def now(self) -> dict[int, tuple[Any, ...]]:
        """Per body: kind, owner, mass, radius, position dead-reckoned to now, velocity, tick."""
        return {i: (r["kind"], r["owner"], r["mass"], r["radius"],
                    r["pos"] + r["vel"] * (self.sim_time - r["t"]), r["vel"], r["tick"])
                for i, r in self.rows.items()}


def _table(s: Settings, world: str) -> dict[int, tuple[Any, ...]]:
    with psycopg.connect(s.postgres.dsn) as c:
        rows = c.execute(
            "SELECT body_id, kind, owner, mass, radius, ST_X(position), ST_Y(position), "
            "ST_Z(position), vx, vy, vz, updated_tick FROM celestial_bodies "
            "WHERE world_id = %s", (world,)).fetchall()
    return {r[0]: (r[1], r[2], r[3], r[4], np.array(r[5:8]), np.array(r[8:11]), r[11])
            for r in rows}


def _assert_matches(table: dict[int, tuple[Any, ...]], truth: dict[int, tuple[Any, ...]]) -> None:
    assert sorted(table) == sorted(truth), (sorted(set(truth) - set(table)), sorted(set(table) - set(truth)))
    for i, want in truth.items():
        got = table[i]
        assert got[0:4] == want[0:4], f"body {i}"
        assert np.max(np.abs(got[4] - want[4])) <= F32_BOUND, f"body {i} position"
        assert np.allclose(got[5], want[5], rtol=0, atol=1e-12), f"body {i} velocity"
        assert got[6] == want[6], f"body {i} tick"


def _run(s: Settings, routes: dict[str, topics.Topic], group: str, offsets: int) -> None:
    """Run the connector until it has stored ``offsets`` records' positions."""
    bodies.migrate(s)  # so that connector_offsets is there to watch
    conn = bodies.build(s, routes, group_id=group)
    conn.start()

    def stored() -> bool:
        with psycopg.connect(s.postgres.dsn) as c:
            row = c.execute("SELECT coalesce(sum(next_offset), 0) FROM connector_offsets "
                            "WHERE connector = %s", (group,)).fetchone()
        return row is not None and int(row[0]) >= offsets

    try:
        cs.wait_for(stored, 60, f"{offsets} records stored", conn.failure)
    finally:
        conn.stop()


def test_snapshot_and_deltas_become_the_table(pg_db: Settings, topic_factory):
    rng = np.random.default_rng(17)
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_snap, t_delta = topic_factory(partitions=1), topic_factory(partitions=1)
    routes = {t_snap: topics.STATE_SNAPSHOTS, t_delta: topics.STATE_DELTAS}
    truth = Truth()
    snap = truth.snapshot(world, 10, 1.0, list(range(400)), rng)
    deltas = [truth.delta(world, 11, 1.1, [*range(10), 1000], list(range(390, 400)), rng),
              truth.delta(world, 12, 1.2, [0, 1001], [5], rng)]
    cs.produce(pg_db, t_snap, "WorldSnapshot", [snap])
    cs.produce(pg_db, t_delta, "StateDelta", deltas)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _run(pg_db, {t_snap: topics.STATE_SNAPSHOTS}, group, 1)  # the snapshot first
    _run(pg_db, routes, group, 3)
    table = _table(pg_db, world)
    _assert_matches(table, truth.now())
    assert 5 not in table and 399 not in table, "removed bodies are gone"
    assert table[1000][1] is None, "a body a delta brought has no owner until a snapshot"
    assert table[7][1] == "p1", "a body that persists keeps its snapshot owner"

    # Within r of p, one indexed query: exactly the bodies a brute force finds.
    p, r = np.array([1.0, -0.5, 2.0]), 2.5
    want = sorted(i for i, v in truth.now().items() if np.linalg.norm(v[4] - p) <= r)
    query = ("SELECT body_id FROM celestial_bodies WHERE world_id = %s AND "
             "ST_3DDWithin(position, ST_MakePoint(%s, %s, %s), %s) ORDER BY body_id")
    with psycopg.connect(pg_db.postgres.dsn) as c:
        got = [row[0] for row in c.execute(query, (world, *p, r))]
        c.execute("ANALYZE celestial_bodies")
        c.execute("SET enable_seqscan = off")
        plan = "\n".join(row[0] for row in c.execute("EXPLAIN " + query, (world, *p, r)))
        index = c.execute("SELECT indexdef FROM pg_indexes "
                          "WHERE indexname = 'celestial_bodies_position_gist'").fetchone()
    assert 0 < len(want) < len(truth.rows) and got == want
    assert index is not None and "gist" in index[0]
    assert "celestial_bodies_position_gist" in plan, plan

    # A new snapshot replaces the world's rows and brings owners.
    snap2 = truth.snapshot(world, 20, 2.0, [0, 1, 1000, 2000], rng)
    cs.produce(pg_db, t_snap, "WorldSnapshot", [snap2])
    _run(pg_db, routes, group, 4)
    _assert_matches(_table(pg_db, world), truth.now())


def test_redelivered_and_old_records_change_nothing(pg_db: Settings, topic_factory,
                                                   tmp_path: Path):
    """A SIGKILL between write and commit, then the same records and old ticks again."""
    rng = np.random.default_rng(5)
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_snap, t_delta, t_dlq = (topic_factory(partitions=1) for _ in range(3))
    truth = Truth()
    snap = truth.snapshot(world, 10, 1.0, list(range(50)), rng)
    deltas = [truth.delta(world, 10 + k, 1.0 + 0.1 * k, [k, 100 + k], [20 + k], rng)
              for k in range(1, 9)]
    cs.produce(pg_db, t_snap, "WorldSnapshot", [snap])
    cs.produce(pg_db, t_delta, "StateDelta", deltas)
    bodies.migrate(pg_db)
    group = f"g-{uuid.uuid4().hex[:8]}"
    args = ("bodies", "--route", f"{t_snap}={topics.STATE_SNAPSHOTS.name}",
            "--route", f"{t_delta}={topics.STATE_DELTAS.name}", "--group-id", group,
            "--dlq-topic", t_dlq, "--instance-id", f"i-{uuid.uuid4().hex[:8]}")
    env = {"COSMIC_CONNECTORS__BATCH_ROWS": "2", "COSMIC_CONNECTORS__BATCH_INTERVAL_S": "0.3"}
    log = tmp_path / "connector.log"
    first = cs.start_cli(pg_db, log, *args, **env, COSMIC_CONNECTORS__CRASH_AFTER_WRITE="1")
    assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()

    def stored() -> int:
        with psycopg.connect(pg_db.postgres.dsn) as c:
            row = c.execute("SELECT coalesce(sum(next_offset), 0) FROM connector_offsets "
                            "WHERE connector = %s", (group,)).fetchone()
        return 0 if row is None else int(row[0])

    assert 0 < stored() < 1 + len(deltas), "the crash came after a first batch, before the rest"
    second = cs.start_cli(pg_db, log, *args, **env)

    def caught_up() -> bool:  # every record's position stored (the snapshot may come last)
        return stored() == 1 + len(deltas)

    try:
        cs.wait_for(caught_up, 60, "the restarted connector to catch up",
                    lambda: AssertionError(log.read_text()) if second.poll() is not None else None)
    finally:
        assert cs.stop_cli(second) == 0, log.read_text()
    after = _table(pg_db, world)
    _assert_matches(after, truth.now())

    # Everything again, under a new group (nothing stored: every record re-delivered), and
    # old ticks produced anew: no row moves back.
    cs.produce(pg_db, t_snap, "WorldSnapshot", [snap])
    cs.produce(pg_db, t_delta, "StateDelta", deltas[:3])
    _run(pg_db, {t_snap: topics.STATE_SNAPSHOTS, t_delta: topics.STATE_DELTAS},
         f"g-{uuid.uuid4().hex[:8]}", 2 + 11)
    again = _table(pg_db, world)
    assert sorted(again) == sorted(after)
    for i, row in after.items():
        assert again[i][0:4] == row[0:4] and again[i][6] == row[6]
        assert np.array_equal(again[i][4], row[4]) and np.array_equal(again[i][5], row[5])


def test_missing_postgis_is_a_clear_error(pg_db: Settings):
    """Where the server has no PostGIS the migration says what to install, never skips."""
    with psycopg.connect(pg_db.postgres.dsn, autocommit=True) as c:
        available = c.execute("SELECT 1 FROM pg_available_extensions "
                              "WHERE name = 'postgis'").fetchone()
        if available:
            bodies.migrate(pg_db)
            assert c.execute("SELECT extversion FROM pg_extension "
                             "WHERE extname = 'postgis'").fetchone() is not None
            return
    with pytest.raises(MigrationError, match="postgresql-15-postgis-3"):
        bodies.migrate(pg_db)


def test_snapshot_read_after_later_deltas_yields_to_them(pg_db: Settings, topic_factory):
    """The two topics are not ordered between them: deltas of later ticks read before
    their snapshot keep what they set and removed; the snapshot brings the rest and the
    owners."""
    rng = np.random.default_rng(11)
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_snap, t_delta = topic_factory(partitions=1), topic_factory(partitions=1)
    truth = Truth()
    snap = truth.snapshot(world, 10, 1.0, list(range(30)), rng)
    deltas = [truth.delta(world, 11, 1.1, [3, 500], [4], rng),
              truth.delta(world, 12, 1.2, [3], [6], rng)]
    cs.produce(pg_db, t_snap, "WorldSnapshot", [snap])
    cs.produce(pg_db, t_delta, "StateDelta", deltas)
    group = f"g-{uuid.uuid4().hex[:8]}"
    _run(pg_db, {t_delta: topics.STATE_DELTAS}, group, 2)  # the deltas first
    assert sorted(_table(pg_db, world)) == [3, 500]
    _run(pg_db, {t_snap: topics.STATE_SNAPSHOTS, t_delta: topics.STATE_DELTAS}, group, 3)
    table = _table(pg_db, world)
    _assert_matches(table, truth.now())
    assert 4 not in table and 6 not in table
    assert table[3][1] == "p0" and table[3][6] == 12, "the delta's state, the snapshot's owner"

    def removals() -> list[tuple[int, int]]:
        with psycopg.connect(pg_db.postgres.dsn) as c:
            return c.execute("SELECT body_id, tick FROM celestial_removals "
                             "ORDER BY body_id").fetchall()

    assert removals() == [(4, 11), (6, 12)], "kept while a snapshot before them could come"
    cs.produce(pg_db, t_snap, "WorldSnapshot", [truth.snapshot(world, 13, 1.3, [3, 7], rng)])
    _run(pg_db, {t_snap: topics.STATE_SNAPSHOTS, t_delta: topics.STATE_DELTAS}, group, 4)
    _assert_matches(_table(pg_db, world), truth.now())
    assert removals() == [], "pruned once a snapshot at or past their tick is applied"
