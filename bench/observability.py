"""Observability's cost: worker ticks/s and gateway submits/s with metrics and tracing on
vs off, same run.

A physics worker and a gateway run in this process on the local stack. One world of
1,000 bodies (a star and its asteroids) is ticked as fast as the worker can, and a
subscriber watches it through the gateway. The run alternates windows: in an "on"
window the worker and the gateway keep their Prometheus metrics, this process's
/metrics is scraped every second (as a Prometheus at a 1 s interval would), and
every command is traced (cosmic/tracing.py: five spans a command, exported in
batches over OTLP/HTTP to a sink in this process, so the protobuf encoding and the
requests are paid; an "on" window ends with its spans exported, inside its time);
in an "off" window metrics are no-ops, nothing scrapes and no component has a
tracer. Alternating on one worker, one gateway and one world, the pairs of windows
in turn on-off and off-on, keeps the machine's noise and drift out of the ratios.

1. Worker: ticks/s while 100 commands/s arrive through the gateway.
2. Gateway: submits/s that ``--submitters`` concurrent gRPC clients get, each
   awaiting its reply (the append to Kafka) before its next submit.

Goal: on / off >= 0.95 for both. Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/observability.py [--windows 8] [--window-seconds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from prometheus_client.metrics_core import Metric
from pydantic import TypeAdapter
from report import result

from cosmic import admin, kafka, metrics, topics, tracing
from cosmic.settings import Settings, get_settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.gateway import GatewayService, build_gateway
from streams.gateway.client import GrpcClient, subscribe_request
from streams.gateway.metrics import GatewayMetrics
from streams.gateway.testing import stack_token
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.metrics import WorkerMetrics
from streams.worlds.worker import PhysicsWorker, WorkerConfig

GOAL = 0.95
NUDGE: dict[str, Any] = {"type": "ApplyImpulse", "body_id": 950_001,
                         "dv": {"x": 0.0, "y": 0.0, "z": 1e-9}}


class NoMetrics(WorkerMetrics):
    """The worker's metrics switched off: every hook the tick loop calls does nothing."""

    def tick(self, partition: int, seconds: float, period_s: float, applied: int,
             rejected: Iterable[str]) -> None:
        return None

    def reject(self, reason: str) -> None:
        return None

    def collect(self) -> Iterable[Metric]:
        return []


class NoGatewayMetrics(GatewayMetrics):
    """The gateway's metrics switched off: the per-frame and per-request hooks do nothing."""

    def sent(self, size: int, produced_ms: int, deferred: int) -> None:
        return None

    def decided(self, face: str, action: str, outcome: str) -> None:
        return None

    def collect(self) -> Iterable[Metric]:
        return []


class OtlpSink:
    """An OTLP/HTTP endpoint that takes every export and keeps only its size."""

    def __init__(self) -> None:
        sink = self
        self.requests = self.bytes = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(size)
                sink.requests += 1
                sink.bytes += size
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/traces"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Switch:
    """Turns the worker's and the gateway's metrics and tracing on or off together."""

    def __init__(self, worker: PhysicsWorker, gateway: GatewayService, traced: bool = True
                 ) -> None:
        core, reader, commands = gateway.core, gateway.reader, gateway.commands
        assert core is not None and reader is not None and commands is not None
        self.worker, self.core, self.reader, self.commands = worker, core, reader, commands
        self.tracers = worker.tracer, core.tracer, reader.tracer, commands.tracer
        assert all(t is not None for t in self.tracers), "tracing was not installed first"
        self.traced = traced
        self.metrics = worker.metrics, core.metrics
        self.no_metrics = (NoMetrics(worker.config.worker_id, dict),
                           NoGatewayMetrics(lambda: 0, lambda: 0))
        self.scraping = threading.Event()

    def set(self, on: bool) -> None:
        w, c, r, cl = self.tracers if on and self.traced else (None, None, None, None)
        self.worker.tracer, self.core.tracer, self.reader.tracer, self.commands.tracer = w, c, r, cl
        self.worker.metrics, self.core.metrics = self.metrics if on else self.no_metrics
        self.core.guard.on_decision = self.core.metrics.decided
        self.scraping.set() if on else self.scraping.clear()


