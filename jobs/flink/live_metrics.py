"""Live metrics: a PyFlink job from the event topics into TimescaleDB, per world per window.

Shape (each stateful step has a uid, so its state survives code changes)::

    Kafka (SQL table, raw format, official connector)   topic, partition, offset, key, bytes
      -> decode      Python: wire format -> window events; undecodable -> cosmic.dlq.v1
      -> watermarks  event time from each record, bounded out-of-orderness, idleness
      -> key by world
      -> windows     Python: tumbling event-time windows with allowed lateness, in keyed state
      -> upsert      psycopg: INSERT .. ON CONFLICT into live_metrics (idempotent)

Why the windows are a keyed process function and not ``.window(...)``: Flink does
not checkpoint watermarks, so after a restart the built-in window operator would
re-open a window it had already purged when a replayed record for it arrives,
and upsert a partial value over the exact one. Here each world's state records
which windows are final, and timers (checkpointed) do the firing: a window fires
when the watermark passes its end, fires again after late events (batched to the
next watermark), and is purged ``allowed_lateness`` later; later events for it
are dropped and counted (metric ``late_dropped``). The window math is in
:mod:`jobs.flink.windows`.

Exactly once, the idempotent way: sources restart from the checkpoint's offsets,
every firing after it is recomputed from the same records, and upserts by
(name, world, label, window start) overwrite rather than add.

Run it with ``cosmic jobs run live-metrics``, or ``flink run -py jobs/flink/live_metrics.py``
on a cluster (same arguments, see :func:`main`).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from cosmic import kafka, metrics, topics
from cosmic.errors import DependencyMissing
from cosmic.settings import Settings, get_settings
from cosmic.timeutil import from_ms
from cosmic.topics import Topic
from jobs.flink import windows as W
from jobs.flink.decode import TOPICS

log = logging.getLogger(__name__)

JOB_NAME = "cosmic-live-metrics"
TABLE = "live_metrics"
SOURCE_TABLE = "cosmic_event_source"
# Where flink-sql-connector-kafka relocates the Kafka client (its login modules too).
_SHADED_KAFKA = "org.apache.flink.kafka.shaded.org.apache.kafka"
_MIN_WATERMARK = -(2**63)

try:
    from pyflink.common import Configuration, Duration, Types, WatermarkStrategy
    from pyflink.common.watermark_strategy import TimestampAssigner
    from pyflink.datastream import (
        FlatMapFunction,
        KeyedProcessFunction,
        MapFunction,
        RuntimeContext,
        StreamExecutionEnvironment,
    )
    from pyflink.datastream.connectors.base import Sink
    from pyflink.datastream.state import MapStateDescriptor, ValueStateDescriptor
    from pyflink.table import StreamTableEnvironment
except ImportError as exc:  # pragma: no cover - the flink extra is optional
    raise DependencyMissing(
        "apache-flink", "install the flink extra: .venv/bin/pip install -e '.[flink]'") from exc


# -- decode ---------------------------------------------------------------------------


class _SourceRecord:
    """What :mod:`schemas.dlq` needs from a message, built from the source table's row."""

    def __init__(self, row: Any) -> None:
        self._row = row

    def topic(self) -> str:
        return str(self._row[0])

    def partition(self) -> int:
        return int(self._row[1])

    def offset(self) -> int:
        return int(self._row[2])

    def timestamp(self) -> tuple[int, int]:
        ts = self._row[3]  # TIMESTAMP_LTZ arrives as a pyflink Instant
        return (1, int(ts.to_epoch_milli())) if ts is not None else (0, -1)

    def key(self) -> bytes | None:
        return self._row[4]

    def value(self) -> bytes | None:
        return self._row[5]

    def headers(self) -> list[tuple[str, bytes]]:
        return []


