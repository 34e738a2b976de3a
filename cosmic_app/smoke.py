"""The smoke pipeline: heartbeats through Kafka into PostgreSQL and ClickHouse.

It proves the stack works end to end, whatever else runs: a producer sends
numbered heartbeats as ``MetricPoint`` records (metric ``cosmic.smoke.heartbeat``,
the sequence number as value) through the registry, and a consumer group reads
them and writes each batch to both stores, committing offsets only after both
have it.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import deque
from collections.abc import Callable

import psycopg
from clickhouse_driver import Client
from confluent_kafka import KafkaError, KafkaException

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.timeutil import now_ms, to_ms
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SchemaSource, SerializationContext

SMOKE_METRIC = "cosmic.smoke.heartbeat"
SMOKE_KEY = SMOKE_METRIC.encode()
_PG_DDL = """
CREATE TABLE IF NOT EXISTS smoke_events (
    run_id uuid NOT NULL, seq bigint NOT NULL,
    produced_ms bigint NOT NULL, stored_ms bigint NOT NULL,
    PRIMARY KEY (run_id, seq))
"""
_CH_DDL = """
CREATE TABLE IF NOT EXISTS {db}.smoke_events (
    run_id String, seq UInt64, produced_ms UInt64, stored_ms UInt64)
ENGINE = MergeTree ORDER BY (run_id, seq)
"""


class SmokePipeline:
    """A heartbeat producer and a store-writing consumer, each in its own thread."""

    name = "smoke"

    def __init__(self, settings: Settings, rate_hz: float = 10.0, batch: int = 100,
                 registry: SchemaSource | None = None) -> None:
        self.settings = settings
        self.registry = registry or RegistryClient.from_settings(settings)
        self.rate_hz = rate_hz
        self.batch = batch
        self.run_id = uuid.uuid4()
        self.produced = 0
        self.stored = 0
        self._latencies: deque[int] = deque(maxlen=1000)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._error: BaseException | None = None

    # -- PlatformService ----------------------------------------------------------

    def start(self) -> None:
        self._prepare_stores()
        for target in (self._produce_loop, self._consume_loop):
            t = threading.Thread(target=self._guard(target), name=f"smoke-{target.__name__}",
                                 daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def failure(self) -> BaseException | None:
        return self._error

    def progress(self) -> str:
        lat = sorted(self._latencies)
        p50 = f"{lat[len(lat) // 2]}ms" if lat else "-"
        return f"produced {self.produced}, stored {self.stored} (pg+ch), e2e p50 {p50}"

    # -- internals ----------------------------------------------------------------

    def _guard(self, fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - reported through failure()
                self._error = exc
                self._stop.set()
        return run

    def _pg(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.settings.postgres.dsn, connect_timeout=10)

    def _ch(self) -> Client:
        ch = self.settings.clickhouse
        return Client(host=ch.host, port=ch.port, user=ch.user,
                      password=ch.secret(), connect_timeout=10)

    def _prepare_stores(self) -> None:
        with self._pg() as conn:
            conn.execute(_PG_DDL)
        client = self._ch()
        try:
            client.execute(_CH_DDL.format(db=self.settings.clickhouse.database))
        finally:
            client.disconnect()

    def _produce_loop(self) -> None:
        producer = kafka.producer(self.settings, client_id="cosmic-smoke-producer")
        encode = AvroSerializer(self.registry, "MetricPoint")
        ctx = SerializationContext(topics.METRICS.name)
        period = 1.0 / self.rate_hz
        next_at = time.monotonic()
        try:
            while not self._stop.is_set():
                now = now_ms()
                point = {"name": SMOKE_METRIC, "world_id": None, "window_start": now,
                         "window_end": now, "value": float(self.produced),
                         "labels": {"run_id": str(self.run_id)}}
                producer.produce(topics.METRICS.name, key=SMOKE_KEY, value=encode(point, ctx))
                self.produced += 1
                producer.poll(0)
                next_at += period
                time.sleep(max(0.0, next_at - time.monotonic()))
        finally:
            if producer.flush(10) > 0:
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT))

    def _consume_loop(self) -> None:
        consumer = kafka.consumer(self.settings, group_id=f"cosmic-smoke-{self.run_id}")
        consumer.subscribe([topics.METRICS.name])
        decode = AvroDeserializer(self.registry)
        ctx = SerializationContext(topics.METRICS.name)
        pg = self._pg()
        ch = self._ch()
        db = self.settings.clickhouse.database
        try:
            while not self._stop.is_set() or self.stored < self.produced:
                msgs = consumer.consume(self.batch, timeout=0.05)
                rows = []
                for msg in msgs:
                    if msg.error():
                        raise KafkaException(msg.error())
                    if msg.key() != SMOKE_KEY:
                        continue
                    point = decode(msg.value(), ctx)
                    if point["labels"].get("run_id") != str(self.run_id):
                        continue
                    rows.append((int(point["value"]), to_ms(point["window_start"])))
                if rows:
                    stored = now_ms()
                    with pg.cursor() as cur:
                        cur.executemany(
                            "INSERT INTO smoke_events VALUES (%s, %s, %s, %s) "
                            "ON CONFLICT DO NOTHING",
                            [(self.run_id, s, p, stored) for s, p in rows])
                    pg.commit()
                    ch.execute(f"INSERT INTO {db}.smoke_events VALUES",
                               [(str(self.run_id), s, p, stored) for s, p in rows])
                    self._latencies.extend(stored - p for _, p in rows)
                    self.stored += len(rows)
                if msgs:
                    consumer.commit(asynchronous=False)
                if self._stop.is_set() and not msgs:
                    break
        finally:
            consumer.close()
            pg.close()
            ch.disconnect()
