"""The store connectors' rows: seeded ticks on a private topic into a private database.

The input is ``size`` PhysicsTick records of a few worlds (ticks ``1..n`` each),
keyed by world on a 3-partition topic of its own; the connector runs as
``cosmic connectors run NAME`` routed to it, in small batches so a fault lands
between batches and inside them. The verifier reads the rows back: every
input record exactly once, and the row count equal to the topic's committed
records (read_committed, to the end). ClickHouse rows keep their source
offsets, so order per world is checked there; PostgreSQL rows have no order,
so there the connector's stored position is checked never to move back.
"""

from __future__ import annotations

import contextlib
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from psycopg import sql

from connectors import clickhouse, stores, timescale
from cosmic import kafka, topics
from cosmic.settings import ConnectorSettings
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

from .cell import Row, Verdict
from .verify import tally

_WORLDS = 5
_PARTITIONS = 3
_BATCH = ConnectorSettings(batch_rows=50, batch_interval_s=0.3, backoff_max_s=1.0)


def _tick(world: str, i: int, ts: datetime) -> dict[str, Any]:
    return {"world_id": world, "tick": i, "sim_time": i * 0.01, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": 1,
            "n_rejected": 0, "body_count": 5, "total_energy": -1.5, "state_hash": f"{i:016x}",
            "step_duration_us": 100, "ts": ts}


class _StoreRow(Row):
    connector = "store"

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.run = run
        self.topic = f"chaos.{run}.ticks"
        self.dlq = f"chaos.{run}.dlq"
        self.group = f"chaos-{run}"
        admin = kafka.admin(self.settings)
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=_PARTITIONS, replication_factor=1)
             for t in (self.topic, self.dlq)])
        for f in futures.values():
            f.result(timeout=30)
        rng = random.Random(self.cell.seed)
        self.worlds = [f"chaos-{run}-w{i}" for i in range(_WORLDS)]
        counts = dict.fromkeys(self.worlds, 0)
        start = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
        self.input: list[dict[str, Any]] = []
        for n in range(self.cell.size):
            w = self.worlds[rng.randrange(_WORLDS)]
            counts[w] += 1
            self.input.append(_tick(w, counts[w], start + timedelta(milliseconds=10 * n)))
        self.per_world = counts
        self.positions: list[dict[int, int]] = []
        self._make_database()

    def _make_database(self) -> None: ...

    def feed(self) -> Iterator[int]:
        with RegistryClient.from_settings(self.settings) as registry:
            encode = AvroSerializer(registry, "PhysicsTick")
            producer = kafka.producer(self.settings)
            ctx = SerializationContext(self.topic)
            for n, rec in enumerate(self.input, 1):
                producer.produce(self.topic, key=rec["world_id"].encode(), value=encode(rec, ctx))
                producer.poll(0)
                yield n
            if producer.flush(60) != 0:
                raise RuntimeError("records not delivered within 60 s")

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        return (["connectors", "run", self.connector,
                 "--route", f"{self.topic}={topics.PHYSICS_TICKS.name}",
                 "--group-id", self.group, "--instance-id", f"{self.group}-{instance}",
                 "--dlq-topic", self.dlq, "--metrics-port", "0"], {})

    @property
    def expected(self) -> int:
        return self.cell.size

    def committed_records(self) -> int:
        """The input topic's committed records, read to its end with read_committed."""
        reader = kafka.reader(self.settings, "chaos-count")
        try:
            parts = [TopicPartition(self.topic, p, 0) for p in range(_PARTITIONS)]
            ends = {p.partition: reader.get_watermark_offsets(p, timeout=10)[1] for p in parts}
            reader.assign(parts)
            n, done = 0, {p for p, e in ends.items() if e == 0}
            for _ in range(600):
                if len(done) == _PARTITIONS:
                    break
                for msg in reader.consume(5000, timeout=0.2):
                    if msg.error() is None:
                        n += 1
                for tp in reader.position(parts):
                    if tp.offset >= ends[tp.partition]:
                        done.add(tp.partition)
            return n
        finally:
            reader.close()

    def _rows(self) -> list[tuple[str, int]]:
        raise NotImplementedError

    def _ordered(self) -> bool:
        return False

    def verify(self) -> Verdict:
        rows = self._rows()
        verdict = Verdict(tally({w: range(1, n + 1) for w, n in self.per_world.items()}, rows,
                                ordered=self._ordered()))
        on_topic = self.committed_records()
        if on_topic != len(rows):
            verdict.failures.append(f"{len(rows)} rows, {on_topic} committed records on the topic")
        for before, after in zip(self.positions, self.positions[1:], strict=False):
            back = [p for p, o in before.items() if after.get(p, o) < o]
            if back:
                verdict.failures.append(f"stored position moved back on partition(s) {back}")
                break
        return verdict

    def cleanup(self) -> None:
        if hasattr(self, "topic"):
            admin = kafka.admin(self.settings)
            for f in admin.delete_topics([self.topic, self.dlq], operation_timeout=30).values():
                # Cleanup must not mask the cell's result.
                with contextlib.suppress(Exception):
                    f.result(timeout=30)