class DecodeEvents(FlatMapFunction):
    """Source rows -> window events; a record our serde refuses goes to the DLQ."""

    def __init__(self, registry_url: str, routes: Mapping[str, str],
                 producer_config: Mapping[str, Any], dlq_topic: str,
                 registry_auth: tuple[str, str] | None = None) -> None:
        # Plain values only: this object is pickled to the Python workers. The producer's
        # configuration comes whole from cosmic.kafka, credentials included.
        self.registry_url = registry_url
        self.routes = dict(routes)
        self.producer_config = dict(producer_config)
        self.dlq_topic = dlq_topic
        self.registry_auth = registry_auth

    def open(self, runtime_context: RuntimeContext) -> None:
        from confluent_kafka import Producer

        from jobs.flink.decode import EventDecoder
        from schemas.dlq import DeadLetterQueue
        from schemas.registry.client import RegistryClient

        self._registry = RegistryClient(self.registry_url, auth=self.registry_auth)
        self._decode = EventDecoder(self._registry,
                                    {t: topics.get(v) for t, v in self.routes.items()})
        self._producer = Producer(self.producer_config)
        self._dlq = DeadLetterQueue(self._producer, Topic(self.dlq_topic, key="original key",
                                                          value="original bytes", doc="dead letters"))
        self._dead = runtime_context.get_metrics_group().counter("dead_lettered")

    def close(self) -> None:
        self._producer.flush(10)
        self._registry.close()

    def flat_map(self, value: Any) -> Iterable[tuple[str, W.Event]]:
        from cosmic.errors import SerializationError, StoreError

        # Each event carries where it came from: the windows store it under that id, so a
        # record read twice (a replay) overwrites itself instead of counting twice.
        origin = f"{value[0]}:{value[1]}:{value[2]}"
        try:
            for n, event in enumerate(self._decode(value[0], value[5])):
                yield f"{origin}:{n}", event
        except SerializationError as exc:
            self._dlq.send(_SourceRecord(value), exc)  # type: ignore[arg-type]  # duck-typed Message
            # Delivered before the record counts as processed: a checkpoint taken after
            # this point must not outlive its dead letter. Bad records are rare, so the
            # wait is too; a restart from an earlier checkpoint may send it again.
            if self._producer.flush(30) > 0:
                raise StoreError(f"dead letter for {origin} not delivered within 30 s") from exc
            self._dead.inc()


class EventTime(TimestampAssigner):
    def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
        return int(value[1].ts_ms)


# -- windows --------------------------------------------------------------------------


class WorldWindows(KeyedProcessFunction):
    """Tumbling event-time windows per world, with allowed lateness, in keyed state."""

    def __init__(self, size_ms: int, lateness_ms: int) -> None:
        self.size = size_ms
        self.lateness = lateness_ms

    def open(self, runtime_context: RuntimeContext) -> None:
        pickled = Types.PICKLED_BYTE_ARRAY()
        # "window start:topic:partition:offset:n" -> event: one put per event, whatever the
        # window's size, and idempotent for a record seen again.
        self.events = runtime_context.get_map_state(
            MapStateDescriptor("events", Types.STRING(), pickled))
        self.dirty = runtime_context.get_state(ValueStateDescriptor("dirty", pickled))
        self.base = runtime_context.get_state(ValueStateDescriptor("gauges", pickled))
        # End of the newest purged window: records for it or earlier are too late, even
        # right after a restart, when the watermark starts from scratch.
        self.final = runtime_context.get_state(ValueStateDescriptor("final_before", Types.LONG()))
        self.late = runtime_context.get_metrics_group().counter("late_dropped")

    def process_element(self, value: tuple[str, W.Event],
                        ctx: KeyedProcessFunction.Context) -> Iterable[Any]:
        origin, event = value
        timers = ctx.timer_service()
        watermark = timers.current_watermark()
        start = W.window_start(event.ts_ms, self.size)
        final = self.final.value()
        if (final is not None and start + self.size <= final) or W.is_too_late(
                event.ts_ms, watermark, self.size, self.lateness):
            self.late.inc()
            return
        self.events.put(f"{start}:{origin}", event)
        dirty = self.dirty.value() or set()
        if start not in dirty:
            # Timers once per window and firing, not per event (each is a call to the JVM).
            dirty.add(start)
            self.dirty.update(dirty)
            last = start + self.size - 1
            # On time: fire at the window's end. Late: at the next watermark, so a burst of
            # late events costs one recomputation, not one each.
            timers.register_event_time_timer(max(last, watermark + 1))
            timers.register_event_time_timer(last + self.lateness)
        return
        yield  # a generator, as PyFlink expects of process functions

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterable[Any]:
        world = ctx.get_current_key()
        stored: dict[int, list[W.Event]] = {}
        keys: dict[int, list[str]] = {}
        for key, event in self.events.items():
            start = int(key.split(":", 1)[0])
            stored.setdefault(start, []).append(event)
            keys.setdefault(start, []).append(key)
        base = self.base.value() or W.Gauges()
        dirty: set[int] = self.dirty.value() or set()
        due = sorted(s for s in dirty if s + self.size - 1 <= timestamp)
        rows: list[W.MetricRow] = []
        if due:
            gauges = base.copy()
            for start in sorted(stored):
                gauges.apply(stored[start])
                # Gauges carry forward: a late event re-emits the fired windows after it too.
                if start >= due[0] and start + self.size - 1 <= timestamp:
                    rows.extend(W.window_metrics(world, start, self.size, stored[start], gauges))
            self.dirty.update(dirty - set(due))
        final = self.final.value()
        for start in sorted(stored):
            if start + self.size - 1 + self.lateness > timestamp:
                break
            base.apply(stored[start])
            for key in keys[start]:
                self.events.remove(key)
            final = max(final or _MIN_WATERMARK, start + self.size)
        if final is not None:
            self.final.update(final)
            self.base.update(base)
        if rows:
            yield rows


