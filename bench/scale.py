"""Scaling out the physics worker: one worker process against two, on the same workload.

Each case gets a shard of its own (its own consumer group) with the same worlds
(``--worlds``, spread evenly over the command topic's partitions, ``--bodies``
each) and the same backlog of signed player commands, produced before any worker
starts, so the workers run as fast as they can and nothing else competes for
the cores while they are measured. The workers tick unpaced (every world as fast
as it can) and are separate processes (`cosmic physics worker`): threads of one
process would share one interpreter lock. The window
from the first committed tick to the one that applied the backlog's last
command is measured from the log itself (producer timestamps): the ticks in it,
and the commands they applied or refused. Printed: world-ticks/s and commands/s
for one worker (the anchor) and for two, the ratio (goal 1.6x), the CPU seconds
the workers used in the window and world-ticks per CPU second (the cost of
scaling, which contention for the cores does not change), and the machine's
load, since this machine's cores also run the broker, this script, and whatever
else is running on it. With the topics' 3 partitions two workers split them
2:1, so a backlog drains at most 1.5x faster with two.

Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/scale.py [--worlds 30] [--bodies 40] [--commands 20000]
"""

from __future__ import annotations

import argparse
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import TopicPartition
from report import result

from cosmic import admin, kafka, topics
from cosmic.settings import Settings, get_settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds import scenario

GOAL_X = 1.6


