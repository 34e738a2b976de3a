"""TimescaleDB sink: ticks, metric points, ecosystem and civilization events, by COPY.

With the TimescaleDB extension the tables are hypertables with compression,
retention and continuous aggregates per world per minute; without it (Debian
ships no package) they are natively range-partitioned by day, partitions are
created ahead and on demand, and the per-minute aggregates are plain views
over ``date_bin``. The path is chosen when the database is first migrated and
reported when the sink opens.

Each batch is one transaction: a COPY per table plus the new position of
every partition in ``connector_offsets``, moved by compare and set (see
:mod:`connectors.postgres_sink`): a crash or a zombie instance duplicates nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

from connectors.base import Batch, Connector, check_routes
from connectors.migrate import (
    SQL_ROOT,
    Variant,
    choose_variant,
    discover,
    for_variant,
    split_statements,
)
from connectors.postgres_sink import PostgresSink
from connectors.records import FLATTENERS, Row
from connectors.stores import PostgresConnection, postgres_connect
from cosmic import topics
from cosmic.settings import Settings
from cosmic.topics import Topic

log = logging.getLogger(__name__)

SQL_DIR = SQL_ROOT / "timescale"
TOPICS: tuple[Topic, ...] = (topics.PHYSICS_TICKS, topics.METRICS, topics.ECOSYSTEM_EVENTS,
                             topics.CIVILIZATION_EVENTS)
# Any constant works; it only has to be the same for every migrating process.
_MIGRATION_LOCK = 0x636F736D6963  # "cosmic"
_DAYS_AHEAD = 3
_FORCED: dict[str, Variant | None] = {"auto": None, "on": "timescale", "off": "native"}

DESCRIPTIONS: dict[Variant, str] = {
    "timescale": "TimescaleDB extension present: hypertables, compression and retention "
                 "policies, continuous aggregates per world per minute",
    "native": "TimescaleDB extension NOT used (not available, or COSMIC_POSTGRES__TIMESCALE"
              "=off): fallback to native daily range partitions and date_bin() views per "
              "world per minute",
}


def _extension_available(conn: PostgresConnection) -> bool:
    if conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone():
        return True
    if not conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone():
        return False
    try:  # available is not loadable: it also needs shared_preload_libraries
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    except psycopg.Error as exc:
        log.warning("timescaledb is installed but cannot be enabled (%s); using the fallback", exc)
        return False
    return True


def migrate(settings: Settings, prefer: Variant | None = None) -> tuple[Variant, list[str]]:
    """Apply what is not yet applied; return the path taken and one line per action.

    ``prefer`` forces a path; without it, ``settings.postgres.timescale`` decides
    ("off": the native fallback even where the extension exists)."""
    if prefer is None:
        prefer = _FORCED[settings.postgres.timescale]
    with postgres_connect(settings) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                "name text NOT NULL, variant text, "
                "applied_at timestamptz NOT NULL DEFAULT now())")
            applied: dict[int, str | None] = {
                v: var for v, var in conn.execute("SELECT version, variant FROM schema_migrations")}
            recorded = next((v for v in applied.values() if v), None)
            available = prefer != "native" and _extension_available(conn)
            variant = choose_variant(recorded, available, prefer)
            done = []
            for m in for_variant(discover(SQL_DIR), variant):
                if m.version in applied:
                    continue
                record = ("INSERT INTO schema_migrations (version, name, variant) "
                          "VALUES (%s, %s, %s)", (m.version, m.name, m.variant))
                if m.no_transaction:
                    for statement in split_statements(m.text):
                        conn.execute(statement)
                    conn.execute(*record)
                else:
                    with conn.transaction():
                        for statement in split_statements(m.text):
                            conn.execute(statement)
                        conn.execute(*record)
                done.append(f"applied {m.path.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return variant, done


def day_range(days: Collection[date]) -> list[date]:
    """Every day from the first to the last (partitions are created for whole ranges)."""
    if not days:
        return []
    first, last = min(days), max(days)
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


class TimescaleSink(PostgresSink):
    name = "timescale"

    def __init__(self, settings: Settings, routes: Mapping[str, Topic], connector_id: str,
                 prefer: Variant | None = None) -> None:
        super().__init__(settings, connector_id)
        self.prefer = prefer
        self.routes = dict(routes)
        self.variant: Variant | None = None
        self._partitions: dict[str, set[date]] = {}

    def open(self) -> str:
        self.variant, done = migrate(self.settings, self.prefer)
        for line in done:
            log.info("timescale migrations: %s", line)
        if self.variant == "native":
            today = datetime.now(UTC).date()
            with self._connection().transaction():
                for table in self._tables():
                    self._ensure_days(table, day_range({today - timedelta(days=1),
                                                        today + timedelta(days=_DAYS_AHEAD)}))
        return f"{self.variant}: {DESCRIPTIONS[self.variant]}"

    def write_rows(self, cur: psycopg.Cursor[Any], batch: Batch) -> None:
        by_table: dict[str, tuple[tuple[str, ...], list[Row]]] = {}
        for item in batch.items:
            table, columns, build = FLATTENERS[item.carries.name]
            by_table.setdefault(table, (columns, []))[1].append(build(item.value))
        for table, (columns, rows) in by_table.items():
            if self.variant == "native":
                self._ensure_days(table, {r[0].astimezone(UTC).date() for r in rows})
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)

    def rolled_back(self) -> None:
        # Partitions made in a rolled-back transaction are gone: forget them.
        self._partitions.clear()

    # -- internals -------------------------------------------------------------------

    def _tables(self) -> list[str]:
        return sorted({FLATTENERS[t.name][0] for t in self.routes.values()})

    def _ensure_days(self, table: str, days: Collection[date]) -> None:
        known = self._partitions.setdefault(table, set())
        # Day by day, not the span: one bogus far-future timestamp must not
        # create decades of empty partitions.
        for day in sorted(set(days) - known):
            assert self._conn is not None
            self._conn.execute("SELECT cosmic_ensure_day_partitions(%s::regclass, %s, %s)",
                               (table, day, day))
            known.add(day)


def build(settings: Settings, routes: Mapping[str, Topic] | None = None,
          group_id: str = "cosmic-connector-timescale", dlq_topic: Topic = topics.DLQ,
          instance_id: str | None = None,
          prefer: Variant | None = None) -> Connector:
    """The TimescaleDB connector over ``routes`` (Kafka topic -> what it carries)."""
    routes = routes or {t.name: t for t in TOPICS}
    check_routes("timescale", routes, TOPICS)
    sink = TimescaleSink(settings, routes, connector_id=group_id, prefer=prefer)
    return Connector(settings, sink, routes, group_id=group_id, dlq_topic=dlq_topic,
                     instance_id=instance_id)