# -- upsert ---------------------------------------------------------------------------

UPSERT = (
    f"INSERT INTO {TABLE} (ts, window_end, name, world_id, label, value) "
    "VALUES (%s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (name, world_id, label, ts) "
    "DO UPDATE SET value = EXCLUDED.value, window_end = EXCLUDED.window_end, updated_at = now()"
)


class UpsertMetrics(MapFunction):
    """Writes each firing's rows in one transaction; returns how many."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def open(self, runtime_context: RuntimeContext) -> None:
        from connectors.stores import postgres_connect

        self._conn = postgres_connect(self.dsn)
        # Without TimescaleDB the table is partitioned by day (created on demand).
        self._partitioned = self._conn.execute(
            "SELECT 1 FROM pg_partitioned_table WHERE partrelid = %s::regclass",
            (TABLE,)).fetchone() is not None
        self._days: set[Any] = set()

    def close(self) -> None:
        self._conn.close()

    def map(self, rows: Sequence[W.MetricRow]) -> int:
        params = [(from_ms(r.window_start_ms), from_ms(r.window_end_ms), r.name, r.world_id, r.label,
                   r.value) for r in rows]
        with self._conn.transaction(), self._conn.cursor() as cur:
            if self._partitioned:
                for day in {p[0].date() for p in params} - self._days:
                    cur.execute("SELECT cosmic_ensure_day_partitions(%s::regclass, %s, %s)",
                                (TABLE, day, day))
                    self._days.add(day)
            cur.executemany(UPSERT, params)
        return len(rows)


# -- wiring ---------------------------------------------------------------------------


def checkpoint_dir(settings: Settings) -> Path:
    return settings.state_dir / "flink" / "live-metrics" / "checkpoints"


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete checkpoint under ``folder`` (any job id), or None."""
    done = [m.parent for m in folder.glob("*/chk-*/_metadata")]
    return max(done, key=lambda p: p.joinpath("_metadata").stat().st_mtime) if done else None


def prune_checkpoints(folder: Path, keep: Path) -> list[Path]:
    """Remove the folders of earlier runs (one per Flink job id) but the one holding
    ``keep``: each restart is a new job id, and nothing reads their checkpoints again."""
    removed = []
    for job_dir in folder.iterdir():
        if job_dir.is_dir() and job_dir != keep.parent:
            shutil.rmtree(job_dir, ignore_errors=True)
            removed.append(job_dir)
    return removed


