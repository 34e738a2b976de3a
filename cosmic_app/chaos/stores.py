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
import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from psycopg import sql
from pydantic import SecretStr

from connectors import clickhouse, lake, stores, timescale
from cosmic import kafka, topics
from cosmic.settings import (
    ClickHouseSettings,
    ConnectorSettings,
    PostgresSettings,
    Settings,
)
from cosmic.stack.clickhouse import ClickHouseService
from cosmic.stack.postgres import PostgresService
from cosmic.stack.service import LocalService
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

from .cell import Row, Verdict
from .private import free_ports
from .verify import tally

_WORLDS = 5
_PARTITIONS = 3
_BATCH = ConnectorSettings(batch_rows=50, batch_interval_s=0.3, backoff_max_s=1.0)


def _tick(world: str, i: int, ts: datetime) -> dict[str, Any]:
    return {"world_id": world, "tick": i, "sim_time": i * 0.01, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": 1,
            "n_rejected": 0, "body_count": 5, "total_energy": -1.5, "state_hash": f"{i:016x}",
            "step_duration_us": 100, "ts": ts}


def _private_stack(settings: Settings, state_dir: Path, **store: Any) -> Settings:
    """Settings of a private store (its own state folder and port) beside the shared
    Kafka and registry, whose passwords are carried over explicitly (the private folder
    holds only the store's)."""
    return Settings(
        state_dir=state_dir, connectors=_BATCH,
        kafka=settings.kafka.model_copy(
            update={"sasl_password": SecretStr(settings.kafka.password())}),
        registry=settings.registry.model_copy(
            update={"password": SecretStr(settings.registry.secret())}),
        **store)


class _StoreRow(Row):
    connector = "store"
    faults = (*Row.faults, "broker-restart", "registry-outage")
    # The store this cell may take down ("store-outage"): a private one, never the shared.
    service: LocalService | None = None

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.run = run
        self.topic = f"chaos.{run}.ticks"
        self.dlq = f"chaos.{run}.dlq"
        self.group = f"chaos-{run}"
        self._create_topics(self.topic, self.dlq)
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

    def _create_topics(self, *names: str) -> None:
        """The cell's private topics, deleted again by :meth:`cleanup`."""
        self.private_topics = list(names)
        admin = kafka.admin(self.settings)
        futures = admin.create_topics(
            [NewTopic(t, num_partitions=_PARTITIONS, replication_factor=1) for t in names])
        for f in futures.values():
            f.result(timeout=30)

    def _make_database(self) -> None: ...

    def _drop_private(self) -> None:
        if self.service is not None:
            self.service.stop()
            shutil.rmtree(self.settings.state_dir, ignore_errors=True)

    def outage(self, seconds: float) -> None:
        if self.service is None:
            super().outage(seconds)
            return
        if isinstance(self.service, PostgresService) and (pid := self.service.pid()):
            os.kill(pid, signal.SIGINT)  # fast shutdown: a plain SIGTERM waits for clients
        self.service.stop(grace_s=10)
        time.sleep(seconds)
        self.service.start()

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
            ends = {p.partition: kafka.high_watermark(reader, p) for p in parts}
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
        if getattr(self, "private_topics", None):
            admin = kafka.admin(self.settings)
            for f in admin.delete_topics(self.private_topics, operation_timeout=30).values():
                # Cleanup must not mask the cell's result.
                with contextlib.suppress(Exception):
                    f.result(timeout=30)


