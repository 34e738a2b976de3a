"""The BI warehouse build: one UTC day of the archive lake into ClickHouse.

Run it with ``cosmic jobs run warehouse --date YYYY-MM-DD`` (which adds the
Avro/Kafka JARs and local-mode settings), or with spark-submit directly::

    COSMIC_CLICKHOUSE__HOST=127.0.0.1 spark-submit --master local[2] \\
        --jars <spark-avro...>.jar jobs/spark/warehouse.py --date 2026-11-02

The lake and the endpoints are settings (``COSMIC_LAKE_DIR``, ``COSMIC_CLICKHOUSE__*``,
``COSMIC_KAFKA__*``), read in the driver like everywhere else.

What a build of day D does:

1. Spark reads the lake files of D and its neighbours (committed files only:
   those with a manifest) and keeps the events whose own time falls in D;
   sessions also look 30 minutes back and a day ahead, to know where they
   start and end. ``--source kafka`` reads the topics instead.
2. Facts: commands per player per world per hour, ticks per world per hour
   with step-duration percentiles, ecosystem and civilization events (the
   seeding commands join the ecosystem facts as ``SpeciesSeeded``), sessions.
3. For every table, D's partition is dropped and D's rows inserted (facts
   from Spark, then the marts computed in ClickHouse from the facts; see
   :mod:`jobs.spark.marts`). ClickHouse has no transactions: a build that
   dies midway leaves D partial, and running D again repairs it.

The rows reach ClickHouse from the Spark driver (``toLocalIterator``) in
columnar batches: facts are aggregates, orders of magnitude smaller than the
events, and executors then need nothing but Spark.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.errors import LakeError
from connectors.lake import read_manifest, topic_dir
from cosmic import kafka, topics
from cosmic.errors import ConfigError, CosmicError, DependencyMissing
from cosmic.settings import Settings, get_settings
from cosmic.timeutil import span_ms
from jobs.spark import marts
from jobs.spark.definitions import SESSION_GAP
from schemas import catalog

log = logging.getLogger("cosmic.jobs.warehouse")

APP_NAME = "cosmic-warehouse"
# Spark settings for one machine: tiny shuffles (facts are small), no UI port, UTC everywhere.
LOCAL_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
    "spark.ui.enabled": "false",
    "spark.driver.memory": "1g",
    "spark.sql.avro.compression.codec": "deflate",
    # The job lists the lake files itself (those with manifests); past 32 paths Spark would
    # start a distributed job per read just to list them again (~1 s each).
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
}
INSERT_BATCH = 50_000

FACTS = ("wh_player_hourly", "wh_world_ticks_hourly", "wh_ecosystem_events",
         "wh_civilization_events", "wh_sessions")
TABLES = FACTS + tuple(marts.MARTS)

# Every branch the catalog schemas have: a list kept here would miss the next one added.
_COMMAND_TYPES = catalog.union_branches("PlayerCommand", "command")
_ECO_TYPES = catalog.union_branches("EcosystemEvent", "event")
_CIV_TYPES = catalog.union_branches("CivilizationEvent", "event")


def _union_type(column: str, names: Sequence[str]) -> str:
    """SQL naming which branch of an Avro union of records a row holds."""
    whens = " ".join(f"WHEN {column}.member_{n} IS NOT NULL THEN '{n}'" for n in names)
    return f"CASE {whens} ELSE '' END"


@dataclass(frozen=True)
class WarehouseJob:
    """A configured build; :meth:`run` builds one day with a Spark session."""

    settings: Settings  # the endpoints: ClickHouse to write, Kafka with --source kafka
    lake: Path
    source: str = "lake"
    session_gap: timedelta = SESSION_GAP
    # Kafka source: Kafka topic -> the declared topic it carries, where they differ.
    routes: dict[str, topics.Topic] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)

    # -- input -----------------------------------------------------------------------------

    def lake_files(self, topic: str, day: date) -> list[str]:
        """Committed files of ``topic`` in the folders of ``day`` and its neighbours.

        Folders are named by Kafka time, events are filtered by their own time:
        a file started at 23:59 holds records of the next day, hence the neighbours.
        """
        out: list[str] = []
        for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
            for manifest in sorted(topic_dir(self.lake, topic).glob(
                    f"date={d.isoformat()}/hour=*/part-*.json")):
                m = read_manifest(manifest)
                data = manifest.with_name(m.file)
                if not data.exists():
                    raise LakeError(f"{manifest} names {m.file}, which is missing")
                out.append(str(data))
        return out

    def read(self, spark: Any, topic: topics.Topic, day: date, empty_dir: Path) -> Any:
        """The topic's events around ``day`` as a DataFrame with the catalog schema."""
        schema = catalog.schema_text(topic.value)
        if self.source == "kafka":
            return self._read_kafka(spark, topic, schema)
        files = self.lake_files(topic.name, day)
        reader = (spark.read.format("avro").option("avroSchema", schema)
                  # member_<RecordName> fields: robust to a union gaining a branch.
                  .option("enableStableIdentifiersForUnionType", "true"))
        if not files:
            # spark-avro takes the columns from avroSchema, so an empty folder gives an
            # empty frame with the right columns (no files: Spark refuses to infer any).
            return reader.load(str(empty_dir))
        return reader.load(files)

    def kafka_topic(self, topic: topics.Topic) -> str:
        """The Kafka topic(s), comma-separated, that carry the declared ``topic``."""
        routed = [name for name, carries in self.routes.items() if carries == topic]
        return ",".join(sorted(routed)) or topic.name

    def _read_kafka(self, spark: Any, topic: topics.Topic, schema: str) -> Any:
        from pyspark.sql.avro.functions import from_avro
        from pyspark.sql.functions import col, expr

        reader = (spark.read.format("kafka")
                  .option("kafka.bootstrap.servers", self.settings.kafka.bootstrap_servers))
        # The source's Kafka client logs in as this process's identity (the jobs user).
        for key, value in kafka.java_security_properties(self.settings).items():
            reader = reader.option(f"kafka.{key}", value)
        raw = (reader
               .option("subscribe", self.kafka_topic(topic))
               .option("startingOffsets", "earliest").option("endingOffsets", "latest")
               .option("isolation.level", "read_committed")
               .load())
        # Confluent framing: magic byte and 4-byte schema id before the Avro body. The body
        # is read with the catalog schema, so this source assumes the topic was written with
        # it (the lake keeps each file's writer schema and has no such limit).
        body = expr("substring(value, 6, length(value) - 5)")
        opts = {"mode": "PERMISSIVE", "enableStableIdentifiersForUnionType": "true"}
        return (raw.select(from_avro(body, schema, opts).alias("e"))
                .where(col("e").isNotNull()).select("e.*"))

    # -- facts -----------------------------------------------------------------------------

    def facts(self, spark: Any, day: date, empty_dir: Path) -> dict[str, Any]:
        """Day ``day``'s fact DataFrames, by table (lazy: read while ``empty_dir`` exists)."""
        lo = f"TIMESTAMP '{day.isoformat()} 00:00:00'"
        hi = f"TIMESTAMP '{(day + timedelta(days=1)).isoformat()} 00:00:00'"
        gap_ms = span_ms(self.session_gap)
        for topic, view in ((topics.COMMANDS, "commands_raw"), (topics.PHYSICS_TICKS, "ticks_raw"),
                            (topics.ECOSYSTEM_EVENTS, "eco_raw"),
                            (topics.CIVILIZATION_EVENTS, "civ_raw")):
            self.read(spark, topic, day, empty_dir).createOrReplaceTempView(view)
        spark.sql(f"""
            SELECT command_id, player_id, world_id, received_ts AS ts,
                   unix_millis(received_ts) AS ts_ms,
                   {_union_type('command', _COMMAND_TYPES)} AS command_type,
                   command.member_SeedSpecies AS seed
            FROM commands_raw
        """).cache().createOrReplaceTempView("commands_all")
        # Cached: three facts read it. Slim on purpose (the type and the one branch a fact
        # needs), since caching the whole command union costs more than reading it again.
        spark.sql(f"SELECT * FROM commands_all WHERE ts >= {lo} AND ts < {hi}"
                  ).createOrReplaceTempView("commands_day")
        counts = ", ".join(
            f"count_if(command_type = '{t}') AS {snake}" for t, snake in (
                ("SpawnBody", "spawn_body"), ("ApplyImpulse", "apply_impulse"),
                ("RemoveBody", "remove_body"), ("SeedSpecies", "seed_species"),
                ("FoundCivilization", "found_civilization")))
        out: dict[str, Any] = {}
        out["wh_player_hourly"] = spark.sql(f"""
            SELECT to_date(ts) AS date, unix_seconds(date_trunc('HOUR', ts)) AS hour,
                   world_id, player_id, count(*) AS commands, {counts},
                   count_if(command_type NOT IN ('SpawnBody', 'ApplyImpulse', 'RemoveBody',
                            'SeedSpecies', 'FoundCivilization')) AS other_commands,
                   min(ts_ms) AS first_ms, max(ts_ms) AS last_ms
            FROM commands_day
            GROUP BY 1, 2, world_id, player_id
        """)
        out["wh_world_ticks_hourly"] = spark.sql(f"""
            SELECT to_date(ts) AS date, unix_seconds(date_trunc('HOUR', ts)) AS hour, world_id,
                   count(*) AS ticks, min(tick) AS first_tick, max(tick) AS last_tick,
                   CAST(max_by(body_count, tick) AS BIGINT) AS bodies_last,
                   CAST(max(body_count) AS BIGINT) AS bodies_max,
                   CAST(sum(n_applied) AS BIGINT) AS commands_applied,
                   CAST(sum(n_rejected) AS BIGINT) AS commands_rejected,
                   max_by(total_energy, tick) AS energy_last,
                   percentile(step_duration_us, 0.5) AS step_us_p50,
                   percentile(step_duration_us, 0.9) AS step_us_p90,
                   percentile(step_duration_us, 0.99) AS step_us_p99,
                   max(step_duration_us) AS step_us_max
            FROM ticks_raw
            WHERE ts >= {lo} AND ts < {hi}
            GROUP BY 1, 2, world_id
        """)
        out["wh_ecosystem_events"] = spark.sql(f"""
            SELECT to_date(ts) AS date, unix_seconds(ts) AS ts, unix_millis(ts) AS ts_ms,
                   world_id, planet_id, tick, {_union_type('event', _ECO_TYPES)} AS event_type,
                   coalesce(event.member_PopulationChanged.species_id,
                            event.member_SpeciesExtinct.species_id,
                            event.member_SpeciesEmerged.species_id) AS species_id,
                   event.member_SpeciesEmerged.parent_species_id AS parent_species_id,
                   coalesce(event.member_PopulationChanged.current,
                            event.member_SpeciesEmerged.population) AS population,
                   event.member_PopulationChanged.previous AS previous_population,
                   event.member_SpeciesEmerged.traits.diet AS diet,
                   coalesce(event.member_SpeciesExtinct.cause,
                            event.member_PlanetDestroyed.cause) AS cause,
                   CAST(NULL AS STRING) AS player_id, event_id
            FROM eco_raw
            WHERE ts >= {lo} AND ts < {hi}
            UNION ALL
            SELECT to_date(ts), unix_seconds(ts), ts_ms, world_id,
                   seed.planet_id, CAST(-1 AS BIGINT), 'SpeciesSeeded',
                   seed.species_id, CAST(NULL AS BIGINT),
                   seed.initial_population, CAST(NULL AS BIGINT),
                   seed.traits.diet, CAST(NULL AS STRING),
                   player_id, command_id
            FROM commands_day
            WHERE command_type = 'SeedSpecies'
        """)
        out["wh_civilization_events"] = spark.sql(f"""
            SELECT to_date(ts) AS date, unix_seconds(ts) AS ts, unix_millis(ts) AS ts_ms,
                   world_id, planet_id, civilization_id, tick,
                   {_union_type('event', _CIV_TYPES)} AS event_type,
                   event.member_CivilizationFounded.name AS name,
                   event.member_CivilizationFounded.founder_player_id AS founder_player_id,
                   event.member_CivilizationFounded.species_id AS species_id,
                   event.member_TechAdvanced.tech AS tech,
                   event.member_TechAdvanced.level AS level,
                   event.member_ResourceUsed.resource AS resource,
                   event.member_ResourceUsed.amount AS amount,
                   event.member_ResourceUsed.remaining AS remaining,
                   event.member_CivilizationCollapsed.reason AS reason,
                   event.member_CivilizationCollapsed.peak_population AS peak_population,
                   event_id
            FROM civ_raw
            WHERE ts >= {lo} AND ts < {hi}
        """)
        # Sessions (rules.split_sessions at scale): a command more than the gap after the
        # player's previous one starts a session; a running sum of those starts numbers them.
        # The window reaches back one gap (is D's first command a continuation?) and to the
        # end of the next day (where do D's last sessions end?).
        out["wh_sessions"] = spark.sql(f"""
            SELECT to_date(timestamp_millis(start_ms)) AS date, player_id,
                   start_ms div 1000 AS session_start,
                   end_ms div 1000 AS session_end,
                   start_ms, end_ms, (end_ms - start_ms) / 1000.0 AS length_s,
                   commands, worlds
            FROM (
                SELECT player_id, sid, min(ts_ms) AS start_ms, max(ts_ms) AS end_ms,
                       count(*) AS commands, count(DISTINCT world_id) AS worlds
                FROM (
                    SELECT player_id, world_id, ts_ms,
                           sum(is_start) OVER (PARTITION BY player_id ORDER BY ts_ms, command_id
                                               ROWS UNBOUNDED PRECEDING) AS sid
                    FROM (
                        SELECT player_id, world_id, ts_ms, command_id,
                               CASE WHEN ts_ms - lag(ts_ms) OVER (
                                        PARTITION BY player_id ORDER BY ts_ms, command_id
                                    ) <= {gap_ms} THEN 0 ELSE 1 END AS is_start
                        FROM commands_all
                        WHERE ts_ms >= unix_millis({lo}) - {gap_ms}
                          AND ts < {hi} + INTERVAL 1 DAY
                    )
                )
                GROUP BY player_id, sid
            )
            WHERE start_ms >= unix_millis({lo}) AND start_ms < unix_millis({hi})
        """)
        return out

    # -- output ----------------------------------------------------------------------------

    def run(self, spark: Any, day: date) -> dict[str, int]:
        """Build ``day``: replace its partition of every warehouse table; rows per table."""
        from connectors import clickhouse, stores

        settings = self.settings
        # Idempotent, and the job then needs nothing prepared: the tables follow the code.
        for line in clickhouse.migrate(settings):
            log.info("clickhouse migrations: %s", line)
        cl = stores.clickhouse_client(settings)
        empty = tempfile.TemporaryDirectory(prefix="cosmic-warehouse-")
        try:
            # Lazy: Spark computes each fact while write_day inserts it.
            facts = {table: _batches(df, INSERT_BATCH)
                     for table, df in self.facts(spark, day, Path(empty.name)).items()}
            rows = write_day(cl, day, facts)
        finally:
            cl.disconnect()
            empty.cleanup()
            # Day after day in one session: the cached commands of this day are done with.
            spark.catalog.clearCache()
        self.rows.update(rows)
        return rows


