"""ClickHouse connector against a real ClickHouse: exactly N rows, crash between insert and
commit, and a ClickHouse outage (a private server, never the shared one)."""

from __future__ import annotations

import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors import clickhouse, stores
from cosmic import topics
from cosmic.settings import ClickHouseSettings, ConnectorSettings, Settings
from cosmic.stack import Stack
from cosmic.stack.clickhouse import ClickHouseService
from tests.integration import connectors_support as cs

pytestmark = pytest.mark.integration


@pytest.fixture
def ch_db(settings: Settings, stack: Stack) -> Iterator[Settings]:
    """Settings pointing at a fresh private ClickHouse database, dropped afterwards."""
    name = f"cosmic_t_{uuid.uuid4().hex[:10]}"
    admin = stores.clickhouse_client(settings)
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield _small(settings, clickhouse=settings.clickhouse.model_copy(
            update={"database": name}))
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name}")
        admin.disconnect()


def _small(settings: Settings, **changes: Any) -> Settings:
    return settings.model_copy(update={
        "connectors": ConnectorSettings(batch_rows=40, batch_interval_s=0.3, backoff_max_s=1.0),
        **changes})


def _rows(s: Settings, query: str, **params: Any) -> list[tuple[Any, ...]]:
    cl = stores.clickhouse_client(s)
    try:
        return list(cl.execute(query, params))
    finally:
        cl.disconnect()


def _count(s: Settings, table: str, topic: str) -> int:
    try:
        return int(_rows(s, f"SELECT count() FROM {table} WHERE _topic = %(t)s", t=topic)[0][0])
    except Exception:  # noqa: BLE001 - a server that is down counts as "not yet"
        return -1


def test_exactly_n_rows_with_commands_flattened(ch_db: Settings, topic_factory):
    s = ch_db
    world = f"w-{uuid.uuid4().hex[:8]}"
    t_cmd, t_tick, t_eco, t_civ, t_dlq = (topic_factory() for _ in range(5))
    cs.produce(s, t_cmd, "PlayerCommand", [cs.command(world, i) for i in range(30)], garbage=1)
    cs.produce(s, t_tick, "PhysicsTick", [cs.tick(world, i) for i in range(50)])
    cs.produce(s, t_eco, "EcosystemEvent", [cs.ecosystem(world, i) for i in range(9)])
    cs.produce(s, t_civ, "CivilizationEvent", [cs.civilization(world, i) for i in range(6)])
    routes = {t_cmd: topics.COMMANDS, t_tick: topics.PHYSICS_TICKS,
              t_eco: topics.ECOSYSTEM_EVENTS, t_civ: topics.CIVILIZATION_EVENTS}
    conn = clickhouse.build(s, routes, group_id=f"g-{uuid.uuid4().hex[:8]}",
                            dlq_topic=topics.Topic(t_dlq, key="k", value="v", doc="test"))
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.rows_written >= 95, 60, "all rows", conn.failure)
    finally:
        conn.stop()
    assert _count(s, "commands", t_cmd) == 30
    assert _count(s, "physics_ticks", t_tick) == 50
    assert _count(s, "ecosystem_events", t_eco) == 9
    assert _count(s, "civilization_events", t_civ) == 6
    assert conn.metrics.dead_letters == 1
    by_type = dict(_rows(s, "SELECT command_type, count() FROM commands WHERE _topic = %(t)s "
                            "GROUP BY command_type", t=t_cmd))
    assert by_type == {"SpawnBody": 10, "ApplyImpulse": 10, "FoundCivilization": 10}
    spawn = _rows(s, "SELECT body_id, kind, x, vx, toString(ts), ts_ms FROM commands "
                     "WHERE _topic = %(t)s AND command_type = 'SpawnBody' AND body_id = 3", t=t_cmd)
    assert spawn == [(3, "PLANET", 3.0, 3.0, f"{cs.NOW:%Y-%m-%d %H:%M:%S}",
                      int(cs.NOW.timestamp() * 1000))]
    ticks = _rows(s, "SELECT min(tick), max(tick), uniqExact(tick) FROM physics_ticks "
                     "WHERE _topic = %(t)s", t=t_tick)
    assert ticks == [(0, 49, 50)]


def test_security_flags_land_once_per_finding(ch_db: Settings, topic_factory):
    """The detector writes at least once: a finding delivered twice is one row under FINAL."""
    s = ch_db
    t_flags = topic_factory()
    ts = int(cs.NOW.timestamp() * 1000)

    def flag(player: str, kind: str) -> dict[str, Any]:
        return {"flag_id": f"{player}-{kind}", "player_id": player, "world_id": "w",
                "kind": kind, "score": 2.5, "window_start": ts, "window_end": ts + 10_000,
                "evidence": '{"commands": 611}', "ts": ts}

    records = [flag("mallory", "FLOOD"), flag("mallory", "BURST"), flag("mallory", "FLOOD")]
    cs.produce(s, t_flags, "SecurityFlag", records)
    conn = clickhouse.build(s, {t_flags: topics.SECURITY_FLAGS}, group_id=f"g-{uuid.uuid4().hex[:8]}")
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.rows_written >= 3, 60, "all flags", conn.failure)
    finally:
        conn.stop()
    assert _count(s, "security_flags", t_flags) == 3
    assert _rows(s, "SELECT kind, count() FROM security_flags FINAL WHERE _topic = %(t)s "
                    "GROUP BY kind ORDER BY kind", t=t_flags) == [("BURST", 1), ("FLOOD", 1)]
    assert _rows(s, "SELECT evidence, toString(window_start) FROM security_flags "
                    "WHERE _topic = %(t)s LIMIT 1", t=t_flags) == [
        ('{"commands": 611}', f"{cs.NOW:%Y-%m-%d %H:%M:%S}")]


