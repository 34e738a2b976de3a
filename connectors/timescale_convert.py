"""Move a database migrated on the native fallback onto TimescaleDB, keeping its rows.

A database keeps the path it was first migrated with (``choose_variant``); this is the
one way across. Each time-series table is renamed aside, recreated as a hypertable by
the TimescaleDB migrations themselves, refilled, and the old one (with its daily
partitions) dropped; the ``date_bin`` views become continuous aggregates, refreshed over
all the data; ``schema_migrations`` then records the TimescaleDB path. The tables'
part runs in one transaction; the aggregates (which TimescaleDB creates outside any
transaction) come after, so an interrupted run is finished by running it again.

Stop the connectors and the live-metrics job first: a running one still writes the
native way. Run with ``python -m connectors.timescale_convert`` (runbooks/timescale-convert.md).
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence

import psycopg
from psycopg import sql

from connectors.errors import MigrationError
from connectors.migrate import Migration, discover, for_variant, split_statements
from connectors.stores import PostgresConnection, postgres_connect
from connectors.timescale import _MIGRATION_LOCK, SQL_DIR, _extension_available
from cosmic.settings import Settings, get_settings

log = logging.getLogger(__name__)

# What the native migrations 002-004 create, and the versions this conversion knows.
TABLES = ("physics_ticks", "metric_points", "ecosystem_events", "civilization_events",
          "live_metrics")
VIEWS = ("physics_ticks_per_world_minute", "metric_points_per_world_minute",
         "ecosystem_events_per_world_minute", "civilization_events_per_world_minute")
TABLE_VERSIONS = (2, 4)
AGGREGATE_VERSION = 3
_ASIDE = "{}__native"


def _run(conn: PostgresConnection, migration: Migration) -> None:
    for statement in split_statements(migration.text):
        conn.execute(statement)


def _record(conn: PostgresConnection, version: int) -> None:
    conn.execute("UPDATE schema_migrations SET variant = 'timescale' WHERE version = %s",
                 (version,))


def _columns(conn: PostgresConnection, table: str) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
        "AND table_name = %s ORDER BY ordinal_position", (table,))]


def _convert_tables(conn: PostgresConnection, migrations: dict[int, Migration]) -> list[str]:
    done = []
    with conn.transaction():
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for view in VIEWS:  # they read the tables; the aggregates replace them
            conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(view)))
        for table in TABLES:
            aside = _ASIDE.format(table)
            conn.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(
                sql.Identifier(table), sql.Identifier(aside)))
            # Free the names the TimescaleDB migrations give their indexes and keys.
            for (constraint,) in conn.execute(
                    "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass "
                    "AND contype IN ('p', 'u')", (aside,)).fetchall():
                conn.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(aside), sql.Identifier(constraint)))
            for (index,) in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                    "AND tablename = %s", (aside,)).fetchall():
                conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(index)))
        for version in TABLE_VERSIONS:
            _run(conn, migrations[version])
        for table in TABLES:
            aside = _ASIDE.format(table)
            cols = sql.SQL(", ").join(map(sql.Identifier, _columns(conn, table)))
            cur = conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                sql.Identifier(table), cols, cols, sql.Identifier(aside)))
            conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(aside)))
            done.append(f"{table}: {cur.rowcount} rows moved into a hypertable")
        for fn in ("cosmic_ensure_day_partitions(regclass, date, date)",
                   "cosmic_drop_day_partitions(regclass, integer)"):
            conn.execute(f"DROP FUNCTION IF EXISTS {fn}")
        for version in TABLE_VERSIONS:
            _record(conn, version)
    return done


def refresh_aggregate(conn: PostgresConnection, view: str, timeout_s: float = 120.0) -> None:
    """Refresh ``view`` over all its rows. Its policy starts at once in the background and
    holds the windows it refreshes: wait for it rather than fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("CALL refresh_continuous_aggregate(%s, NULL, NULL)", (view,))
            return
        except psycopg.errors.LockNotAvailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def convert(settings: Settings) -> list[str]:
    """Convert ``settings.postgres``'s database; return one line per action."""
    migrations = {m.version: m for m in for_variant(discover(SQL_DIR), "timescale")}
    with postgres_connect(settings) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
                raise MigrationError("nothing to convert: the database was never migrated "
                                     "(`cosmic db migrate` creates the TimescaleDB tables)")
            recorded: dict[int, str] = dict(conn.execute(
                "SELECT version, variant FROM schema_migrations WHERE variant IS NOT NULL"
            ).fetchall())
            native = {v for v, var in recorded.items() if var == "native"}
            if not native:
                return ["already on the TimescaleDB path: nothing to do"]
            unknown = native - {*TABLE_VERSIONS, AGGREGATE_VERSION}
            if unknown:
                raise MigrationError(f"native migrations {sorted(unknown)} are newer than this "
                                     "conversion knows: extend connectors/timescale_convert.py")
            if not _extension_available(conn):
                raise MigrationError("the timescaledb extension cannot be enabled in this "
                                     "PostgreSQL (installed, and in shared_preload_libraries?)")
            done = []
            if native & set(TABLE_VERSIONS):
                done += _convert_tables(conn, migrations)
            if AGGREGATE_VERSION in native:
                for view in VIEWS:
                    conn.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(sql.Identifier(view)))
                _run(conn, migrations[AGGREGATE_VERSION])  # outside a transaction, as it must
                for view in VIEWS:
                    refresh_aggregate(conn, view)
                    done.append(f"{view}: continuous aggregate, refreshed over all rows")
                _record(conn, AGGREGATE_VERSION)
            return done
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m connectors.timescale_convert",
                                     description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    settings = get_settings()
    for line in convert(settings):
        print(f"timescale-convert: {line}")


if __name__ == "__main__":
    main()