class TimescaleRow(_StoreRow):
    name = "timescale"
    faults = (*_StoreRow.faults, "store-outage")
    connector = "timescale"

    def _make_database(self) -> None:
        if self.cell.fault == "store-outage":
            self.settings = _private_stack(self.settings, self.workdir / f"state-{self.run}",
                                           postgres=PostgresSettings(port=free_ports(1)[0]))
            self.service = PostgresService(self.settings)
            self.service.start()
        self.database = f"cosmic_chaos_{self.run}"
        admin = self.settings.model_copy(update={
            "postgres": self.settings.postgres.model_copy(update={"database": "postgres"})})
        with psycopg.connect(admin.postgres.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(self.database)))
        self._admin_dsn = admin.postgres.dsn
        self.settings = self.settings.model_copy(update={
            "postgres": self.settings.postgres.model_copy(update={"database": self.database}),
            "connectors": _BATCH})
        self._migrate()
        self._conn: psycopg.Connection[Any] | None = None
        self._last = 0

    def _migrate(self) -> None:
        timescale.migrate(self.settings)

    def _db(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            self._conn = psycopg.connect(self.settings.postgres.dsn, autocommit=True,
                                         connect_timeout=3)
        return self._conn

    def output(self, since_ms: int | None = None) -> int:
        try:
            row = self._db().execute("SELECT count(*) FROM physics_ticks").fetchone()
            positions: dict[int, int] = {int(p): int(o) for p, o in self._db().execute(
                "SELECT kafka_partition, next_offset FROM connector_offsets WHERE topic = %s",
                (self.topic,)).fetchall()}
        except psycopg.OperationalError:
            return self._last  # the store is down (the outage cell): nothing new is visible
        if not self.positions or positions != self.positions[-1]:
            self.positions.append(positions)
        self._last = int(row[0]) if row else 0
        return self._last

    def _rows(self) -> list[tuple[str, int]]:
        return [(w, int(t)) for w, t in self._db().execute(
            "SELECT world_id, tick FROM physics_ticks").fetchall()]

    def cleanup(self) -> None:
        super().cleanup()
        if getattr(self, "_conn", None) is not None:
            self._db().close()
        if hasattr(self, "database"):
            with psycopg.connect(self._admin_dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self.database)))
        self._drop_private()


class ClickHouseRow(_StoreRow):
    name = "clickhouse"
    faults = (*_StoreRow.faults, "store-outage")
    connector = "clickhouse"

    def _make_database(self) -> None:
        if self.cell.fault == "store-outage":
            native, http = free_ports(2)
            self.settings = _private_stack(
                self.settings, self.workdir / f"state-{self.run}",
                clickhouse=ClickHouseSettings(port=native, http_port=http))
            self.service = ClickHouseService(self.settings)
            self.service.start()
        self.database = f"cosmic_chaos_{self.run}"
        self._admin = stores.clickhouse_client(self.settings)
        self._admin.execute(f"CREATE DATABASE {self.database}")
        self.settings = self.settings.model_copy(update={
            "clickhouse": self.settings.clickhouse.model_copy(update={"database": self.database}),
            "connectors": _BATCH})
        clickhouse.migrate(self.settings)
        self._cl = stores.clickhouse_client(self.settings)
        self._last = 0

    def output(self, since_ms: int | None = None) -> int:
        try:
            (n,), = self._cl.execute("SELECT count() FROM physics_ticks")
        except Exception:  # noqa: BLE001 - the store is down (the outage cell)
            self._cl.disconnect()
            return self._last
        self._last = int(n)
        return self._last

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
        self._drop_private()


class ArchiveRow(_StoreRow):
    """The archive connector into a private lake folder; files roll every second, so
    records become durable (and committed) all through the cell."""

    name = "archive"
    connector = "archive"

    def _make_database(self) -> None:
        self.lake = self.workdir / f"lake-{self.run}"
        self.settings = self.settings.model_copy(update={"lake_dir": self.lake,
                                                         "connectors": _BATCH})

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        args, env = super().argv(instance)
        return [*args, "--roll-seconds", "1"], env

    def output(self, since_ms: int | None = None) -> int:
        if not self.lake.exists():
            return 0
        return sum(m.count for _, m in lake.manifests(self.lake, self.topic))

    def _ordered(self) -> bool:
        return True

    def _rows(self) -> list[tuple[str, int]]:
        # read_topic refuses a file that overlaps an earlier one: that is a duplicate.
        return [(r.value["world_id"], int(r.value["tick"]))
                for r in lake.read_topic(self.lake, self.topic)]
