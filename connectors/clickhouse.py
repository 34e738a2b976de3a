"""ClickHouse sink: raw commands, ticks, ecosystem and civilization events, the
gateways' audit trail and the security flags, for analysts.

Rows go in as columnar inserts (one per table per batch). ClickHouse has no
transactions, so each row carries ``_topic``, ``_partition`` and ``_offset``:
on assignment (and before retrying a write whose fate is unknown) the sink
reads ``max(_offset)`` per partition and the connector skips everything at or
below it, so a crash between the insert and Kafka's commit duplicates nothing.
Everything here runs on Debian's ClickHouse 18.16 as well as current releases.

Known limit: one insert whose rows span two months writes two parts, and
ClickHouse does not make them atomic together; a crash exactly between them,
at a month boundary, could leave a gap below ``max(_offset)``.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping

from clickhouse_driver import Client

from connectors.base import TP, Batch, Connector, Item, Sink, check_routes
from connectors.migrate import SQL_ROOT, Migration, discover, for_variant, split_statements
from connectors.records import COLUMN_BUILDERS, FLATTENERS, columns_of
from connectors.stores import clickhouse_client, clickhouse_execute
from cosmic import topics
from cosmic.settings import Settings
from cosmic.topics import Topic

log = logging.getLogger(__name__)

SQL_DIR = SQL_ROOT / "clickhouse"
TOPICS: tuple[Topic, ...] = (topics.COMMANDS, topics.PHYSICS_TICKS, topics.ECOSYSTEM_EVENTS,
                             topics.CIVILIZATION_EVENTS, topics.AUDIT, topics.SECURITY_FLAGS)
_SOURCE_COLUMNS = ("_topic", "_partition", "_offset")


MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, "
                    "applied_at DateTime('UTC') DEFAULT now()) ENGINE = MergeTree ORDER BY version")


def migrations() -> list[tuple[Migration, list[str]]]:
    """Every migration file, in order, with its statements (what :func:`apply_migrations` runs)."""
    return [(m, split_statements(m.text)) for m in for_variant(discover(SQL_DIR), None)]


def apply_migrations(cl: Client) -> list[str]:
    """Apply the DDL files not yet recorded in ``schema_migrations``; one line per file."""
    clickhouse_execute(cl, MIGRATIONS_TABLE)
    applied = {v for (v,) in clickhouse_execute(cl, "SELECT version FROM schema_migrations")}
    done = []
    for m, statements in migrations():
        if m.version in applied:
            continue
        for statement in statements:
            clickhouse_execute(cl, statement)
        clickhouse_execute(cl, "INSERT INTO schema_migrations (version, name) VALUES",
                           [(m.version, m.name)])
        done.append(f"applied {m.path.name}")
    return done


def migrate(settings: Settings) -> list[str]:
    """:func:`apply_migrations` over a client of its own."""
    cl = clickhouse_client(settings)
    try:
        return apply_migrations(cl)
    finally:
        cl.disconnect()


def insert_statement(carried: str) -> str:
    """The columnar INSERT of one event family's rows (``carried``: the declared topic)."""
    table, columns, _ = FLATTENERS[carried]
    return f"INSERT INTO {table} ({', '.join((*columns, *_SOURCE_COLUMNS))}) VALUES"


def resume_statement(table: str) -> str:
    """The last offset written per (topic, partition) of ``table``; ``%(topics)s`` a tuple."""
    return (f"SELECT _topic, _partition, max(_offset) FROM {table} "
            "WHERE _topic IN %(topics)s GROUP BY _topic, _partition")


class ClickHouseSink(Sink):
    name = "clickhouse"

    def __init__(self, settings: Settings, routes: Mapping[str, Topic],
                 client: Client | None = None) -> None:
        """``client``: an open client to use instead of one made from the settings."""
        self.settings = settings
        self.routes = dict(routes)
        self._given = client
        self._client: Client | None = client

    def open(self) -> str:
        for line in apply_migrations(self._cl()):
            log.info("clickhouse migrations: %s", line)
        version = clickhouse_execute(self._cl(), "SELECT version()")[0][0]
        return f"ClickHouse {version}: MergeTree tables by month, dedup by _topic/_partition/_offset"

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def resume_positions(self, tps: Collection[TP]) -> dict[TP, int]:
        by_table: dict[str, set[str]] = {}
        for t, _ in tps:
            by_table.setdefault(FLATTENERS[self.routes[t].name][0], set()).add(t)
        wanted = set(tps)
        out: dict[TP, int] = {}
        for table, names in by_table.items():
            rows = clickhouse_execute(self._cl(), resume_statement(table),
                                      {"topics": tuple(sorted(names))})
            out.update({(t, p): o + 1 for t, p, o in rows if (t, p) in wanted})
        return out

    def write(self, batch: Batch) -> dict[TP, int]:
        by_topic: dict[str, list[Item]] = {}
        for item in batch.items:
            by_topic.setdefault(item.carries.name, []).append(item)
        for carried, items in by_topic.items():
            build = FLATTENERS[carried][2]
            values = [i.value for i in items]
            fast = COLUMN_BUILDERS.get(carried)
            data = fast(values) if fast else columns_of(build, values)
            # DateTime columns take epoch seconds; ts_ms (column 1) keeps the milliseconds.
            data[0] = [ms // 1000 for ms in data[1]]
            data += [[i.topic for i in items], [i.partition for i in items],
                     [i.offset for i in items]]
            clickhouse_execute(self._cl(), insert_statement(carried), data, columnar=True)
        return dict(batch.positions)

    def _cl(self) -> Client:
        if self._client is None:
            self._client = self._given or clickhouse_client(self.settings)
        return self._client


def build(settings: Settings, routes: Mapping[str, Topic] | None = None,
          group_id: str = "cosmic-connector-clickhouse", dlq_topic: Topic = topics.DLQ,
          instance_id: str | None = None) -> Connector:
    """The ClickHouse connector over ``routes`` (Kafka topic -> what it carries)."""
    routes = routes or {t.name: t for t in TOPICS}
    check_routes("clickhouse", routes, TOPICS)
    return Connector(settings, ClickHouseSink(settings, routes), routes, group_id=group_id,
                     dlq_topic=dlq_topic,
                     instance_id=instance_id)