def _source_ddl(settings: Settings, routes: Mapping[str, Topic], group_id: str) -> str:
    options = {
        "connector": "kafka",
        "topic": ";".join(sorted(routes)),
        "properties.bootstrap.servers": settings.kafka.bootstrap_servers,
        # The connector relocates Kafka's classes: its JAAS line must name its own copy.
        **{f"properties.{k}": v for k, v in kafka.java_security_properties(
            settings, package=_SHADED_KAFKA).items()},
        "properties.group.id": group_id,
        # Our producers are transactional: never count an aborted record.
        "properties.isolation.level": "read_committed",
        # A new group starts at the beginning; a restart resumes from the checkpoint.
        "scan.startup.mode": "group-offsets",
        "properties.auto.offset.reset": "earliest",
        "key.format": "raw",
        "key.fields": "record_key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
    }
    with_ = ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items())
    return f"""CREATE TEMPORARY TABLE {SOURCE_TABLE} (
  `topic` STRING METADATA VIRTUAL,
  `partition` INT METADATA VIRTUAL,
  `offset` BIGINT METADATA VIRTUAL,
  `kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `record_key` BYTES,
  `payload` BYTES
) WITH (
  {with_}
)"""


def build_job(settings: Settings, *, routes: Mapping[str, Topic] | None = None,
              group_id: str | None = None, checkpoints: Path | None = None,
              restore: bool = True, jars: Sequence[Path] | None = None,
              dlq_topic: Topic = topics.DLQ,
              prometheus_port: int | None = None) -> StreamExecutionEnvironment:
    """The job, ready to ``execute()``: reads ``routes`` (Kafka topic -> what it carries;
    default: the five event topics), resumes from the newest checkpoint unless
    ``restore`` is False. With ``prometheus_port``, the local mini-cluster runs Flink's
    Prometheus reporter there (on a cluster, reporters are the cluster's configuration)."""
    from cosmic.stack.flink import connector_jars

    lm = settings.live_metrics
    routes = dict(routes or {t.name: t for t in TOPICS})
    folder = checkpoints or checkpoint_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    jar_paths = list(jars) if jars is not None else connector_jars(settings)

    conf = Configuration()
    # Python workers start `python` from PATH unless told: use this interpreter (and venv).
    conf.set_string("python.executable", lm.python_executable or sys.executable)
    conf.set_string("pipeline.jars", ";".join(p.resolve().as_uri() for p in jar_paths))
    conf.set_string("pipeline.name", JOB_NAME)
    conf.set_string("pipeline.auto-watermark-interval", "200 ms")
    conf.set_string("parallelism.default", str(lm.parallelism))
    conf.set_string("execution.checkpointing.interval", f"{lm.checkpoint_interval_ms} ms")
    conf.set_string("execution.checkpointing.mode", "EXACTLY_ONCE")
    conf.set_string("execution.checkpointing.dir", folder.resolve().as_uri())
    # Kept when the job stops or is killed: the next start resumes from it.
    conf.set_string("execution.checkpointing.externalized-checkpoint-retention",
                    "RETAIN_ON_CANCELLATION")
    conf.set_string("execution.checkpointing.num-retained", "2")
    if prometheus_port is not None:
        # The reporter's classes must be on the JVM's classpath: see _reporter_on_classpath.
        conf.set_string("metrics.reporters", "prom")
        conf.set_string("metrics.reporter.prom.factory.class",
                        "org.apache.flink.metrics.prometheus.PrometheusReporterFactory")
        conf.set_string("metrics.reporter.prom.port", str(prometheus_port))
    if restore and (last := latest_checkpoint(folder)) is not None:
        log.info("live-metrics: resuming from %s", last)
        conf.set_string("execution.state-recovery.path", last.resolve().as_uri())
        prune_checkpoints(folder, last)

    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    t_env.execute_sql(_source_ddl(settings, routes, group_id or lm.group_id))
    rows = t_env.to_data_stream(t_env.from_path(SOURCE_TABLE))

    strategy = (WatermarkStrategy
                .for_bounded_out_of_orderness(Duration.of_millis(lm.out_of_orderness_ms))
                .with_timestamp_assigner(EventTime()))
    if lm.idle_timeout_ms > 0:
        strategy = strategy.with_idleness(Duration.of_millis(lm.idle_timeout_ms))
    pickled = Types.PICKLED_BYTE_ARRAY()
    events = (rows
              .flat_map(DecodeEvents(settings.registry.url,
                                     {name: t.name for name, t in routes.items()},
                                     kafka.producer_config(settings, client_id="cosmic-live-metrics"),
                                     dlq_topic.name, settings.registry.auth()),
                        output_type=pickled).name("decode").uid("decode")
              .assign_timestamps_and_watermarks(strategy).name("event-time").uid("event-time"))
    fired = (events
             .key_by(lambda e: e[1].world_id, key_type=Types.STRING())
             .process(WorldWindows(lm.window_ms, lm.allowed_lateness_ms), output_type=pickled)
             .name("world-windows").uid("world-windows"))
    written = (fired.map(UpsertMetrics(settings.postgres.dsn), output_type=Types.INT())
               .name("upsert-timescale").uid("upsert-timescale"))
    # Rows are written by the upsert step; Flink still wants a sink at the end.
    written.sink_to(Sink("org.apache.flink.streaming.api.functions.sink.v2.DiscardingSink")) \
        .name("done").uid("done")
    return env


