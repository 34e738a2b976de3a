"""Physics worker benchmark: sustained ticks/s live with Kafka transactions, and replay speed.

One world of 1,000 bodies (a star and 999 asteroids) with 100 player
commands/s arriving through Kafka. The worker ticks it as fast as it can
(the world's tick rate is set far above what is reachable), each tick's
events and offsets in a Kafka transaction. Printed side by side, in one run:

* the worker's sustained ticks/s live, and the goal (60/s);
* the raw engine's steps/s on the same world (``World.step`` alone, the
  anchor: what the worker would do with no Kafka, serde, hashing or deltas);
* replay: the same recorded ticks re-applied with hash checks, ticks/s, and as
  a multiple of the 60 ticks/s live goal (goal: 20x). The clock covers the
  re-application only: ticks and commands are read from Kafka before it
  starts. bench/replay.py times `cosmic replay` end to end, reads included.

Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/worker.py [--seconds 20] [--bodies 1000] [--rate 100]
"""

from __future__ import annotations

import argparse
import math
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
from report import result

from cosmic import admin, kafka, topics
from cosmic.settings import get_settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds import scenario
from streams.worlds.commands import advance
from streams.worlds.eventlog import KafkaLog
from streams.worlds.recovery import read_commands, replay
from streams.worlds.state import WorldState
from streams.worlds.worker import PhysicsWorker, WorkerConfig

LIVE_GOAL = 60.0
REPLAY_GOAL_X = 20.0