def world_names(shard: str, n: int) -> list[str]:
    parts = topics.COMMANDS.partitions
    per = -(-n // parts)
    by_partition: dict[int, list[str]] = {p: [] for p in range(parts)}
    for k in itertools.count():
        world = f"{shard}:w{k:03d}"
        home = kafka.home_partition(world, parts)
        if len(by_partition[home]) < per:
            by_partition[home].append(world)
        if sum(map(len, by_partition.values())) >= n:
            return sorted(w for ws in by_partition.values() for w in ws)[:n]
    raise AssertionError("unreachable")


def load_backlog(settings: Settings, registry: RegistryClient, worlds: list[str], bodies: int,
                 commands: int) -> int:
    """Each world's opening, then ``commands`` player commands round robin; returns how
    many commands were sent (each is applied or refused by exactly one tick)."""
    ring = signing.KeyRing.for_settings(settings)
    encode = AvroSerializer(registry, "PlayerCommand")
    ctx = SerializationContext(topics.COMMANDS.name)
    producer = kafka.producer(settings)

    sent = 0

    def send(world: str, record: dict) -> None:
        nonlocal sent
        sent += 1
        value = encode(signing.sign_record(record, models.Role.OPERATOR, ring), ctx)
        while True:
            try:
                producer.produce(topics.COMMANDS.name, key=world.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)

    for world in worlds:
        for cmd in scenario.star_system(world, asteroids=bodies, tick_rate_hz=10_000,
                                        snapshot_every=1000):
            send(world, cmd.to_avro())
    streams = [scenario.player_commands(w, seed=i, asteroids=bodies, invalid_every=25)
               for i, w in enumerate(worlds)]
    for _, (world, stream) in zip(range(commands), itertools.cycle(zip(worlds, streams,
                                                                       strict=True)),
                                  strict=False):
        send(world, next(stream))
    assert producer.flush(60) == 0
    return sent


@dataclass
class Result:
    workers: int
    seconds: float
    ticks: int
    commands: int
    cpu_s: float

    @property
    def ticks_per_s(self) -> float:
        return self.ticks / self.seconds

    @property
    def commands_per_s(self) -> float:
        return self.commands / self.seconds

    @property
    def ticks_per_cpu_s(self) -> float:
        return self.ticks / self.cpu_s


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_case(settings: Settings, registry: RegistryClient, n_workers: int, args: argparse.Namespace,
             log_dir: Path) -> Result:
    shard = f"bench-scale-{uuid.uuid4().hex[:8]}"
    worlds = world_names(shard, args.worlds)
    reader = kafka.reader(settings, "bench-scale")
    ends = {p: reader.get_watermark_offsets(TopicPartition(topics.PHYSICS_TICKS.name, p),
                                            timeout=30)[1]
            for p in range(topics.PHYSICS_TICKS.partitions)}
    reader.assign([TopicPartition(topics.PHYSICS_TICKS.name, p, o) for p, o in ends.items()])
    sent = load_backlog(settings, registry, worlds, args.bodies, args.commands)
    decode = AvroDeserializer(registry)
    ctx = SerializationContext(topics.PHYSICS_TICKS.name)
    procs = []
    for k in range(n_workers):
        with (log_dir / f"{shard}-{k}.log").open("ab") as out:
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "cosmic_app", "physics", "worker", "--worker-id",
                 f"{shard}-{k}", "--shard", shard, "--unpaced", "--hibernate-after", "0"],
                stdout=out, stderr=subprocess.STDOUT))
    prefix = f"{shard}:".encode()
    rows: list[tuple[int, int]] = []  # (producer timestamp ms, commands applied or refused)
    applied = 0
    cpu0: float | None = None  # the workers' CPU seconds when the first tick arrived
    deadline = time.monotonic() + args.timeout
    try:
        while applied < sent:
            assert time.monotonic() < deadline, f"{shard}: {applied} of {sent} applied"
            for p in procs:
                assert p.poll() is None, f"a worker exited; see {log_dir}"
            for msg in reader.consume(5000, timeout=0.2):
                if msg.error() is None and (msg.key() or b"").startswith(prefix):
                    rec = decode(msg.value(), ctx)
                    rows.append((msg.timestamp()[1], rec["n_applied"] + rec["n_rejected"]))
                    applied += rows[-1][1]
            if rows and cpu0 is None:
                cpu0 = sum(cpu_seconds(p.pid) for p in procs)
        assert cpu0 is not None
        cpu = sum(cpu_seconds(p.pid) for p in procs) - cpu0
        # From the first tick to the one that applied the backlog's last command.
        first, last = min(ts for ts, _ in rows), max(ts for ts, n in rows if n)
        inside = [(ts, n) for ts, n in rows if first <= ts <= last]
        return Result(n_workers, (last - first) / 1000, len(inside), sum(n for _, n in inside),
                      cpu)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        reader.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worlds", type=int, default=30)
    parser.add_argument("--bodies", type=int, default=40, help="asteroids per world")
    parser.add_argument("--commands", type=int, default=20_000,
                        help="backlog per case (it stays in the command topic: keep it small)")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="give up on a case after this many seconds")
    args = parser.parse_args()
    settings = get_settings()
    admin.reconcile_topics(settings)
    registry = RegistryClient.from_settings(settings)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        results = [run_case(settings, registry, n, args, Path(tmp)) for n in (1, 2)]
    load1 = os.getloadavg()
    one, two = results
    print(f"physics workers, {args.worlds} worlds of {args.bodies + 7} bodies over "
          f"{topics.COMMANDS.partitions} partitions, a backlog of {args.commands} commands, "
          f"unpaced; {os.cpu_count()} cores shared with the broker and this script")
    for r in results:
        print(f"  {r.workers} worker(s): {r.ticks_per_s:8.0f} world-ticks/s  "
              f"{r.commands_per_s:8.0f} commands/s  over {r.seconds:.1f}s, "
              f"workers' CPU {r.cpu_s:.1f}s ({r.ticks_per_cpu_s:.0f} world-ticks per CPU "
              f"second)")
    work = (f"{args.worlds} worlds of {args.bodies + 7} bodies, {args.commands} commands "
            f"backlog, unpaced")
    ticks_x = two.ticks_per_s / one.ticks_per_s
    result("scale", "world-ticks/s, two workers vs one", work, two.ticks_per_s, "one worker",
           one.ticks_per_s, ticks_x, goal=f">= {GOAL_X}x", met=ticks_x >= GOAL_X,
           unit="world-ticks/s",
           line=f"  two against one: world-ticks {ticks_x:.2f}x, "
                f"commands {two.commands_per_s / one.commands_per_s:.2f}x (goal {GOAL_X}x)")
    per_cpu = two.ticks_per_cpu_s / one.ticks_per_cpu_s
    result("scale", "world-ticks per workers' CPU s, two vs one", work, two.ticks_per_cpu_s,
           "one worker", one.ticks_per_cpu_s, per_cpu, unit="world-ticks/CPU s",
           line=f"  per CPU second of the workers: two against one {per_cpu:.2f}x (what the "
                f"software costs to scale, whatever the machine gave it)")
    print(f"  load average (1 min) {load0[0]:.1f} before, {load1[0]:.1f} after: anything "
          f"above ~0.5 means other work shared these cores")
    registry.close()


if __name__ == "__main__":
    main()