def test_sigkill_between_insert_and_commit(ch_db: Settings, topic_factory, tmp_path: Path):
    s = ch_db
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic, t_dlq = topic_factory(), topic_factory()
    n = 150
    cs.produce(s, topic, "PhysicsTick", [cs.tick(world, i) for i in range(n)])
    args = ("clickhouse", "--route", f"{topic}={topics.PHYSICS_TICKS.name}",
            "--group-id", f"g-{uuid.uuid4().hex[:8]}", "--dlq-topic", t_dlq,
            "--instance-id", f"i-{uuid.uuid4().hex[:8]}")
    env = {"COSMIC_CONNECTORS__BATCH_ROWS": "40", "COSMIC_CONNECTORS__BATCH_INTERVAL_S": "0.3"}
    log = tmp_path / "connector.log"
    first = cs.start_cli(s, log, *args, **env, COSMIC_CONNECTORS__CRASH_AFTER_WRITE="1")
    assert first.wait(timeout=60) == -signal.SIGKILL, log.read_text()
    assert 0 < _count(s, "physics_ticks", topic) < n
    second = cs.start_cli(s, log, *args, **env)
    try:
        cs.wait_for(lambda: _count(s, "physics_ticks", topic) >= n, 60, "catching up",
                    lambda: AssertionError(log.read_text()) if second.poll() is not None else None)
    finally:
        assert cs.stop_cli(second) == 0, log.read_text()
    rows = _rows(s, "SELECT tick, count() FROM physics_ticks WHERE _topic = %(t)s "
                    "GROUP BY tick ORDER BY tick", t=topic)
    assert rows == [(i, 1) for i in range(n)], "every tick exactly once, no gap"


@pytest.mark.slow
def test_clickhouse_outage_backs_off_and_catches_up(settings: Settings, stack: Stack,
                                                    topic_factory, tmp_path: Path):
    private = _small(settings, state_dir=tmp_path / "state",
                     clickhouse=ClickHouseSettings(port=29010, http_port=28133))
    server = ClickHouseService(private)
    world = f"w-{uuid.uuid4().hex[:8]}"
    topic = topic_factory()
    server.start()
    conn = clickhouse.build(private, {topic: topics.PHYSICS_TICKS},
                            group_id=f"g-{uuid.uuid4().hex[:8]}")
    try:
        conn.start()
        cs.produce(private, topic, "PhysicsTick", [cs.tick(world, i) for i in range(40)])
        cs.wait_for(lambda: conn.metrics.rows_written >= 40, 60, "rows before the outage",
                    conn.failure)
        server.stop(grace_s=10)
        cs.produce(private, topic, "PhysicsTick", [cs.tick(world, i) for i in range(40, 80)])
        cs.wait_for(lambda: conn.metrics.retries >= 4, 30, "retries during the outage",
                    conn.failure)
        assert conn.metrics.rows_written == 40
        server.start()
        cs.wait_for(lambda: conn.metrics.rows_written >= 80, 60, "catching up", conn.failure)
        conn.stop()
        rows = _rows(private, "SELECT count(), uniqExact(tick), min(tick), max(tick) "
                              "FROM physics_ticks WHERE _topic = %(t)s", t=topic)
        assert rows == [(80, 80, 0, 79)]
    finally:
        conn.stop()
        server.stop(grace_s=10)


def test_the_audit_trail_lands_row_for_row(ch_db: Settings, topic_factory):
    from streams.security.audit import AuditChain

    s = ch_db
    t_audit, t_dlq = topic_factory(), topic_factory()
    records: list[dict[str, Any]] = []
    chain = AuditChain(f"gw-{uuid.uuid4().hex[:6]}", lambda _g, r: records.append(r))
    for i in range(25):
        chain.record(action="submit", face="grpc", outcome="ADMITTED" if i % 3 else "DENIED",
                     player_id=f"p{i % 4}", world_id="w", reason="" if i % 3 else "operator only",
                     command_offset=i if i % 3 else None)
    cs.produce(s, t_audit, "AuditRecord", records, key_field="gateway_id")
    conn = clickhouse.build(s, {t_audit: topics.AUDIT}, group_id=f"g-{uuid.uuid4().hex[:8]}",
                            dlq_topic=topics.Topic(t_dlq, key="k", value="v", doc="test"))
    conn.start()
    try:
        cs.wait_for(lambda: conn.metrics.rows_written >= 25, 60, "all rows", conn.failure)
    finally:
        conn.stop()
    rows = _rows(s, "SELECT seq, outcome, player_id, reason, command_offset, hash FROM audit_log "
                    "WHERE _topic = %(t)s ORDER BY seq", t=t_audit)
    assert [r[0] for r in rows] == list(range(25))
    assert [(r[1], r[2], r[3], r[4], r[5]) for r in rows] == [
        (r["outcome"], r["player_id"], r["reason"], r["command_offset"], r["hash"])
        for r in records]
    denied = _rows(s, "SELECT count() FROM audit_log WHERE _topic = %(t)s AND outcome = 'DENIED'",
                   t=t_audit)
    assert denied[0][0] == 9
