"""Sink throughput: each connector's store write beside the store's own bulk path, same rows.

For ``--rows`` PhysicsTick events (already decoded, as the connector holds
them after the serde) it prints rows/s of:

- TimescaleDB: our sink's write (flatten, COPY in batches of the connector's
  batch size, offsets in the same transaction) beside ``psql \\copy`` of the
  same rows from a CSV file, into the same table of a private database;
- ClickHouse: our sink's columnar inserts beside ``clickhouse-client`` reading
  the same rows as TSV, into the same table of a private database;
- archive: our sink's Avro files (rollover bookkeeping, fsync, manifests)
  beside one ``fastavro.writer`` call over the same records,

each best of ``--repeats``, and the ratio ours / anchor (goal: >= 0.5). The
anchors read pre-rendered files, so they exclude the Python flattening ours
includes: the ratio is the fair cost of going through the connector.

Run: ``.venv/bin/python bench/sinks.py [--rows 100000] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import psycopg
from psycopg import sql
from report import result

from connectors.archive import ArchiveSink
from connectors.base import Batch, Item
from connectors.clickhouse import ClickHouseSink
from connectors.lake import RolloverPolicy
from connectors.records import TICK_COLUMNS, tick_row
from connectors.stores import clickhouse_client as ch_client
from connectors.timescale import TimescaleSink
from cosmic import topics
from cosmic.settings import Settings, get_settings
from schemas import catalog

TOPIC = "bench.ticks"
ROUTES = {TOPIC: topics.PHYSICS_TICKS}


def make_items(n: int) -> list[Item]:
    t0 = datetime.now(UTC).replace(microsecond=0)
    items = []
    for i in range(n):
        ts = t0 + timedelta(milliseconds=i)
        rec: dict[str, Any] = {"world_id": f"world-{i % 64}", "tick": i, "sim_time": i / 256,
               "command_partition": 1 if i % 7 == 0 else None,
               "first_command_offset": i if i % 7 == 0 else None,
               "last_command_offset": i + 2 if i % 7 == 0 else None,
               "n_applied": 3 if i % 7 == 0 else 0, "n_rejected": 0, "body_count": 1000 + i % 5,
               "total_energy": -0.25 - i * 1e-9, "state_hash": f"{i * 2654435761 % 2**64:016x}",
               "step_duration_us": 800 + i % 100, "ts": ts}
        items.append(Item(TOPIC, topics.PHYSICS_TICKS, i % 3, i // 3,
                          int(ts.timestamp() * 1000), None, rec))
    return items


def batches(items: list[Item], size: int) -> Iterator[Batch]:
    for start in range(0, len(items), size):
        chunk = items[start:start + size]
        positions: dict[tuple[str, int], int] = {}
        for it in chunk:
            positions[(it.topic, it.partition)] = it.offset + 1
        yield Batch(chunk, positions)


def best_of(repeats: int, prepare: Callable[[], object], run: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(repeats):
        prepare()
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best


@contextmanager
def private_postgres(settings: Settings) -> Iterator[Settings]:
    name = f"cosmic_bench_{uuid.uuid4().hex[:8]}"
    admin = settings.postgres.model_copy(update={"database": "postgres"}).dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield settings.model_copy(update={
            "postgres": settings.postgres.model_copy(update={"database": name})})
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


@contextmanager
def private_clickhouse(settings: Settings) -> Iterator[Settings]:
    name = f"cosmic_bench_{uuid.uuid4().hex[:8]}"
    cl = ch_client(settings.model_copy(update={
        "clickhouse": settings.clickhouse.model_copy(update={"database": "default"})}))
    cl.execute(f"CREATE DATABASE {name}")
    try:
        yield settings.model_copy(update={
            "clickhouse": settings.clickhouse.model_copy(update={"database": name})})
    finally:
        cl.execute(f"DROP DATABASE IF EXISTS {name}")
        cl.disconnect()


def bench_timescale(settings: Settings, items: list[Item], repeats: int, work: Path) -> tuple[float, float]:
    with private_postgres(settings) as s:
        sink = TimescaleSink(s, ROUTES, connector_id="bench")
        print(f"  timescale path: {sink.open()}")
        path = work / "ticks.csv"
        with path.open("w", newline="") as fh:
            out = csv.writer(fh)
            for it in items:
                out.writerow(["" if v is None else v.isoformat() if isinstance(v, datetime) else v
                              for v in tick_row(it.value)])
        with psycopg.connect(s.postgres.dsn, autocommit=True) as conn:
            held = {(it.topic, it.partition) for it in items}

            def truncate() -> None:
                conn.execute("TRUNCATE physics_ticks, connector_offsets")
                # The stored positions are gone: the sink must forget the ones it held (as a
                # restarted one would), or its compare-and-set fences it on the next repeat.
                sink.release(held)

            ours = best_of(repeats, truncate, lambda: [
                sink.write(b) for b in batches(items, s.connectors.batch_rows)])
            copy = (f"\\copy physics_ticks ({', '.join(TICK_COLUMNS)}) FROM '{path}' "
                    "WITH (FORMAT csv)")
            anchor = best_of(repeats, truncate, lambda: subprocess.run(
                ["psql", s.postgres.dsn, "-q", "-v", "ON_ERROR_STOP=1", "-c", copy],
                check=True))
            (count,) = conn.execute("SELECT count(*) FROM physics_ticks").fetchone() or (0,)
        sink.close()
    assert count == len(items), f"psql loaded {count} rows"
    return ours, anchor


def bench_clickhouse(settings: Settings, items: list[Item], repeats: int, work: Path) -> tuple[float, float]:
    with private_clickhouse(settings) as s:
        sink = ClickHouseSink(s, ROUTES)
        sink.open()
        path = work / "ticks.tsv"
        columns = (*TICK_COLUMNS, "_topic", "_partition", "_offset")
        with path.open("w") as fh:
            for it in items:
                row = (*tick_row(it.value), it.topic, it.partition, it.offset)
                fh.write("\t".join(
                    "\\N" if v is None else f"{v:%Y-%m-%d %H:%M:%S}" if isinstance(v, datetime)
                    else str(v) for v in row) + "\n")
        cl = ch_client(s)

        def truncate() -> None:
            cl.execute("DROP TABLE IF EXISTS physics_ticks_empty")
            cl.execute("CREATE TABLE physics_ticks_empty AS physics_ticks")
            cl.execute("DROP TABLE physics_ticks")
            cl.execute("RENAME TABLE physics_ticks_empty TO physics_ticks")

        ours = best_of(repeats, truncate, lambda: [
            sink.write(b) for b in batches(items, s.connectors.batch_rows)])
        ch = s.clickhouse

        def client_insert() -> None:
            with path.open("rb") as fh:
                subprocess.run(
                    ["clickhouse-client", "--host", ch.host, "--port", str(ch.port),
                     "--user", ch.user, "--password", ch.secret(),
                     "--database", ch.database, "--query",
                     f"INSERT INTO physics_ticks ({', '.join(columns)}) FORMAT TSV"],
                    stdin=fh, check=True)

        anchor = best_of(repeats, truncate, client_insert)
        ((count,),) = cl.execute("SELECT count() FROM physics_ticks")
        cl.disconnect()
        sink.close()
    assert count == len(items), f"clickhouse-client loaded {count} rows"
    return ours, anchor


def bench_archive(settings: Settings, items: list[Item], repeats: int, work: Path) -> tuple[float, float]:
    lakes = iter(range(10**6))
    sink_box: list[ArchiveSink] = []

    def fresh() -> None:
        s = settings.model_copy(update={"lake_dir": work / f"lake{next(lakes)}"})
        sink_box[:] = [ArchiveSink(s, ROUTES, RolloverPolicy())]
        sink_box[0].open()

    def ours() -> None:
        sink = sink_box[0]
        for b in batches(items, settings.connectors.batch_rows):
            sink.write(b)
        sink.drain()

    schema = catalog.parsed("PhysicsTick")
    records = [it.value for it in items]

    def anchor() -> None:
        with (work / f"anchor{next(lakes)}.avro").open("wb") as fh:
            fastavro.writer(fh, schema, records, codec="deflate")

    return best_of(repeats, fresh, ours), best_of(repeats, lambda: None, anchor)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    settings = get_settings()
    items = make_items(args.rows)
    results: list[tuple[str, str, float, float]] = []
    benches: list[tuple[str, str, Any]] = [
        ("timescale", "psql \\copy", bench_timescale),
        ("clickhouse", "clickhouse-client", bench_clickhouse),
        ("archive", "fastavro.writer", bench_archive),
    ]
    with tempfile.TemporaryDirectory(prefix="cosmic-bench-") as tmp:
        for name, anchor_name, fn in benches:
            print(f"{name}: {args.rows} rows, best of {args.repeats} ...")
            ours, anchor = fn(settings, items, args.repeats, Path(tmp))
            results.append((name, anchor_name, args.rows / ours, args.rows / anchor))
    print()
    print(f"{'sink':<11} {'ours rows/s':>12} {'anchor':<18} {'anchor rows/s':>13} {'ratio':>6}")
    for name, anchor_name, ours_rate, anchor_rate in results:
        ratio = ours_rate / anchor_rate
        result("sinks", f"{name} sink rows/s", f"{args.rows:,} PhysicsTick rows, best of "
               f"{args.repeats}", ours_rate, anchor_name, anchor_rate, ratio, goal=">= 0.5",
               met=ratio >= 0.5, unit="rows/s",
               line=f"{name:<11} {ours_rate:>12,.0f} {anchor_name:<18} {anchor_rate:>13,.0f} "
                    f"{ratio:>6.2f}")


if __name__ == "__main__":
    main()
