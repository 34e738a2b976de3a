"""Test helpers for a live world: its opening commands, players, and a worker process."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cosmic import kafka, topics
from cosmic.settings import Settings
from schemas import models
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext
from streams.security import signing
from streams.worlds import scenario

Record = dict[str, Any]


class CommandSender:
    """Commands to worlds through one producer, each keyed by its world (so to the world's
    home partition), signed as the platform's tools sign them: how tests command a world."""

    def __init__(self, settings: Settings, registry: RegistryClient) -> None:
        self.ring = signing.KeyRing.for_settings(settings)
        self.producer = kafka.producer(settings)
        self._encode = AvroSerializer(registry, "PlayerCommand")
        self._ctx = SerializationContext(topics.COMMANDS.name)
        self.sent = 0

    def send(self, world: str, record: Record | bytes,
             role: models.Role | None = models.Role.OPERATOR) -> None:
        """Produce a record (signed as ``role``'s; None: as it is) or raw bytes."""
        if not isinstance(record, bytes) and role is not None:
            record = signing.sign_record(record, role, self.ring)
        value = record if isinstance(record, bytes) else self._encode(record, self._ctx)
        self.producer.produce(topics.COMMANDS.name, key=world.encode(), value=value)
        self.producer.poll(0)
        self.sent += 1

    def send_opening(self, world: str, *, asteroids: int, tick_rate_hz: float,
                     snapshot_every: int) -> None:
        """The scenario's opening of ``world`` (a star system), not yet flushed."""
        for cmd in scenario.star_system(world, asteroids=asteroids, tick_rate_hz=tick_rate_hz,
                                        snapshot_every=snapshot_every):
            self.send(world, cmd.to_avro())

    def flush(self) -> None:
        """Every command sent so far is in the log."""
        assert self.producer.flush(30) == 0


class LiveWorld:
    """Sends a world's commands: the scenario's opening, then players at a steady rate."""

    def __init__(self, settings: Settings, registry: RegistryClient, world: str) -> None:
        self.world = world
        self.commands = CommandSender(settings, registry)
        self.ring = self.commands.ring
        self.producer = self.commands.producer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, record: Record | bytes, role: models.Role | None = models.Role.OPERATOR
             ) -> None:
        """Produce a record (signed as ``role``'s, as the platform's tools sign; None: as it
        is) or raw bytes."""
        self.commands.send(self.world, record, role)

    def open(self, *, asteroids: int, tick_rate_hz: float, snapshot_every: int) -> None:
        self.commands.send_opening(self.world, asteroids=asteroids, tick_rate_hz=tick_rate_hz,
                                   snapshot_every=snapshot_every)
        self.commands.flush()

    def play(self, *, rate_hz: float, seed: int, asteroids: int, invalid_every: int,
             extra: Iterator[Record] | None = None) -> None:
        """Players in a background thread until :meth:`stop`; ``extra`` commands go first."""
        def run() -> None:
            stream = scenario.player_commands(self.world, seed=seed, asteroids=asteroids,
                                              invalid_every=invalid_every)
            while not self._stop.is_set():
                self.send(next(extra, None) or next(stream) if extra else next(stream))
                time.sleep(1 / rate_hz)
            self.producer.flush(30)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)


def start_worker(worker_id: str, shard: str, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`cosmic physics worker` in its own process, owning the worlds ``shard:...``
    (its own consumer group, so no other worker on the stack touches them)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cosmic_app", "physics", "worker", "--worker-id", worker_id,
             "--shard", shard, *extra],
            stdout=out, stderr=subprocess.STDOUT)


def stop_worker(worker: subprocess.Popen[bytes]) -> int | None:
    """Ask for a clean stop, as Ctrl-C would; kill it if it does not stop in a minute."""
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
    try:
        return worker.wait(60)
    except subprocess.TimeoutExpired:
        worker.kill()
        return None
