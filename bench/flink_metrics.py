"""Live metrics throughput: the PyFlink job beside a plain Python consumer, same windows.

Produces ``--events`` wire-format records (ticks and commands of ``--worlds``
worlds, 20 ticks and 5 commands per world per second of event time) to two
private topics, then measures, in the same run:

- the job (``cosmic jobs run live-metrics`` in PyFlink's mini-cluster, routed
  to those topics, parallelism 1): events/s from its first checkpointed
  progress to the last window in TimescaleDB, so the JVM's start-up is left out
  (it is printed apart);
- the anchor: one confluent-kafka consumer in this process that decodes with the
  same serde, keeps the same windows (same watermark rule, same
  :func:`jobs.flink.windows.window_metrics`) and upserts the same rows.

It prints both and the ratio job / anchor.

Run: ``.venv/bin/python bench/flink_metrics.py [--events 100000] [--worlds 8]``
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from confluent_kafka import TopicPartition
from confluent_kafka.admin import NewTopic
from report import result

from cosmic import kafka, topics
from cosmic.settings import Settings, get_settings
from jobs.flink import windows as W
from jobs.flink.decode import EventDecoder
from jobs.flink.live_metrics import UPSERT
from jobs.process import JobProcess
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

WINDOW_MS, OOO_MS, LATENESS_MS = 10_000, 1_000, 5_000


def _produce(settings: Settings, names: dict[str, str], n: int, worlds: int, t0: int) -> int:
    """The scripted load; returns the event time of the last window's end."""
    with RegistryClient.from_settings(settings) as registry:
        tick = AvroSerializer(registry, "PhysicsTick")
        cmd = AvroSerializer(registry, "PlayerCommand")
        producer = kafka.producer(settings, **{"linger.ms": 50})
        ticks_ctx, cmd_ctx = SerializationContext(names["ticks"]), SerializationContext(names["commands"])
        i, ms = 0, 0
        while i < n:
            for w in range(worlds):
                world = f"bench-{w}"
                ts = datetime.fromtimestamp((t0 + ms) / 1000, tz=UTC)
                producer.produce(names["ticks"], key=world.encode(), value=tick({
                    "world_id": world, "tick": ms // 50, "sim_time": 0.0, "command_partition": None,
                    "first_command_offset": None, "last_command_offset": None,
                    "n_applied": i % 3, "n_rejected": int(i % 11 == 0), "body_count": 9,
                    "total_energy": -1.0, "state_hash": "00", "step_duration_us": 50 + i % 900,
                    "ts": ts}, ticks_ctx))
                i += 1
                if ms % 200 == 0:
                    producer.produce(names["commands"], key=world.encode(), value=cmd({
                        "command_id": uuid.uuid4(), "player_id": f"p{i % 13}", "world_id": world,
                        "client_ts": ts, "received_ts": ts,
                        "command": ("io.cosmicgarden.RemoveBody", {"body_id": i})}, cmd_ctx))
                    i += 1
                producer.poll(0)
            ms += 50
        # One tick per world far enough ahead that every scripted window is final.
        last_end = W.window_start(ms, WINDOW_MS) + WINDOW_MS
        closer = datetime.fromtimestamp((t0 + last_end + OOO_MS + LATENESS_MS + 1) / 1000, tz=UTC)
        for w in range(worlds):
            producer.produce(names["ticks"], key=f"bench-{w}".encode(), value=tick({
                "world_id": f"bench-{w}", "tick": 0, "sim_time": 0.0, "command_partition": None,
                "first_command_offset": None, "last_command_offset": None, "n_applied": 0,
                "n_rejected": 0, "body_count": 0, "total_energy": 0.0, "state_hash": "00",
                "step_duration_us": 1, "ts": closer}, ticks_ctx))
        producer.flush(60)
    return t0 + W.window_start(ms - 1, WINDOW_MS)


def _last_window_written(settings: Settings, start_ms: int, worlds: int) -> bool:
    with psycopg.connect(settings.postgres.dsn) as conn:
        row = conn.execute(
            "SELECT count(DISTINCT world_id) FROM live_metrics WHERE name = 'physics.ticks_per_s' "
            "AND ts = %s AND world_id LIKE 'bench-%%'",
            (datetime.fromtimestamp(start_ms / 1000, tz=UTC),)).fetchone()
    return bool(row and row[0] == worlds)


