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


class LiveWorld:
    """Sends a world's commands: the scenario's opening, then players at a steady rate."""

    def __init__(self, settings: Settings, registry: RegistryClient, world: str) -> None:
        self.world = world
        self.ring = signing.KeyRing.for_settings(settings)
        self.producer = kafka.producer(settings)
        self._encode = AvroSerializer(registry, "PlayerCommand")
        self._ctx = SerializationContext(topics.COMMANDS.name)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, record: dict[str, Any] | bytes, role: models.Role | None = models.Role.OPERATOR
             ) -> None:
        """Produce a record (signed as ``role``'s, as the platform's tools sign; None: as it
        is) or raw bytes."""
        if not isinstance(record, bytes) and role is not None:
            record = signing.sign_record(record, role, self.ring)
        value = record if isinstance(record, bytes) else self._encode(record, self._ctx)
        self.producer.produce(topics.COMMANDS.name, key=self.world.encode(), value=value)
        self.producer.poll(0)

    def open(self, *, asteroids: int, tick_rate_hz: float, snapshot_every: int) -> None:
        for cmd in scenario.star_system(self.world, asteroids=asteroids, tick_rate_hz=tick_rate_hz,
                                        snapshot_every=snapshot_every):
            self.send(cmd.to_avro())
        assert self.producer.flush(30) == 0

    def play(self, *, rate_hz: float, seed: int, asteroids: int, invalid_every: int,
             extra: Iterator[dict[str, Any]] | None = None) -> None:
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
