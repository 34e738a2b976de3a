"""``cosmic log tail``: print a topic's records, decoded through the schema registry, as JSON lines."""

from __future__ import annotations

import base64
from collections import deque
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import orjson
from confluent_kafka import Consumer, Message, TopicPartition

from cosmic import kafka, topics
from cosmic.errors import SerializationError, TopicError
from cosmic.settings import get_settings
from cosmic.timeutil import from_ms, to_ms
from schemas.catalog import short_name
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, SerializationContext
from streams.worlds.eventlog import raw_messages


def _jsonable(value: Any, bytes_mode: str) -> Any:
    """Avro values as JSON: unions of records as {"type": name, ...}, bytes per ``bytes_mode``."""
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], dict):
        return {"type": short_name(value[0]), **_jsonable(value[1], bytes_mode)}
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


def _committed(topic: str, partition: int, start: int, stop: int) -> int:
    """How many committed records ``[start, stop)`` of a partition holds."""
    if start >= stop:
        return 0
    return sum(1 for _ in raw_messages(get_settings(), topic, partition, start, stop - 1))


def _plan(
    consumer: Consumer, topic: str, n: int | None, from_beginning: bool
) -> tuple[list[TopicPartition], dict[int, int]]:
    """Where to start reading each partition, and where its initial batch stops (exclusive).

    On a transactional topic commit markers take offsets too, so the last N offsets
    can hold far fewer than N records: the window grows until it holds N (or the
    whole partition)."""
    metadata = consumer.list_topics(topic, timeout=10)
    info = metadata.topics.get(topic)
    if info is None or info.error is not None:
        raise TopicError(f"topic {topic!r} does not exist")
    assignment, stops = [], {}
    for p in sorted(info.partitions):
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        window = max(n or 0, 1)
        if from_beginning:
            start, stop = low, high
            while n is not None:
                stop = min(high, low + window)
                if stop == high or _committed(topic, p, low, stop) >= n:
                    break
                window *= 4
        else:
            start, stop = high, high
            while n:
                start = max(low, high - window)
                if start == low or _committed(topic, p, start, high) >= n:
                    break
                window *= 4
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
@click.option("--key", default=None, help="only records with this key (read from its partition only)")
@click.option("--world", "world_id", default=None,
              help="only records of this world (keyed by it, or carrying it as world_id)")
@click.option("--from-time", "from_time", default=None, metavar="ISO8601",
              help="only records at or after this time")
@click.option("--to-time", "to_time", default=None, metavar="ISO8601",
              help="only records at or before this time")
def tail(
    topic: str, n: int | None, from_beginning: bool, follow: bool, bytes_mode: str, raw: bool, url: str | None,
    key: str | None, world_id: str | None, from_time: str | None, to_time: str | None,
) -> None:
    """Print TOPIC's last N records (all partitions, by timestamp) as JSON lines.

    Values are decoded with the writer's schema from the registry; the DLQ
    (raw bytes) is printed with its headers. Nothing is committed. With
    --key, --world, --from-time or --to-time, the records that match are
    scanned for and the last N of them printed (the first N with
    --from-beginning; all with --from-time and no -n).
    """
    if key or world_id or from_time or to_time:
        _tail_filtered(topic, n, from_beginning, bytes_mode, raw, url,
                       key, world_id, _epoch_ms(from_time), _epoch_ms(to_time))
        return
    settings = get_settings()
    name = topic  # any topic may be tailed, declared or not (test topics, _schemas)
    if n is None and not from_beginning:
        n = 10
    consumer = kafka.reader(settings, "log-tail")
    client = RegistryClient.for_url(settings, url)
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
        idle = 0
        # Transactional topics end in commit markers no message is returned for, so a
        # partition is also done once the consumer's position has passed its stop,
        # or after a stretch with nothing to read.
        while pending and idle < 100:  # 10 s with nothing at all: say so below
            msg = consumer.poll(0.1)
            if msg is None:
                idle += 1
                for tp in consumer.position([TopicPartition(name, p) for p in pending]):
                    if tp.offset >= stops[tp.partition]:
                        pending.discard(tp.partition)
                continue
            idle = 0
            if msg.error():
                continue
            p, offset = msg.partition() or 0, msg.offset() or 0
            if offset < stops[p]:
                batch.append(msg)
            if offset + 1 >= stops[p]:
                pending.discard(p)
        if pending:
            click.echo(f"warning: partitions {sorted(pending)} of {name} sent nothing for 10 s "
                       "before their end (an open transaction?): showing what arrived",
                       err=True)
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


