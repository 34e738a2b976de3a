"""What every PostgreSQL sink shares: a batch is one transaction that writes its rows and
moves each partition's stored position in ``connector_offsets`` by compare and set.

A restart resumes from those positions, so a crash between the write and Kafka's commit
duplicates nothing. A position moves on only from the value this instance last read or
wrote: a zombie whose partitions went to another instance finds it changed, its whole
batch rolls back, and it stops with :class:`~connectors.errors.StoreFenced` instead of
writing twice and moving the position back.

Subclasses say how a batch's rows are written (:meth:`PostgresSink.write_rows`) and what
to forget when a transaction fails (:meth:`PostgresSink.rolled_back`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import psycopg

from connectors.base import TP, Batch, Sink
from connectors.errors import StoreError, StoreFenced, StoreRejected, StoreUnavailable
from connectors.stores import PostgresConnection, postgres_connect
from cosmic.settings import Settings


class PostgresSink(Sink):
    """A sink into PostgreSQL whose positions live next to its rows."""

    def __init__(self, settings: Settings, connector_id: str) -> None:
        self.settings = settings
        self.connector_id = connector_id
        self._conn: PostgresConnection | None = None
        # The stored position of each partition as this instance last read or wrote it
        # (None: no row yet), what the next write expects to find.
        self._held: dict[TP, int | None] = {}

    def write_rows(self, cur: psycopg.Cursor[Any], batch: Batch) -> None:
        """Write the batch's rows inside its transaction."""
        raise NotImplementedError

    def rolled_back(self) -> None:
        """The batch's transaction failed: forget what it made (nothing by default)."""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def resume_positions(self, tps: Collection[TP]) -> dict[TP, int]:
        wanted = set(tps)
        try:
            rows = self._connection().execute(
                "SELECT topic, kafka_partition, next_offset FROM connector_offsets "
                "WHERE connector = %s AND topic = ANY(%s)",
                (self.connector_id, sorted({t for t, _ in wanted}))).fetchall()
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            raise StoreUnavailable(f"PostgreSQL: {exc}") from None
        found = {(t, p): o for t, p, o in rows if (t, p) in wanted}
        for tp in wanted:
            self._held[tp] = found.get(tp)
        return found

    def release(self, tps: Collection[TP]) -> None:
        for tp in tps:
            self._held.pop(tp, None)

    def write(self, batch: Batch) -> dict[TP, int]:
        try:
            conn = self._connection()
            with conn.transaction(), conn.cursor() as cur:
                self.write_rows(cur, batch)
                for tp, position in batch.positions.items():
                    self._move_position(cur, tp, position)
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            self.close()
            self.rolled_back()
            raise StoreUnavailable(f"PostgreSQL: {exc}") from None
        except (psycopg.DataError, psycopg.IntegrityError) as exc:
            self.rolled_back()
            raise StoreRejected(f"PostgreSQL refused a value: {type(exc).__name__}: {exc}") from None
        except psycopg.Error as exc:
            self.rolled_back()
            raise StoreError(f"PostgreSQL refused a batch: {type(exc).__name__}: {exc}") from exc
        self._held.update(batch.positions)
        return dict(batch.positions)

    def _move_position(self, cur: psycopg.Cursor[Any], tp: TP, position: int) -> None:
        """Set ``tp``'s stored position to ``position`` if it is still what this instance
        holds; else raise :class:`StoreFenced` (the caller's transaction rolls back)."""
        topic, partition = tp
        key = (self.connector_id, topic, partition)
        if tp not in self._held:  # never resumed here (a sink used on its own): read it now
            row = cur.execute("SELECT next_offset FROM connector_offsets WHERE connector = %s "
                              "AND topic = %s AND kafka_partition = %s FOR UPDATE", key).fetchone()
            self._held[tp] = None if row is None else int(row[0])
        expected = self._held[tp]
        if expected is None:
            cur.execute("INSERT INTO connector_offsets (connector, topic, kafka_partition, "
                        "next_offset) VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (*key, position))
        else:
            cur.execute("UPDATE connector_offsets SET next_offset = %s, updated_at = now() "
                        "WHERE connector = %s AND topic = %s AND kafka_partition = %s "
                        "AND next_offset = %s", (position, *key, expected))
        if cur.rowcount != 1:
            raise StoreFenced(
                f"{topic}[{partition}]: another instance of connector {self.connector_id} has "
                f"moved its stored position on (this one held {expected}); not writing")

    def _connection(self) -> PostgresConnection:
        if self._conn is None or self._conn.closed:
            self._conn = postgres_connect(self.settings)
        return self._conn