Batches = Iterator[tuple[list[str], list[tuple[Any, ...]]]]


def write_day(cl: Any, day: date, facts: Mapping[str, Batches]) -> dict[str, int]:
    """Every ClickHouse statement of a build of ``day``: each fact's partition replaced by
    its batches of (columns, rows), then each mart's; rows per table.

    ``cl`` is a clickhouse-driver client (or anything with its ``execute``): the facts
    come from Spark in production, from plain rows in the dialect tests.
    """
    from connectors.stores import clickhouse_execute

    rows: dict[str, int] = {}
    for table, batches in facts.items():
        t0 = time.perf_counter()
        rows[table] = _replace(cl, table, day, batches)
        log.info("%s %s: %d rows in %.2fs", day, table, rows[table], time.perf_counter() - t0)
    for table, statement in marts.MARTS.items():
        _drop(cl, table, day)
        clickhouse_execute(cl, statement, {"day": day.isoformat()})
        rows[table] = clickhouse_execute(
            cl, f"SELECT count() FROM {table} WHERE date = %(day)s", {"day": day})[0][0]
    return rows


def _drop(cl: Any, table: str, day: date) -> None:
    from connectors.stores import clickhouse_execute

    # A partition that does not exist yet is no error: nothing to replace.
    clickhouse_execute(cl, f"ALTER TABLE {table} DROP PARTITION {day:%Y%m%d}")


