"""Helpers shared by the connector integration tests: events, producing, waiting, subprocesses."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from psycopg import sql

from cosmic import kafka
from cosmic.settings import Settings, child_env
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext

NOW = datetime.now(UTC).replace(microsecond=0)


def with_database(settings: Settings, database: str, **postgres: Any) -> Settings:
    """``settings`` pointed at another PostgreSQL database (and other postgres fields)."""
    return settings.model_copy(update={
        "postgres": settings.postgres.model_copy(update={"database": database, **postgres})})


def timescaledb_available(settings: Settings) -> bool:
    with psycopg.connect(with_database(settings, "postgres").postgres.dsn) as conn:
        return conn.execute("SELECT 1 FROM pg_available_extensions "
                            "WHERE name = 'timescaledb'").fetchone() is not None


@contextlib.contextmanager
def private_database(settings: Settings, prefix: str, *, needs_timescaledb: str | None = None,
                     **postgres: Any) -> Iterator[Settings]:
    """Settings pointing at a fresh private database, dropped (forcibly) afterwards.
    ``needs_timescaledb``: skip with this reason where the extension is not installed."""
    if needs_timescaledb is not None and not timescaledb_available(settings):
        pytest.skip(needs_timescaledb)
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = with_database(settings, "postgres").postgres.dsn
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield with_database(settings, name, **postgres)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def tick(world: str, i: int, ts: datetime | None = None) -> dict[str, Any]:
    return {"world_id": world, "tick": i, "sim_time": i * 0.01, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": i % 3,
            "n_rejected": 0, "body_count": 5 + i % 2, "total_energy": -1.5 - i * 1e-6,
            "state_hash": f"{i:016x}", "step_duration_us": 100 + i, "ts": ts or NOW}


def ecosystem(world: str, i: int) -> dict[str, Any]:
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("io.cosmicgarden.PopulationChanged", {"species_id": i, "previous": 10, "current": 10 + i}),
        ("io.cosmicgarden.SpeciesExtinct", {"species_id": i, "cause": "starvation"}),
        ("io.cosmicgarden.PlanetDestroyed", {"cause": "collision", "merged_into": 7}),
    ]
    return {"event_id": uuid.uuid4(), "world_id": world, "planet_id": i % 4, "tick": i,
            "ts": NOW, "event": bodies[i % len(bodies)]}


def civilization(world: str, i: int) -> dict[str, Any]:
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("io.cosmicgarden.TechAdvanced", {"tech": "metallurgy", "level": 1 + i}),
        ("io.cosmicgarden.ResourceUsed", {"resource": "ore", "amount": 1.5, "remaining": 99.0}),
        ("io.cosmicgarden.CivilizationFounded",
         {"name": f"civ{i}", "founder_player_id": "p1", "species_id": None}),
    ]
    return {"event_id": uuid.uuid4(), "world_id": world, "planet_id": 3, "civilization_id": i % 5,
            "tick": i, "ts": NOW, "event": bodies[i % len(bodies)]}


def metric(world: str, i: int) -> dict[str, Any]:
    start = NOW - timedelta(minutes=i % 3)
    return {"name": "physics.step_us.p99", "world_id": world, "window_start": start,
            "window_end": start + timedelta(seconds=10), "value": float(i), "labels": {"w": "0"}}


def command(world: str, i: int) -> dict[str, Any]:
    vec = {"x": 1.0 * i, "y": 2.0, "z": -3.0}
    bodies: list[tuple[str, dict[str, Any]]] = [
        ("io.cosmicgarden.SpawnBody", {"body_id": i, "kind": "PLANET", "mass": 1.0, "radius": 0.1,
                                       "position": vec, "velocity": vec}),
        ("io.cosmicgarden.ApplyImpulse", {"body_id": i, "dv": vec}),
        ("io.cosmicgarden.FoundCivilization", {"planet_id": 2, "civilization_id": i, "name": "Ur"}),
    ]
    return {"command_id": uuid.uuid4(), "player_id": f"p{i % 4}", "world_id": world,
            "client_ts": NOW, "received_ts": NOW, "command": bodies[i % len(bodies)]}


def produce(settings: Settings, topic: str, schema: str, records: list[dict[str, Any]],
            key_field: str = "world_id", garbage: int = 0) -> None:
    """Send records in the wire format (plus ``garbage`` undecodable values), flushed."""
    with RegistryClient.from_settings(settings) as registry:
        serialize = AvroSerializer(registry, schema)
        producer = kafka.producer(settings)
        ctx = SerializationContext(topic)
        for r in records:
            producer.produce(topic, key=str(r[key_field]).encode(), value=serialize(r, ctx))
        for g in range(garbage):
            producer.produce(topic, key=f"bad{g}".encode(), value=b"not avro at all")
        assert producer.flush(30) == 0


def read_topic(settings: Settings, topic: str, schema: str | None,
               expected: int, timeout_s: float = 30) -> dict[int, list[tuple[int, Any]]]:
    """Every record of ``topic`` as {partition: [(offset, decoded value)]}, offset order."""
    consumer: Consumer = kafka.consumer(settings, f"test-read-{uuid.uuid4().hex[:8]}")
    out: dict[int, list[tuple[int, Any]]] = {}
    with RegistryClient.from_settings(settings) as registry:
        decode = AvroDeserializer(registry, schema) if schema else None
        try:
            md = consumer.list_topics(topic, timeout=10).topics[topic]
            consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
            n, deadline = 0, time.monotonic() + timeout_s
            while n < expected and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                value = decode(msg.value(), SerializationContext(topic)) if decode else msg
                out.setdefault(msg.partition() or 0, []).append((msg.offset() or 0, value))
                n += 1
        finally:
            consumer.close()
    return out


def wait_for(check: Callable[[], bool], timeout_s: float, what: str,
             failed: Callable[[], BaseException | None] = lambda: None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (err := failed()) is not None:
            raise AssertionError(f"connector failed while waiting for {what}") from err
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A child ``cosmic`` process's environment: ``settings`` (the one way), plus ``extra``."""
    return child_env(settings) | extra


def start_cli(settings: Settings, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    try:
        return subprocess.Popen([sys.executable, "-m", "cosmic_app", "connectors", "run", *args],
                                env=cli_env(settings, **env), stdout=out, stderr=subprocess.STDOUT)
    finally:
        out.close()


def stop_cli(proc: subprocess.Popen[bytes], timeout_s: float = 30) -> int:
    if proc.poll() is None:
        proc.terminate()
    return proc.wait(timeout=timeout_s)
