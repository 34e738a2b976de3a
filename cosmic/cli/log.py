"""``cosmic log tail``: print a topic's records, decoded through the schema registry, as JSON lines."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError, TopicError
from cosmic.settings import get_settings
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext


def _jsonable(value: Any, bytes_mode: str) -> Any:
    """Avro values as JSON: unions of records as {"type": name, ...}, bytes per ``bytes_mode``."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        return {"type": value[0].rsplit(".", 1)[-1], **_jsonable(value[1], bytes_mode)}
    if isinstance(value, dict):
        return {k: _jsonable(v, bytes_mode) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, bytes_mode) for v in value]
    if isinstance(value, bytes):
        if bytes_mode == "base64":
            return base64.b64encode(value).decode()
        return f"<{len(value)} bytes>"
    return value


def _raw_value(value: bytes | None, bytes_mode: str) -> Any:
    """Undecoded values: base64 if asked, else text when UTF-8 (JSON in _schemas), else a summary."""
    if value is None:
        return None
    if bytes_mode == "base64":
        return _jsonable(value, bytes_mode)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return _jsonable(value, bytes_mode)


def _headers(msg: Message) -> list[tuple[str, str | bytes | None]]:
    raw = msg.headers() or []
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def _line(msg: Message, deserialize: AvroDeserializer | None, bytes_mode: str) -> bytes:
    key = msg.key()
    out: dict[str, Any] = {
        "topic": msg.topic(), "partition": msg.partition(), "offset": msg.offset(),
        "timestamp": msg.timestamp()[1],
        "key": key.decode("utf-8", "replace") if key is not None else None,
    }
    if deserialize is None:
        out["value"] = _raw_value(msg.value(), bytes_mode)
        out["headers"] = {
            k: v.decode("utf-8", "replace") if isinstance(v, bytes) else v
            for k, v in _headers(msg)
        }
    else:
        try:
            out["value"] = _jsonable(deserialize(msg.value(), SerializationContext(msg.topic() or "")), bytes_mode)
        except SerializationError as exc:
            # A bad record is shown, not fatal: tail exists to look at what is there.
            out["error"] = {"type": type(exc).__name__, "message": str(exc)}
    return orjson.dumps(out, option=orjson.OPT_NON_STR_KEYS)


def _plan(
    consumer: Consumer, topic: str, n: int | None, from_beginning: bool
) -> tuple[list[TopicPartition], dict[int, int]]:
    """Where to start reading each partition, and where its initial batch stops (exclusive)."""
    metadata = consumer.list_topics(topic, timeout=10)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        raise TopicError(f"topic {topic!r} does not exist")
    assignment, stops = [], {}
    for p in sorted(info.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        if from_beginning:
            start, stop = low, high if n is None else min(high, low + n)
        else:
            start, stop = max(low, high - (n or 0)), high
        assignment.append(TopicPartition(topic, p, start))
        stops[p] = stop
    return assignment, stops


@click.group()
def log() -> None:
    """Read the event log."""


@log.command()
@click.argument("topic")
@click.option("-n", "n", type=click.IntRange(min=0), default=None, help="how many records (default 10; all with --from-beginning)")
@click.option("--from-beginning", is_flag=True, help="start at the oldest record instead of the last N")
@click.option("-f", "--follow", is_flag=True, help="keep printing new records until interrupted")
@click.option("--bytes", "bytes_mode", type=click.Choice(["summary", "base64"]), default="summary",
              help="how to print Avro bytes fields (columnar data): their length, or base64")
@click.option("--raw", is_flag=True, help="do not decode values (implied for the DLQ and _schemas)")
@click.option("--registry-url", "url", default=None, metavar="URL", help="default: settings.registry.url")
def tail(
    topic: str, n: int | None, from_beginning: bool, follow: bool, bytes_mode: str, raw: bool, url: str | None
) -> None:
    """Print TOPIC's last N records (all partitions, by timestamp) as JSON lines.

    Values are decoded with the writer's schema from the registry; the DLQ
    (raw bytes) is printed with its headers. Nothing is committed.
    """
    settings = get_settings()
    name = topic  # any topic may be tailed, declared or not (test topics, _schemas)
    if n is None and not from_beginning:
        n = 10
    consumer = kafka.consumer(settings, group_id=f"cosmic-log-tail-{uuid.uuid4().hex[:8]}", client_id="cosmic-log-tail")
    client = RegistryClient(url or settings.registry.url)
    # The DLQ holds original bytes and _schemas JSON: shown raw, with headers.
    raw = raw or name == topics.DLQ.name or name.startswith("_")
    deserialize = None if raw else AvroDeserializer(client)
    try:
        assignment, stops = _plan(consumer, name, n, from_beginning)
        consumer.assign(assignment)
        # The initial batch: up to N records of each partition, then the N
        # oldest or newest of them all by timestamp, as `tail -n` would show.
        batch: list[Message] = []
        pending = {tp.partition for tp in assignment if tp.offset < stops[tp.partition]}
        while pending:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            p, offset = msg.partition() or 0, msg.offset() or 0
            if offset < stops[p]:
                batch.append(msg)
            if offset + 1 >= stops[p]:
                pending.discard(p)
        batch.sort(key=lambda m: (m.timestamp()[1], m.partition(), m.offset()))
        if n is not None:
            batch = batch[:n] if from_beginning else batch[len(batch) - n:] if n else []
        for msg in batch:
            click.echo(_line(msg, deserialize, bytes_mode))
        while follow:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error() and (msg.offset() or 0) >= stops[msg.partition() or 0]:
                click.echo(_line(msg, deserialize, bytes_mode))
    finally:
        consumer.close()
        client.close()


@log.command("export")
@click.option("--world", "world_id", required=True, help="World whose records to export.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the export (one Avro container file per topic).")
def export(world_id: str, out_dir: Path) -> None:
    """Copy a world's commands, ticks and snapshot history, with their offsets, to files.

    `cosmic replay --log-dir OUT` replays such a copy exactly as it replays Kafka,
    so a copy can be inspected, trimmed or tampered with offline.
    """
    from streams.physics.logs import export_world

    counts = export_world(get_settings(), world_id, out_dir)
    for topic, n in counts.items():
        click.echo(f"{topic}: {n} records")
    click.echo(f"exported world {world_id} to {out_dir}")