def _replace(cl: Any, table: str, day: date, batches: Batches) -> int:
    from connectors.stores import clickhouse_execute

    _drop(cl, table, day)
    n = 0
    for columns, rows in batches:
        clickhouse_execute(cl, f"INSERT INTO {table} ({', '.join(columns)}) VALUES",
                           [list(c) for c in zip(*rows, strict=True)], columnar=True)
        n += len(rows)
    return n


def _batches(df: Any, size: int) -> Batches:
    columns = list(df.columns)
    batch: list[tuple[Any, ...]] = []
    # Prefetch: the next partition is computed while this one is inserted.
    for row in df.toLocalIterator(prefetchPartitions=True):
        batch.append(tuple(row))
        if len(batch) >= size:
            yield columns, batch
            batch = []
    if batch:
        yield columns, batch


def build_job(settings: Settings | None = None, *, source: str = "lake",
              session_gap: timedelta = SESSION_GAP,
              routes: Mapping[str, topics.Topic] | None = None) -> WarehouseJob:
    """The warehouse job over ``settings``' lake and endpoints (the process's by default)."""
    settings = settings or get_settings()
    if source not in ("lake", "kafka"):
        raise ConfigError(f"source must be 'lake' or 'kafka', not {source!r}")
    return WarehouseJob(settings=settings, lake=settings.lake_dir, source=source,
                        session_gap=session_gap, routes=dict(routes or {}))


