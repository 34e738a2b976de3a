"""Observability's cost on the physics worker: ticks/s with metrics on vs off, same run.

One world of 1,000 bodies (a star and its asteroids) ticked as fast as the worker can,
100 commands/s arriving through Kafka. The run alternates windows: in an "on"
window the worker keeps its Prometheus metrics (tick histogram, counters) and
this process's /metrics is scraped every second, as a Prometheus at a 1 s
interval would; in an "off" window the worker's metrics are a no-op and nothing
scrapes. Alternating on one worker and one world keeps the machine's noise out
of the ratio. Goal: on / off >= 0.95.

Tracing is not implemented yet, so only metrics are measured; the gateway's
hooks (one counter update and one histogram observation per frame) are not
benchmarked here.

Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/observability.py [--windows 4] [--window-seconds 5]
"""

from __future__ import annotations

import argparse
import threading
import time
import uuid
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric

from cosmic import admin, kafka, metrics, topics
from cosmic.settings import get_settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.metrics import WorkerMetrics
from streams.worlds.worker import PhysicsWorker, WorkerConfig

GOAL = 0.95


class NoMetrics(WorkerMetrics):
    """The worker's metrics switched off: every hook the tick loop calls does nothing."""

    def tick(self, partition: int, seconds: float, period_s: float, applied: int,
             rejected: Iterable[str]) -> None:
        return None

    def reject(self, reason: str) -> None:
        return None

    def collect(self) -> Iterable[Metric]:
        return []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=4, help="windows of each kind")
    parser.add_argument("--window-seconds", type=float, default=5.0)
    parser.add_argument("--bodies", type=int, default=1000)
    args = parser.parse_args()

    settings = get_settings()
    admin.reconcile_topics(settings)
    registry = RegistryClient.from_settings(settings)
    shard = f"bench-obs-{uuid.uuid4().hex[:8]}"
    world = f"{shard}:world"
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    producer = kafka.producer(settings)
    ring = signing.KeyRing.for_settings(settings)

    def send(record: dict) -> None:
        signed = signing.sign_record(record, models.Role.OPERATOR, ring)
        producer.produce(topics.COMMANDS.name, key=world.encode(), value=encode(signed, ctx))
        producer.poll(0)

    # Ticked as fast as it can: the world's tick rate is far above what is reachable.
    for c in scenario.star_system(world, asteroids=args.bodies - 1, tick_rate_hz=10_000,
                                  snapshot_every=500):
        send(c.to_avro())
    producer.flush(30)
    stop = threading.Event()
    scraping = threading.Event()

    def players() -> None:
        stream = scenario.player_commands(world, seed=3, asteroids=args.bodies - 1,
                                          invalid_every=50)
        next_at = time.monotonic()
        while not stop.is_set():
            send(next(stream))
            next_at += 0.01
            time.sleep(max(0.0, next_at - time.monotonic()))
        producer.flush(30)

    def scraper() -> None:
        while not stop.wait(1.0):
            if scraping.is_set():
                metrics.exposition()

    worker = PhysicsWorker(settings, registry, WorkerConfig(worker_id=shard, shard=shard))
    real, off = worker.metrics, NoMetrics(shard, dict)
    threads = [threading.Thread(target=players, daemon=True),
               threading.Thread(target=scraper, daemon=True)]
    worker.start()
    for t in threads:
        t.start()
    deadline = time.monotonic() + 120
    while worker.stats.ticks < 200:  # past the first ticks' compilation and catching up
        if worker.failure() or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start ticking: {worker.failure()}")
        time.sleep(0.1)
    rates: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(2 * args.windows):
        kind = "on" if i % 2 == 0 else "off"
        worker.metrics = real if kind == "on" else off
        scraping.set() if kind == "on" else scraping.clear()
        ticks0, t0 = worker.stats.ticks, time.monotonic()
        time.sleep(args.window_seconds)
        rates[kind].append((worker.stats.ticks - ticks0) / (time.monotonic() - t0))
    stop.set()
    worker.stop()
    registry.close()
    if worker.failure():
        raise SystemExit(f"worker failed: {worker.failure()}")
    on, off_rate = (sum(v) / len(v) for v in (rates["on"], rates["off"]))
    print(f"world: {args.bodies} bodies, 100 commands/s, {args.windows} windows of "
          f"{args.window_seconds:g}s each way, alternating")
    print(f"{'':34}{'ticks/s':>10}")
    print(f"{'worker, metrics on, scraped 1/s':34}{on:>10.1f}")
    print(f"{'worker, metrics off':34}{off_rate:>10.1f}")
    print("windows (ticks/s): " + ", ".join(f"{k} {r:.1f}" for pair in zip(
        rates["on"], rates["off"], strict=True) for k, r in zip(("on", "off"), pair, strict=True)))
    print(f"on / off = {on / off_rate:.3f} (goal >= {GOAL})")
    # The same question without the machine's noise: what one tick's hooks cost, beside
    # what one tick costs.
    probe = WorkerMetrics("probe", dict)
    n = 20_000
    t0 = time.perf_counter()
    for _ in range(n):
        probe.tick(0, 0.01, 0.1, 3, ())
    hook_us = (time.perf_counter() - t0) / n * 1e6
    tick_us = 1e6 / off_rate
    print(f"metrics hooks per tick: {hook_us:.1f} us, {hook_us / tick_us:.2%} of a tick "
          f"({tick_us / 1000:.1f} ms) -> bound on / off >= {tick_us / (tick_us + hook_us):.4f}")


if __name__ == "__main__":
    main()