def _epoch_ms(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise click.BadParameter(f"give a time zone in {text!r}, e.g. Z or +00:00")
    return to_ms(moment)


def _tail_filtered(
    topic: str, n: int | None, from_beginning: bool, bytes_mode: str, raw: bool, url: str | None,
    key: str | None, world_id: str | None, from_ms: int | None, to_ms: int | None,
) -> None:
    settings = get_settings()
    consumer = kafka.reader(settings, "log-tail")
    client = RegistryClient.for_url(settings, url)
    raw = raw or topic == topics.DLQ.name or topic.startswith("_")
    deserialize = None if raw else AvroDeserializer(client)
    wanted_key = key.encode() if key is not None else None
    world_key = world_id.encode() if world_id is not None else None
    if n is None and from_ms is None and not from_beginning:
        n = 10
    kept: deque[bytes] = deque(maxlen=n if (n and not from_beginning) else None)
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None:
            raise TopicError(f"topic {topic!r} does not exist")
        parts = sorted(info.partitions)
        if wanted_key is not None:
            parts = [kafka.partition_for(wanted_key, len(parts))]
        matches: list[tuple[int, int, int, bytes]] = []
        for p in parts:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = low
            if from_ms is not None:
                (found,) = consumer.offsets_for_times([TopicPartition(topic, p, from_ms)], timeout=10)
                start = found.offset if found.offset >= 0 else high
            if start >= high:
                continue
            consumer.assign([TopicPartition(topic, p, start)])
            done, idle = False, 0
            # A batch call waits its whole timeout unless it fills up: poll in short
            # slices and stop once the position (which steps over transaction markers)
            # reaches the end, or after ten seconds of nothing.
            while not done and idle < 200:
                msgs = consumer.consume(500, timeout=0.05)
                idle = 0 if msgs else idle + 1
                (pos,) = consumer.position([TopicPartition(topic, p)])
                done = pos.offset >= high
                for msg in msgs:
                    offset = msg.offset() or 0
                    done = done or offset + 1 >= high
                    if msg.error() or offset >= high:
                        continue
                    ts = msg.timestamp()[1]
                    if to_ms is not None and ts > to_ms:
                        done = True
                        break
                    if wanted_key is not None and msg.key() != wanted_key:
                        continue
                    line = _line(msg, deserialize, bytes_mode)
                    if world_key is not None and msg.key() != world_key:
                        value = orjson.loads(line).get("value")
                        if not (isinstance(value, dict) and value.get("world_id") == world_id):
                            continue
                    matches.append((ts, p, offset, line))
        matches.sort()
        if from_beginning and n is not None:
            matches = matches[:n]
        for *_, line in matches:
            kept.append(line)
        for line in kept:
            click.echo(line)
    finally:
        consumer.close()
        client.close()


@log.command()
@click.argument("topic")
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of a table")
def stats(topic: str, as_json: bool) -> None:
    """Per partition of TOPIC: offsets, record count, first/last timestamps, and each
    consumer group's committed offset and lag."""
    from confluent_kafka import ConsumerGroupTopicPartitions

    settings = get_settings()
    admin_client = kafka.admin(settings)
    consumer = kafka.reader(settings, "log-stats",
                              **{"isolation.level": "read_uncommitted"})
    try:
        info = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if info is None or info.error is not None:
            raise TopicError(f"topic {topic!r} does not exist")
        rows: list[dict[str, Any]] = []
        for p in sorted(info.partitions):
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            rows.append({"partition": p, "low": low, "high": high, "records": high - low,
                         "first_ts": _ts_at(consumer, topic, p, low, high, first=True),
                         "last_ts": _ts_at(consumer, topic, p, low, high, first=False),
                         "groups": {}})
        groups = admin_client.list_consumer_groups(request_timeout=10).result().valid
        for listing in groups:
            gid = listing.group_id
            if gid.startswith(("cosmic-log-", "cosmic-replay-", "cosmic-export-", "cosmic-topics-")):
                continue  # our own throwaway readers
            request = [ConsumerGroupTopicPartitions(
                gid, [TopicPartition(topic, r["partition"]) for r in rows])]
            for fut in admin_client.list_consumer_group_offsets(request).values():
                for tp in fut.result(timeout=10).topic_partitions:
                    if tp.offset >= 0:
                        row = rows[tp.partition]
                        row["groups"][gid] = {"committed": tp.offset,
                                              "lag": max(0, row["high"] - tp.offset)}
    finally:
        consumer.close()
    if as_json:
        click.echo(orjson.dumps({"topic": topic, "partitions": rows}, option=orjson.OPT_INDENT_2))
        return
    click.echo(f"{topic}")
    click.echo(f"{'part':>4} {'low':>10} {'high':>10} {'records':>10}  {'first':<24} {'last':<24}")
    for r in rows:
        click.echo(f"{r['partition']:>4} {r['low']:>10} {r['high']:>10} {r['records']:>10}  "
                   f"{_fmt_ts(r['first_ts']):<24} {_fmt_ts(r['last_ts']):<24}")
    lags: dict[str, list[str]] = {}
    for r in rows:
        for gid, g in r["groups"].items():
            lags.setdefault(gid, []).append(f"p{r['partition']}={g['lag']}")
    if lags:
        click.echo("consumer group lag (records behind the end, per partition):")
        for gid, parts in sorted(lags.items()):
            click.echo(f"  {gid}: {' '.join(parts)}")
    else:
        click.echo("no consumer group has committed offsets on this topic")


def _ts_at(consumer: Consumer, topic: str, p: int, low: int, high: int, *, first: bool) -> int | None:
    """Timestamp of the first or last data record (the very last offsets may be
    transaction markers, so the tail is read from a few offsets back)."""
    if low >= high:
        return None
    start = low if first else max(low, high - 20)
    consumer.assign([TopicPartition(topic, p, start)])
    last, idle = None, 0
    while idle < 20:
        msgs = consumer.consume(100, timeout=0.05)
        idle = 0 if msgs else idle + 1
        for msg in msgs:
            if msg.error():
                continue
            if first:
                return msg.timestamp()[1]
            last = msg.timestamp()[1]
            if (msg.offset() or 0) + 1 >= high:
                return last
    return last


def _fmt_ts(ms: int | None) -> str:
    if ms is None:
        return "-"
    return from_ms(ms).isoformat(timespec="milliseconds")


@log.command("export")
@click.option("--world", "world_id", required=True, help="World whose records to export.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for the export (one Avro container file per topic).")
def export(world_id: str, out_dir: Path) -> None:
    """Copy a world's commands, ticks and snapshot history, with their offsets, to files.

    `cosmic replay --log-dir OUT` replays such a copy exactly as it replays Kafka,
    so a copy can be inspected, trimmed or tampered with offline.
    """
    from streams.worlds.eventlog import export_world

    counts = export_world(get_settings(), world_id, out_dir)
    for topic, n in counts.items():
        click.echo(f"{topic}: {n} records")
    click.echo(f"exported world {world_id} to {out_dir}")