def spark_session(master: str | None = None, conf: dict[str, str] | None = None) -> Any:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise DependencyMissing("pyspark", "pip install 'cosmic-garden[spark]'") from None
    builder = SparkSession.builder.appName(APP_NAME)
    if master:
        builder = builder.master(master)
    for k, v in {**LOCAL_CONF, **(conf or {})}.items():
        builder = builder.config(k, v)
    return builder.getOrCreate()


def _day(text: str) -> date:
    """A UTC day, YYYY-MM-DD, or ``yesterday``: a cron schedule (the Spark Operator's
    ScheduledSparkApplication) cannot compute a date, so the nightly run names it so."""
    if text == "yesterday":
        return (datetime.now(UTC) - timedelta(days=1)).date()
    return date.fromisoformat(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """What to build. Where (the lake, ClickHouse, Kafka) is the settings' business: they
    reach the driver through its environment (``cosmic.settings.child_env``)."""
    p = argparse.ArgumentParser(prog="warehouse", description=__doc__.split("\n")[0])
    p.add_argument("--date", required=True, type=_day,
                   help="UTC day YYYY-MM-DD, or 'yesterday'")
    p.add_argument("--end-date", type=date.fromisoformat, default=None,
                   help="build every day from --date to this one, in order")
    p.add_argument("--source", choices=("lake", "kafka"), default="lake")
    p.add_argument("--route", action="append", default=[], metavar="TOPIC=REGISTERED_TOPIC",
                   help="with --source kafka: read Kafka topic TOPIC as the registered "
                        "topic's records (repeatable)")
    p.add_argument("--session-gap-minutes", type=float,
                   default=SESSION_GAP.total_seconds() / 60)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """spark-submit entry point: build the days asked for; exit 1 with the reason on failure."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    routes = topics.parse_routes(args.route)  # an unknown name fails here, not as an empty build
    job = build_job(get_settings(), source=args.source,
                    session_gap=timedelta(minutes=args.session_gap_minutes), routes=routes)
    end = args.end_date or args.date
    spark = spark_session()
    try:
        day = args.date
        while day <= end:
            t0 = time.perf_counter()
            rows = job.run(spark, day)
            took = time.perf_counter() - t0
            print(f"warehouse {day}: built in {took:.1f}s: "
                  + ", ".join(f"{t}={n}" for t, n in rows.items()), flush=True)
            day += timedelta(days=1)
    except CosmicError as exc:
        print(f"warehouse: error: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
