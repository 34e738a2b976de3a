"""Replay benchmark: `cosmic replay --verify` end to end, Kafka reads included.

For each world size, a world (a star and N-1 asteroids, ticking at 30 Hz) is
played live by a physics worker for a while, so the log holds its snapshots,
ticks and commands as production writes them. Then the same code path as
`cosmic replay --world W --from-tick 0 --verify` rebuilds it from the log
(``streams.worlds.pointintime.rebuild``: finds the snapshot, reads ticks and
commands from Kafka, re-applies every tick, checks every hash) and the clock
runs from the first read to the last hash. Printed in one run, per size:

* replay ticks/s, and the multiple of real time at the world's own 30 Hz
  (goal: at least 20x at 10,000 bodies);
* the anchor: the raw engine stepping the same world the same number of steps
  in this process (no Kafka, no decoding, no hashing), and replay / anchor;
* which force solver the engine's automatic choice used at that size.

The live phase only fills the log; its rate is not the figure here (see
bench/worker.py). Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/replay.py [--sizes 1000,10000] [--ticks 150]
"""

from __future__ import annotations

import argparse
import time
import uuid

from report import result
from worker import opening  # bench/worker.py, beside this script: the same world

from cosmic import admin, kafka, topics
from cosmic.settings import Settings, get_settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds.commands import advance
from streams.worlds.eventlog import KafkaLog
from streams.worlds.pointintime import rebuild
from streams.worlds.state import WorldState
from streams.worlds.worker import PhysicsWorker, WorkerConfig

TICK_RATE_HZ = 30.0
GOAL_X = 20.0


def record_world(settings: Settings, registry: RegistryClient, bodies: int, ticks: int) -> str:
    """A world in a shard of its own, played live until the log holds ``ticks`` ticks."""
    shard = f"bench-replay-{uuid.uuid4().hex[:8]}"
    world = f"{shard}:world"
    ring = signing.KeyRing.for_settings(settings)
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    producer = kafka.producer(settings)
    commands = opening(world, bodies)
    first = commands[0].command
    assert isinstance(first, models.SetWorldParams)
    commands[0] = commands[0].model_copy(update={"command": first.model_copy(
        update={"tick_rate_hz": TICK_RATE_HZ, "snapshot_every": max(ticks // 3, 10)})})
    for c in commands:
        producer.produce(topics.COMMANDS.name, key=world.encode(),
                         value=encode(signing.sign(c, models.Role.OPERATOR, ring).to_avro(), ctx))
    producer.flush(30)
    worker = PhysicsWorker(settings, registry, WorkerConfig(worker_id=shard, shard=shard))
    worker.start()
    deadline = time.monotonic() + 600
    while worker.stats.ticks < ticks:
        if worker.failure() or time.monotonic() > deadline:
            raise SystemExit(f"the worker did not record {ticks} ticks: {worker.failure()}")
        time.sleep(0.2)
    worker.stop()
    return world


def engine_anchor(world: str, bodies: int, steps: int) -> tuple[float, str]:
    """Steps/s of the bare engine on the same opening, and the solver it chose."""
    state = WorldState.empty(world, 0)
    advance(state, list(enumerate(opening(world, bodies))))
    state.world.step(state.dt, steps=2)  # compile and warm up
    t0 = time.perf_counter()
    state.world.step(state.dt, steps=steps)
    return steps / (time.perf_counter() - t0), state.world.solver


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000", help="world sizes (bodies), comma-separated")
    parser.add_argument("--ticks", type=int, default=150, help="ticks recorded per world")
    args = parser.parse_args()
    settings = get_settings()
    admin.reconcile_topics(settings)
    registry = RegistryClient.from_settings(settings)
    authenticate = signing.authenticator(settings)
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        world = record_world(settings, registry, size, args.ticks)
        t0 = time.perf_counter()
        rebuilt = rebuild(KafkaLog(settings, registry), world, from_tick=0, verify=True,
                          authenticate=authenticate)
        seconds = time.perf_counter() - t0
        rate = rebuilt.ticks_replayed / seconds
        anchor, solver = engine_anchor(world, size, min(rebuilt.ticks_replayed, 60))
        rows.append((size, solver, rebuilt.ticks_replayed, rate, anchor))
    registry.close()

    print(f"cosmic replay --from-tick 0 --verify, end to end from Kafka; worlds tick at "
          f"{TICK_RATE_HZ:g} Hz")
    print(f"{'bodies':>8}{'solver':>8}{'ticks':>7}{'replay/s':>10}{'x real':>8}{'goal':>6}"
          f"{'engine/s':>10}{'replay/engine':>15}")
    for size, solver, n, rate, anchor in rows:
        result("replay", "cosmic replay --verify ticks/s, Kafka reads included",
               f"N={size:,}, {solver}, {n} ticks at {TICK_RATE_HZ:g} Hz", rate,
               "bare World.step", anchor, rate / anchor,
               goal=f">= {GOAL_X:.0f}x real time ({rate / TICK_RATE_HZ:.1f}x)",
               met=rate / TICK_RATE_HZ >= GOAL_X, unit="ticks/s",
               line=f"{size:>8}{solver:>8}{n:>7}{rate:>10.1f}{rate / TICK_RATE_HZ:>8.1f}"
                    f"{GOAL_X:>6.0f}{anchor:>10.1f}{rate / anchor:>15.2f}")
    print("x real: replayed ticks/s over the world's own tick rate; engine: the bare "
          "World.step on the same world in this process (the anchor)")


if __name__ == "__main__":
    main()
