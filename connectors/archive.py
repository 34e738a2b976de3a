"""Archive connector: every long-retained topic into Avro files in the lake.

Each Kafka partition has at most one open file, written under a ``.tmp``
name; it is closed when it grows past ``max_bytes``, gets older than
``max_age_s``, or its records move on to a new hour. Closing fsyncs the
data, renames it into place, then writes the manifest (see
:mod:`connectors.lake`). Offsets are committed only up to the first offset
of a still-open file, so Kafka never runs ahead of the closed files; on
assignment the manifests say where to resume and leftover ``.tmp`` files and
manifest-less data files of that partition are removed, so a crash at any
point writes nothing twice.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import fastavro
from fastavro.write import Writer

from connectors.base import TP, Batch, Connector, Item, Sink
from connectors.errors import StoreError, StoreUnavailable
from connectors.lake import (
    RAW_SCHEMA,
    RAW_SCHEMA_NAME,
    Manifest,
    RolloverPolicy,
    file_stem,
    fsync_dir,
    hour_dir,
    hour_of,
    offset_runs,
    parse_stem,
    resume_position,
    topic_dir,
)
from cosmic import topics
from cosmic.settings import Settings
from cosmic.timeutil import now_ms
from cosmic.topics import FOREVER, Topic
from schemas import catalog

log = logging.getLogger(__name__)

# Every long-retained topic; the DLQ's raw bytes are kept as ArchivedMessage records.
TOPICS: tuple[Topic, ...] = tuple(t for t in topics.ALL if t.retention_ms == FOREVER)


@dataclass
class _OpenFile:
    topic: str
    partition: int
    schema: str
    folder: Path
    stem: str
    fh: IO[bytes]
    writer: Writer
    hour: datetime
    opened: float = field(default_factory=time.monotonic)
    offsets: list[int] = field(default_factory=list)
    min_ts: int = 0
    max_ts: int = 0

    @property
    def tmp(self) -> Path:
        return self.folder / f"{self.stem}.avro.tmp"

    def size(self) -> int:
        # Written blocks plus the block being filled (uncompressed, so an upper bound).
        pending: Any = self.writer.io  # a buffer with tell() at runtime; typed as an encoder
        return self.fh.tell() + int(pending.tell())


class ArchiveSink(Sink):
    name = "archive"

    def __init__(self, settings: Settings, routes: Mapping[str, Topic],
                 policy: RolloverPolicy | None = None, lake: Path | None = None) -> None:
        self.lake = lake or settings.lake_dir
        self.routes = dict(routes)
        self.policy = policy or RolloverPolicy()
        self.files_closed = 0
        self._open: dict[TP, _OpenFile] = {}
        self._consumed: dict[TP, int] = {}

    def open(self) -> str:
        try:
            self.lake.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreUnavailable(f"lake folder {self.lake}: {exc}") from None
        return (f"lake {self.lake}: files roll at {self.policy.max_bytes} bytes or "
                f"{self.policy.max_age_s:g}s")

    def close(self) -> None:
        # Unclosed files were never committed: drop them, the records will be read again.
        for tp in list(self._open):
            self._abandon(tp)

    def resume_positions(self, tps: Collection[TP]) -> dict[TP, int]:
        out = {}
        for topic, partition in tps:
            self._clean_leftovers(topic, partition)
            pos = resume_position(self.lake, topic, partition)
            if pos is not None:
                out[(topic, partition)] = pos
        return out

    def write(self, batch: Batch) -> dict[TP, int]:
        try:
            for item in batch.items:
                self._append(item)
        except OSError as exc:
            raise StoreError(f"archive write failed: {exc}") from None
        self._consumed.update(batch.positions)
        return self._durable(batch.positions)

    def poll_durable(self) -> dict[TP, int]:
        now = time.monotonic()
        aged = [tp for tp, f in self._open.items()
                if self.policy.reason(f.size(), now - f.opened) is not None]
        for tp in aged:
            self._finish(tp)
        return self._durable(aged)

    def drain(self) -> dict[TP, int]:
        tps = list(self._open)
        for tp in tps:
            self._finish(tp)
        return self._durable(self._consumed)

    def release(self, tps: Collection[TP]) -> None:
        for tp in tps:
            if tp in self._open:
                self._abandon(tp)
            self._consumed.pop(tp, None)

    # -- files ---------------------------------------------------------------------

    def _append(self, item: Item) -> None:
        tp = (item.topic, item.partition)
        ts = item.timestamp_ms if item.timestamp_ms > 0 else now_ms()
        hour = hour_of(ts)
        f = self._open.get(tp)
        if f is not None and self.policy.reason(f.size(), time.monotonic() - f.opened,
                                                f.hour, hour) is not None:
            self._finish(tp)
            f = None
        if f is None:
            f = self._start(item, hour, ts)
        f.writer.write(item.value)
        f.offsets.append(item.offset)
        f.min_ts = min(f.min_ts, ts)
        f.max_ts = max(f.max_ts, ts)

    def _start(self, item: Item, hour: datetime, ts: int) -> _OpenFile:
        known = item.carries.name in catalog.TOPIC_SCHEMAS
        schema_name = item.carries.value if known else RAW_SCHEMA_NAME
        schema = catalog.parsed(schema_name) if known else fastavro.parse_schema(RAW_SCHEMA)
        folder = hour_dir(self.lake, item.topic, hour)
        folder.mkdir(parents=True, exist_ok=True)
        stem = file_stem(item.partition, item.offset)
        fh = (folder / f"{stem}.avro.tmp").open("wb")
        writer = Writer(fh, schema, codec="deflate")
        f = _OpenFile(item.topic, item.partition, schema_name, folder, stem, fh, writer, hour,
                      min_ts=ts, max_ts=ts)
        self._open[(item.topic, item.partition)] = f
        return f

    def _finish(self, tp: TP) -> None:
        f = self._open.pop(tp)
        f.writer.flush()
        f.fh.flush()
        os.fsync(f.fh.fileno())
        f.fh.close()
        data = f.folder / f"{f.stem}.avro"
        os.replace(f.tmp, data)
        manifest = Manifest(
            topic=f.topic, partition=f.partition, first_offset=f.offsets[0],
            last_offset=f.offsets[-1], count=len(f.offsets), offsets=offset_runs(f.offsets),
            schema=f.schema, min_ts_ms=f.min_ts, max_ts_ms=f.max_ts, file=data.name)
        tmp = f.folder / f"{f.stem}.json.tmp"
        with tmp.open("w", encoding="utf-8") as out:
            out.write(manifest.to_json())
            out.flush()
            os.fsync(out.fileno())
        # The manifest's rename is the commit point of the file.
        os.replace(tmp, f.folder / f"{f.stem}.json")
        fsync_dir(f.folder)
        self.files_closed += 1

    def _abandon(self, tp: TP) -> None:
        f = self._open.pop(tp)
        f.fh.close()
        f.tmp.unlink(missing_ok=True)

    def _durable(self, tps: Collection[TP]) -> dict[TP, int]:
        """Positions safe to commit: up to an open file's start, else all consumed."""
        out = {}
        for tp in tps:
            f = self._open.get(tp)
            pos = f.offsets[0] if f is not None else self._consumed.get(tp)
            if pos is not None:
                out[tp] = pos
        return out

    def _clean_leftovers(self, topic: str, partition: int) -> None:
        """Remove what a crash left of this partition: temporary and manifest-less files."""
        root = topic_dir(self.lake, topic)
        for path in root.glob(f"date=*/hour=*/part-{partition:03d}-*"):
            name = path.name
            stem = name.split(".", 1)[0]
            if parse_stem(stem) is None:
                continue
            orphan = name.endswith(".avro") and not path.with_name(f"{stem}.json").exists()
            if name.endswith(".tmp") or orphan:
                log.info("archive: removing leftover %s", path)
                path.unlink(missing_ok=True)


def build(settings: Settings, routes: Mapping[str, Topic] | None = None,
          group_id: str = "cosmic-connector-archive", policy: RolloverPolicy | None = None,
          lake: Path | None = None, dlq_topic: Topic = topics.DLQ,
          instance_id: str | None = None) -> Connector:
    """The archive connector over ``routes`` (Kafka topic -> what it carries)."""
    routes = routes or {t.name: t for t in TOPICS}
    sink = ArchiveSink(settings, routes, policy, lake)
    return Connector(settings, sink, routes, group_id=group_id, dlq_topic=dlq_topic,
                     instance_id=instance_id)