def open_world(settings: Settings, registry: RegistryClient, world: str, bodies: int) -> None:
    """The world's opening, as an operator tool sends it (straight to Kafka)."""
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    ring = signing.KeyRing.for_settings(settings)
    producer = kafka.producer(settings)
    # Ticked as fast as it can: the world's tick rate is far above what is reachable.
    for c in scenario.star_system(world, asteroids=bodies - 1, tick_rate_hz=10_000,
                                  snapshot_every=500):
        signed = signing.sign_record(c.to_avro(), models.Role.OPERATOR, ring)
        producer.produce(topics.COMMANDS.name, key=world.encode(), value=encode(signed, ctx))
    producer.flush(30)


Rates = dict[str, list[tuple[float, float]]]


def order(windows: int) -> list[str]:
    """The windows' kinds: pairs in turn on-off, off-on (ABBA), so that a drift of the
    machine over the run (another process starting, caches warming) weighs on both
    kinds alike instead of always on the kind that goes first."""
    return [k for i in range(windows) for k in (("on", "off") if i % 2 == 0 else ("off", "on"))]


async def alternate(windows: int, seconds: float, switch: Switch,
                    measure: Callable[[], float], flush: Callable[[], object]) -> Rates:
    """Per window, "on" and "off" in turn: the rate of ``measure`` (a running count) and
    this process's CPU seconds per unit of it (less at the mercy of other processes).
    An "on" window ends with its spans exported (``flush``, inside the window's time),
    so that an "off" window never pays for the export of spans made before it."""
    rates: Rates = {"on": [], "off": []}
    for kind in order(windows):
        switch.set(kind == "on")
        await asyncio.sleep(0.3)  # what was in flight settles under the new setting
        flush()  # spans made while settling are not this window's
        count0, t0, cpu0 = measure(), time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        n = measure() - count0
        if kind == "on":
            await asyncio.to_thread(flush)
        rates[kind].append((n / (time.monotonic() - t0), (time.process_time() - cpu0) / max(n, 1)))
    return rates


async def bench(address: str, world: str, switch: Switch, args: argparse.Namespace,
                flush: Callable[[], object]) -> tuple[Rates, Rates]:
    settings = get_settings()
    player = f"bench-{uuid.uuid4().hex[:6]}"
    clients = [GrpcClient(address, token=stack_token(settings, player))
               for _ in range(args.submitters)]
    watcher = GrpcClient(address, token=stack_token(settings, f"{player}-watcher"))
    for _ in range(600):
        if world in [w.world_id for w in (await watcher.worlds()).worlds]:
            break
        await asyncio.sleep(0.1)
    else:
        raise SystemExit("the gateway never saw the world")
    body = NUDGE["body_id"]
    spawn = {"type": "SpawnBody", "body_id": body, "kind": "ASTEROID", "mass": 1e-12,
             "radius": 5e-7, "position": {"x": 1.5, "y": 0.0, "z": 0.0},
             "velocity": {"x": 0.0, "y": 0.6, "z": 0.0}}
    nudge = NUDGE
    await clients[0].outcome((await clients[0].submit(world, spawn)).command_id, timeout=180)
    submitted = 0
    stop = asyncio.Event()

    async def watch() -> None:
        async for _ in watcher.frames(subscribe_request(world, (0.0, 0.0, 0.0), 100.0)):
            pass

    async def steady(rate_hz: float) -> None:
        next_at = time.monotonic()
        while not stop.is_set():
            await clients[0].submit(world, nudge)
            next_at += 1 / rate_hz
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def flat_out(client: GrpcClient) -> None:
        nonlocal submitted
        while not stop.is_set():
            await client.submit(world, nudge)
            submitted += 1

    tasks = [asyncio.create_task(watch()), asyncio.create_task(steady(100.0))]
    worker = switch.worker
    deadline = time.monotonic() + 120
    ticks0 = worker.stats.ticks
    while worker.stats.ticks < ticks0 + 200:  # past the first ticks' compilation
        if worker.failure() or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start ticking: {worker.failure()}")
        await asyncio.sleep(0.1)
    try:
        ticks = await alternate(args.windows, args.window_seconds, switch,
                                lambda: worker.stats.ticks, flush)
        stop.set()
        await tasks.pop()
        stop.clear()
        tasks += [asyncio.create_task(flat_out(c)) for c in clients]
        await asyncio.sleep(1.0)
        submits = await alternate(args.windows, args.window_seconds, switch, lambda: submitted,
                                  flush)
    finally:
        stop.set()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for c in [*clients, watcher]:
            await c.channel.close()
    return ticks, submits