class TimescaleRow(_StoreRow):
    name = "timescale"
    connector = "timescale"

    def _make_database(self) -> None:
        self.database = f"cosmic_chaos_{self.run}"
        admin = self.settings.model_copy(update={
            "postgres": self.settings.postgres.model_copy(update={"database": "postgres"})})
        with psycopg.connect(admin.postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self._admin_dsn = admin.postgres.dsn
        self.settings = self.settings.model_copy(update={
            "postgres": self.settings.postgres.model_copy(update={"database": self.database}),
            "connectors": _BATCH})
        timescale.migrate(self.settings)
        self._conn = psycopg.connect(self.settings.postgres.dsn, autocommit=True)

    def output(self, since_ms: int | None = None) -> int:
        row = self._conn.execute("SELECT count(*) FROM physics_ticks").fetchone()
        positions: dict[int, int] = {int(p): int(o) for p, o in self._conn.execute(
            "SELECT kafka_partition, next_offset FROM connector_offsets WHERE topic = %s",
            (self.topic,)).fetchall()}
        if not self.positions or positions != self.positions[-1]:
            self.positions.append(positions)
        return int(row[0]) if row else 0

    def _rows(self) -> list[tuple[str, int]]:
        return [(w, int(t)) for w, t in self._conn.execute(
            "SELECT world_id, tick FROM physics_ticks").fetchall()]

    def cleanup(self) -> None:
        super().cleanup()
        if hasattr(self, "_conn"):
            self._conn.close()
        if hasattr(self, "database"):
            with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)))


class ClickHouseRow(_StoreRow):
    name = "clickhouse"
    connector = "clickhouse"

    def _make_database(self) -> None:
        self.database = f"cosmic_chaos_{self.run}"
        self._admin = stores.clickhouse_client(self.settings)
        self._admin.execute(f"CREATE DATABASE {self.database}")
        self.settings = self.settings.model_copy(update={
            "clickhouse": self.settings.clickhouse.model_copy(update={"database": self.database}),
            "connectors": _BATCH})
        clickhouse.migrate(self.settings)
        self._cl = stores.clickhouse_client(self.settings)

    def output(self, since_ms: int | None = None) -> int:
        (n,), = self._cl.execute("SELECT count() FROM physics_ticks")
        return int(n)

    def _ordered(self) -> bool:
        return True

    def _rows(self) -> list[tuple[str, int]]:
        # No FINAL: a duplicate must be counted, not merged away.
        return [(w, int(t)) for w, t in self._cl.execute(
            "SELECT world_id, tick FROM physics_ticks ORDER BY _partition, _offset")]

    def cleanup(self) -> None:
        super().cleanup()
        if hasattr(self, "_cl"):
            self._cl.disconnect()
        if hasattr(self, "_admin"):
            self._admin.execute(f"DROP DATABASE IF EXISTS {self.database}")
            self._admin.disconnect()