def opening(world: str, bodies: int, seed: int = 5) -> list[models.PlayerCommand]:
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)

    def cmd(body: models.Command) -> models.PlayerCommand:
        return models.PlayerCommand(command_id=uuid.uuid4(), player_id="bench", world_id=world,
                                    client_ts=now, received_ts=now, command=body)

    out = [cmd(models.SetWorldParams(G=scenario.G_ASTRO, softening=1e-3, tick_rate_hz=10_000,
                                     dt=scenario.DAY / 4, merge_on_contact=False,
                                     snapshot_every=500))]
    out.append(cmd(models.SpawnBody(body_id=scenario.STAR_ID, kind=models.BodyKind.STAR, mass=1.0,
                                    radius=4.65e-3, position=models.Vec3(x=0, y=0, z=0),
                                    velocity=models.Vec3(x=0, y=0, z=0))))
    for k in range(bodies - 1):
        a, phase = rng.uniform(1.0, 4.0), rng.uniform(0, 2 * math.pi)
        speed = 2 * math.pi / math.sqrt(a)
        out.append(cmd(models.SpawnBody(
            body_id=scenario.FIRST_ASTEROID_ID + k, kind=models.BodyKind.ASTEROID, mass=1e-9,
            radius=1e-6,
            position=models.Vec3(x=a * math.cos(phase), y=a * math.sin(phase), z=0.0),
            velocity=models.Vec3(x=-speed * math.sin(phase), y=speed * math.cos(phase), z=0.0))))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bodies", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="player commands per second")
    args = parser.parse_args()

    settings = get_settings()
    admin.reconcile_topics(settings)
    registry = RegistryClient.from_settings(settings)
    shard = f"bench-{uuid.uuid4().hex[:8]}"
    world = f"{shard}:world"  # its own shard: no other worker on the stack touches it
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    producer = kafka.producer(settings)
    # Signed as the platform's tools sign: the worker checks every signature, as in production.
    ring = signing.KeyRing.for_settings(settings)

    def signed(record: dict) -> dict:
        return signing.sign_record(record, models.Role.OPERATOR, ring)

    for c in opening(world, args.bodies):
        producer.produce(topics.COMMANDS.name, key=world.encode(), value=encode(signed(c.to_avro()), ctx))
    producer.flush(30)

    # Anchor: the raw engine on the same world, no Kafka, no serde, no hashing.
    state = WorldState.empty(world, 0)
    advance(state, list(enumerate(opening(world, args.bodies))))
    state.world.step(state.dt, steps=5)
    t0 = time.perf_counter()
    n_raw = 0
    while time.perf_counter() - t0 < 3.0:
        state.world.step(state.dt, steps=10)
        n_raw += 10
    raw_rate = n_raw / (time.perf_counter() - t0)

    stop = threading.Event()

    def players() -> None:
        stream = scenario.player_commands(world, seed=3, asteroids=args.bodies - 1, invalid_every=50)
        period, next_at = 1.0 / args.rate, time.monotonic()
        while not stop.is_set():
            producer.produce(topics.COMMANDS.name, key=world.encode(), value=encode(signed(next(stream)), ctx))
            producer.poll(0)
            next_at += period
            time.sleep(max(0.0, next_at - time.monotonic()))
        producer.flush(30)

    worker = PhysicsWorker(settings, registry, WorkerConfig(
        worker_id=shard, shard=shard))
    sender = threading.Thread(target=players, daemon=True)
    worker.start()
    sender.start()
    # Wait for the world to exist and settle, then measure a steady window.
    deadline = time.monotonic() + 120
    while worker.stats.ticks < 20:
        if worker.failure() or time.monotonic() > deadline:
            raise SystemExit(f"worker did not start ticking: {worker.failure()}")
        time.sleep(0.1)
    ticks0, cmds0, t0 = worker.stats.ticks, worker.stats.commands, time.monotonic()
    time.sleep(args.seconds)
    ticks1, cmds1, t1 = worker.stats.ticks, worker.stats.commands, time.monotonic()
    partition = worker.worlds[world].state.partition
    stop.set()
    sender.join()
    worker.stop()
    if worker.failure():
        raise SystemExit(f"worker failed: {worker.failure()}")
    live_rate = (ticks1 - ticks0) / (t1 - t0)
    cmd_rate = (cmds1 - cmds0) / (t1 - t0)

    # Replay: rebuild the world from its first snapshot with the recorded ticks.
    log = KafkaLog(settings, registry)
    ticks = sorted((r for _, _, r in log.read(topics.PHYSICS_TICKS.name, partition, key=world.encode())),
                   key=lambda r: r["tick"])
    commands = read_commands(log, partition, ticks, world)
    fresh = WorldState.empty(world, partition)
    t0 = time.perf_counter()
    replayed = replay(fresh, ticks, commands, verify=True, authenticate=signing.authenticator(settings))
    replay_rate = replayed / (time.perf_counter() - t0)
    registry.close()

    print(f"world: {args.bodies} bodies, {cmd_rate:.0f} commands/s applied, "
          f"{args.seconds:.0f}s measured, Kafka transactions on")
    print(f"{'':28}{'ticks/s':>10}{'goal':>10}{'ratio':>10}")
    print(f"{'worker live (ours)':28}{live_rate:>10.1f}{LIVE_GOAL:>10.0f}{live_rate / LIVE_GOAL:>10.2f}")
    work = f"N={args.bodies}, {cmd_rate:.0f} commands/s, {args.seconds:.0f}s, Kafka transactions"
    result("worker", "live ticks/s, transactional", work, live_rate, "raw engine World.step",
           raw_rate, live_rate / raw_rate, goal=f">= {LIVE_GOAL:.0f} ticks/s",
           met=live_rate >= LIVE_GOAL, unit="ticks/s",
           line=f"{'raw engine step (anchor)':28}{raw_rate:>10.1f}{'':>10}{live_rate / raw_rate:>10.2f}")
    replay_goal = REPLAY_GOAL_X * LIVE_GOAL
    result("worker", "replay ticks/s, hashes verified, Kafka reads not timed", work, replay_rate,
           "raw engine World.step", raw_rate, replay_rate / raw_rate,
           goal=f">= {replay_goal:.0f} ticks/s", met=replay_rate >= replay_goal, unit="ticks/s",
           line=f"{'replay, hashes verified':28}{replay_rate:>10.1f}"
                f"{replay_goal:>10.0f}{replay_rate / replay_goal:>10.2f}")
    print(f"replay = {replay_rate / LIVE_GOAL:.1f}x the live goal rate; "
          f"{replayed} ticks re-applied, every hash matched (Kafka reads not timed: "
          "bench/replay.py times them)")


if __name__ == "__main__":
    main()