def run(settings: Settings, *, routes: Mapping[str, Topic] | None = None,
        group_id: str | None = None, checkpoints: Path | None = None,
        restore: bool = True) -> None:
    """Create the table if needed, then run the job until it is stopped."""
    from connectors.timescale import migrate

    variant, _ = migrate(settings)
    log.info("live-metrics: writing to %s (%s path)", TABLE, variant)
    port = reporter_port(settings)
    if port is not None:
        _reporter_on_classpath()
    env = build_job(settings, routes=routes, group_id=group_id, checkpoints=checkpoints,
                    restore=restore, prometheus_port=port)
    target = None
    if port is not None:
        target = metrics.publish_target(settings, "flink", "127.0.0.1", port)
        log.info("live-metrics: Flink's metrics at http://127.0.0.1:%d/metrics", port)
    try:
        env.execute(JOB_NAME)
    finally:
        if target is not None:
            target.unlink(missing_ok=True)


def _reporter_on_classpath() -> None:
    """Put Flink's Prometheus reporter (the plugin jar PyFlink ships) on the classpath of
    the JVM PyFlink is about to start. A local mini-cluster does not load plugins (its
    reporter setup finds no factories in pyflink/plugins), so the plugin folder alone
    does nothing; PyFlink's launcher appends HADOOP_CLASSPATH to the JVM's classpath,
    the documented way to add jars to it."""
    import pyflink

    jars = sorted((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus")
                  .glob("flink-metrics-prometheus-*.jar"))
    if not jars:
        raise DependencyMissing("Flink's Prometheus reporter (pyflink/plugins/metrics-prometheus)",
                                "reinstall apache-flink, or set "
                                "COSMIC_LIVE_METRICS__PROMETHEUS_REPORTER=false")
    parts = [str(jars[-1]), *filter(None, os.environ.get("HADOOP_CLASSPATH", "").split(":"))]
    os.environ["HADOOP_CLASSPATH"] = ":".join(dict.fromkeys(parts))


def reporter_port(settings: Settings) -> int | None:
    """The port for Flink's Prometheus reporter: the configured one, or a free one."""
    if not settings.live_metrics.prometheus_reporter:
        return None
    port = settings.live_metrics.prometheus_port
    if port != 0:
        return port
    # Flink binds every interface, so the port must be free on all of them.
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point for ``cosmic jobs run live-metrics`` and ``flink run -py``."""
    parser = argparse.ArgumentParser(prog="live-metrics", description=__doc__.splitlines()[0])
    parser.add_argument("--route", action="append", default=[], metavar="TOPIC=REGISTERED_TOPIC",
                        help="read TOPIC as the registered topic's events (repeatable; "
                             "default: the five event topics)")
    parser.add_argument("--group-id", default=None, help="Kafka consumer group")
    parser.add_argument("--checkpoint-dir", type=Path, default=None,
                        help="checkpoint folder (default: <state dir>/flink/live-metrics/...)")
    parser.add_argument("--no-restore", action="store_true",
                        help="start afresh instead of from the newest checkpoint")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    run(get_settings(), routes=topics.parse_routes(args.route, bare=True) or None, group_id=args.group_id,
        checkpoints=args.checkpoint_dir, restore=not args.no_restore)


if __name__ == "__main__":  # `flink run -py jobs/flink/live_metrics.py`
    main()