def hooks_per_command(worker: PhysicsWorker, gateway: GatewayService, world: str,
                      traces: tracing.Tracing, n: int = 2000) -> float:
    """Process CPU seconds that tracing adds to one command, export included: the
    worker's and the gateway's own hooks (the two gateway spans as core.submit and
    CommandLog.append open them), without the machine's noise."""
    core, tracer, send_tracer = gateway.core, worker.tracer, gateway.commands
    assert core is not None and core.tracer is not None and tracer is not None
    assert send_tracer is not None and send_tracer.tracer is not None
    now = datetime.now(UTC)
    command = models.PlayerCommand(
        command_id=uuid.uuid4(), player_id="bench", world_id=world, client_ts=now,
        received_ts=now, command=TypeAdapter(models.Command).validate_python(NUDGE))

    def one(tick: int) -> None:
        with core.tracer.start_as_current_span(  # type: ignore[union-attr]
                "SubmitCommand", kind=tracing.SERVER,
                attributes={tracing.FACE: "grpc", tracing.WORLD: world}):
            trace.get_current_span().set_attributes({tracing.COMMAND_ID: str(command.command_id),
                                                     tracing.COMMAND_TYPE: "ApplyImpulse"})
            span = send_tracer.tracer.start_span(  # type: ignore[union-attr]
                f"send {topics.COMMANDS.name}", kind=tracing.PRODUCER,
                attributes=tracing.messaging("send", topics.COMMANDS.name,
                                             **{tracing.MESSAGING_PARTITION: "0"}))
            headers = tracing.inject(span)
            span.set_attribute(tracing.MESSAGING_OFFSET, tick)
            span.end()
        ctx = tracing.extract(headers)
        assert ctx is not None
        delta_headers = worker._processed(ctx, world, 0, tick, tick, command, None,
                                          time.time_ns())
        tracing.end_all(worker._sending)
        worker._sending.clear()
        core._traced[world] = deque([(tick, tracing.extract_all(delta_headers))])
        core._delivered(world, tick - 1, tick, 1000, time.time_ns())

    for tick in range(1, 201):  # warm
        one(tick)
    traces.provider.force_flush()
    cpu0 = time.process_time()
    for tick in range(1, n + 1):
        one(tick)
        if tick % 200 == 0:  # within the batch processor's queue: nothing is dropped
            traces.provider.force_flush()
    traces.provider.force_flush()
    return (time.process_time() - cpu0) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows", type=int, default=8, help="windows of each kind, per part")
    parser.add_argument("--window-seconds", type=float, default=3.0)
    parser.add_argument("--bodies", type=int, default=1000)
    parser.add_argument("--submitters", type=int, default=16,
                        help="concurrent gRPC clients in the gateway part")
    parser.add_argument("--sample-ratio", type=float, default=1.0,
                        help="fraction of commands traced in the on windows "
                             "(COSMIC_TRACING__SAMPLE_RATIO)")
    parser.add_argument("--metrics-only", action="store_true",
                        help="on windows keep metrics but trace nothing (what tracing adds)")
    args = parser.parse_args()

    base = get_settings()
    admin.reconcile_topics(base)
    # The gateway's own limits would cap the submits it is asked to measure.
    settings = base.model_copy(update={
        "gateway": base.gateway.model_copy(update={"grpc_port": 0, "http_port": 0}),
        "security": base.security.model_copy(update={"commands_per_s": 1e9,
                                                     "command_burst": 10**9})})
    sink = OtlpSink()
    traces = tracing.install(tracing.build("bench", "otlp", sink.url, args.sample_ratio))
    registry = RegistryClient.from_settings(settings)
    shard = f"bench-obs-{uuid.uuid4().hex[:8]}"
    world = f"{shard}:world"
    worker = PhysicsWorker(settings, registry, WorkerConfig(worker_id=shard, shard=shard))
    gateway = build_gateway(settings, registry)
    stop = threading.Event()
    gateway.start()
    worker.start()
    try:
        if not gateway.wait_ready(120):
            raise SystemExit(f"gateway did not start: {gateway.failure()}")
        switch = Switch(worker, gateway, traced=not args.metrics_only)

        def scraper() -> None:
            while not stop.wait(1.0):
                if switch.scraping.is_set():
                    metrics.exposition()

        threading.Thread(target=scraper, daemon=True).start()
        open_world(settings, registry, world, args.bodies)
        ticks, submits = asyncio.run(bench(gateway.grpc_address, world, switch, args,
                                           traces.provider.force_flush))
        switch.traced = True  # the hooks are measured traced, --metrics-only or not
        switch.set(True)
        hooks_s = hooks_per_command(worker, gateway, world, traces)
    finally:
        stop.set()
        worker.stop()
        gateway.stop()
        traces.shutdown()
        sink.close()
        registry.close()
    for service in (worker, gateway):
        if service.failure():
            raise SystemExit(f"{service.name} failed: {service.failure()}")

    print(f"world: {args.bodies} bodies; {args.windows} windows of {args.window_seconds:g}s "
          "each way per part, alternating on / off")
    traced = "no command" if args.metrics_only else f"{args.sample_ratio:.0%} of commands"
    print(f"on: metrics, /metrics scraped 1/s, {traced} traced "
          f"({sink.requests} OTLP exports, {sink.bytes / 1e6:.1f} MB); gateway, worker, "
          "clients and exporter share this process (one GIL)")
    print(f"{'':44}{'on':>10}{'off':>10}{'on / off':>10}  (median of the pairs' ratios)")
    ratios = []
    for label, unit, rates in (
            ("worker ticks/s, 100 commands/s via gateway", "tick", ticks),
            (f"gateway submits/s, {args.submitters} clients", "submit", submits)):
        (on, on_cpu), (off, off_cpu) = (
            (sum(r for r, _ in v) / len(v), sum(c for _, c in v) / len(v))
            for v in (rates["on"], rates["off"]))
        # The headline: the median of the pairs' ratios, each pair's windows next to one
        # another in time; one pair that another process disturbed does not move it.
        pairs = [on_r / off_r for (on_r, _), (off_r, _) in zip(rates["on"], rates["off"],
                                                                  strict=True)]
        ratio = statistics.median(pairs)
        ratios.append(ratio)
        result("observability", f"{label}, metrics + tracing on vs off",
               f"{args.bodies} bodies, {args.windows} x {args.window_seconds:g}s windows each way",
               on, "all off", off, ratio, goal=f">= {GOAL}", met=ratio >= GOAL,
               unit=f"{unit}s/s", line=f"{label:44}{on:>10.1f}{off:>10.1f}{ratio:>10.3f}",
               note=f"on / off: median of {len(pairs)} ABBA pairs of windows; mean rates "
                    f"{on / off:.3f}, CPU per {unit} {off_cpu / on_cpu:.3f}")
        print(f"  process CPU per {unit} (ms){'':<{15 - len(unit)}}{on_cpu * 1e3:>10.2f}"
              f"{off_cpu * 1e3:>10.2f}{off_cpu / on_cpu:>10.3f}")
        print("  windows: " + ", ".join(f"{k} {r:.1f}" for pair in zip(
            rates["on"], rates["off"], strict=True) for k, (r, _) in zip(("on", "off"), pair,
                                                                          strict=True)))
        print(f"  on / off by pair: {', '.join(f'{p:.3f}' for p in pairs)} (median, the "
              f"headline; of the mean rates {on / off:.3f})")
    # The same question without the machine's noise: what one command's spans cost,
    # beside what one submit costs this process with everything off.
    submit_s = sum(c for _, c in submits["off"]) / len(submits["off"])
    print(f"tracing hooks per command, export included: {hooks_s * 1e6:.0f} us of CPU, "
          f"{hooks_s / submit_s:.1%} of a submit's ({submit_s * 1e3:.2f} ms, all off) -> "
          f"bound on / off >= {submit_s / (submit_s + hooks_s):.3f} "
          f"(at {args.sample_ratio:.0%} sampled)")
    probe = WorkerMetrics("probe", dict)
    t0 = time.perf_counter()
    for _ in range(20_000):
        probe.tick(0, 0.01, 0.1, 3, ())
    hook_s = (time.perf_counter() - t0) / 20_000
    tick_s = sum(c for _, c in ticks["off"]) / len(ticks["off"])
    print(f"metrics hooks per tick: {hook_s * 1e6:.1f} us, {hook_s / tick_s:.2%} of a tick's CPU "
          f"({tick_s * 1e3:.1f} ms) -> bound on / off >= {tick_s / (tick_s + hook_s):.4f}")
    print(f"goal: on / off >= {GOAL} for both -> "
          + ("met" if min(ratios) >= GOAL else "NOT met"))


if __name__ == "__main__":
    main()