def _committed(settings: Settings, group: str, names: list[str]) -> int:
    consumer = kafka.consumer(settings, group)
    try:
        tps = consumer.committed([TopicPartition(n, 0) for n in names], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def bench_job(settings: Settings, names: dict[str, str], n: int, last_start: int,
              worlds: int) -> tuple[float, float]:
    group = f"bench-live-{uuid.uuid4().hex[:8]}"
    routes = ["--route", f"{names['ticks']}={topics.PHYSICS_TICKS.name}",
              "--route", f"{names['commands']}={topics.COMMANDS.name}"]
    with tempfile.TemporaryDirectory() as tmp:
        job = JobProcess("live-metrics", Path(tmp) / "job.log",
                         [*routes, "--group-id", group, "--checkpoint-dir", f"{tmp}/chk"],
                         env={"COSMIC_LIVE_METRICS__WINDOW_MS": str(WINDOW_MS),
                              "COSMIC_LIVE_METRICS__OUT_OF_ORDERNESS_MS": str(OOO_MS),
                              "COSMIC_LIVE_METRICS__ALLOWED_LATENESS_MS": str(LATENESS_MS),
                              "COSMIC_LIVE_METRICS__CHECKPOINT_INTERVAL_MS": "1000"})
        started = time.monotonic()
        job.start()
        try:
            first_t, first_n = None, 0
            while not _last_window_written(settings, last_start, worlds):
                if (err := job.failure()) is not None:
                    raise SystemExit(f"job failed: {err}")
                if first_t is None and (c := _committed(settings, group, list(names.values()))):
                    first_t, first_n = time.monotonic(), c
                time.sleep(0.25)
            done = time.monotonic()
        finally:
            job.stop()
    if first_t is None or first_n >= n:
        raise SystemExit("the job finished before its first checkpoint: raise --events")
    return (n - first_n) / (done - first_t), first_t - started


def bench_plain(settings: Settings, names: dict[str, str]) -> tuple[float, int]:
    """One consumer: decode, same windows and watermark rule, same upserts."""
    registry = RegistryClient.from_settings(settings)
    decode = EventDecoder(registry, {names["ticks"]: topics.PHYSICS_TICKS,
                                     names["commands"]: topics.COMMANDS})
    consumer = kafka.reader(settings, "bench-plain")
    consumer.assign([TopicPartition(n, 0, 0) for n in names.values()])
    ends = {n: consumer.get_watermark_offsets(TopicPartition(n, 0), timeout=10)[1]
            for n in names.values()}
    conn = psycopg.connect(settings.postgres.dsn, autocommit=True)
    open_windows: dict[str, dict[int, list[W.Event]]] = {}
    gauges: dict[str, W.Gauges] = {}
    watermark, seen, written = -(2**63), 0, 0
    t0 = time.monotonic()
    try:
        done: dict[str, int] = dict.fromkeys(ends, 0)
        while any(done[t] < ends[t] for t in ends):
            for msg in consumer.consume(1000, timeout=1.0):
                if msg.error():
                    continue
                topic = msg.topic() or ""
                done[topic] = (msg.offset() or 0) + 1
                for ev in decode(topic, msg.value()):
                    seen += 1
                    start = W.window_start(ev.ts_ms, WINDOW_MS)
                    if W.is_too_late(ev.ts_ms, watermark, WINDOW_MS, LATENESS_MS):
                        continue
                    open_windows.setdefault(ev.world_id, {}).setdefault(start, []).append(ev)
                    watermark = max(watermark, ev.ts_ms - OOO_MS)
            rows: list[Any] = []
            for world, by_start in open_windows.items():
                g = gauges.setdefault(world, W.Gauges())
                for start in sorted(by_start):
                    if start + WINDOW_MS - 1 > watermark:
                        break
                    g.apply(by_start[start])
                    rows.extend(W.window_metrics(world, start, WINDOW_MS, by_start.pop(start), g))
            if rows:
                with conn.transaction(), conn.cursor() as cur:
                    cur.executemany(UPSERT, [
                        (datetime.fromtimestamp(r.window_start_ms / 1000, tz=UTC),
                         datetime.fromtimestamp(r.window_end_ms / 1000, tz=UTC),
                         r.name, r.world_id, r.label, r.value) for r in rows])
                written += len(rows)
    finally:
        conn.close()
        consumer.close()
        registry.close()
    return seen / (time.monotonic() - t0), written


def _clear(settings: Settings) -> None:
    with psycopg.connect(settings.postgres.dsn) as conn:
        conn.execute("DELETE FROM live_metrics WHERE world_id LIKE 'bench-%%'")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--worlds", type=int, default=8)
    args = parser.parse_args()
    # A SIGTERM (timeout, Ctrl-C in a pipeline) must still reach the finally blocks that
    # stop the job's process group: no JVM left behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = get_settings()
    admin = kafka.admin(settings)
    suffix = uuid.uuid4().hex[:8]
    names = {"ticks": f"bench.live.ticks.{suffix}", "commands": f"bench.live.commands.{suffix}"}
    for fut in admin.create_topics([NewTopic(n, 1, 1) for n in names.values()]).values():
        fut.result(30)
    try:
        # An hour ago: event time is what matters, and today's partitions exist.
        t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 3_600_000
        _clear(settings)
        last_start = _produce(settings, names, args.events, args.worlds, t0)
        print(f"produced {args.events} events for {args.worlds} worlds")
        # The job first: it is timed to its last window's rows, which the anchor also writes.
        job, startup = bench_job(settings, names, args.events, last_start, args.worlds)
        print(f"PyFlink job           : {job:10,.0f} events/s  (after {startup:.1f} s start-up)")
        plain, rows = bench_plain(settings, names)
        print(f"plain Python consumer : {plain:10,.0f} events/s  ({rows} rows upserted)")
        result("flink_metrics", "live-metrics job events/s, same windows",
               f"{args.events:,} records, {args.worlds} worlds, parallelism 1", job,
               "plain Python consumer", plain, job / plain, goal=">= 1x (issue 19)",
               met=job / plain >= 1, unit="events/s",
               line=f"ratio job / plain     : {job / plain:10.2f}")
    finally:
        _clear(settings)
        for fut in admin.delete_topics(list(names.values())).values():
            fut.result(30)


if __name__ == "__main__":
    main()
