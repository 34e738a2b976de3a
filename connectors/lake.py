"""The archive lake's layout, manifests, and a reader for replay and batch jobs.

Layout::

    <lake>/topic=<name>/date=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>.avro
    <lake>/topic=<name>/date=YYYY-MM-DD/hour=HH/part-<partition>-<first offset>.json

Each ``.avro`` is an Avro object container file of one Kafka partition's
records, written with the catalog schema of what the topic carries (for a
topic without one, the DLQ, as ``ArchivedMessage`` records: key, value,
headers, timestamp); the ``.json`` manifest next to it names the topic, partition, first/last offset
and every offset the file holds (as runs, since transaction markers leave
gaps). A file counts only once its manifest exists: the data file is renamed
into place first, the manifest last. Folder date/hour come from the Kafka
timestamp of a file's first record, in UTC.

Read it back with :func:`read_topic`::

    for rec in read_topic(settings.lake_dir, "cosmic.commands.v1", start=t0, end=t1):
        handle(rec.partition, rec.offset, rec.value)
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import fastavro

from connectors.errors import LakeError
from cosmic.timeutil import from_ms, to_ms

MANIFEST_VERSION = 1
# Files of topics without a value schema (the DLQ) hold each message as it came.
RAW_SCHEMA_NAME = "ArchivedMessage"
RAW_SCHEMA: dict[str, Any] = {
    "type": "record", "name": RAW_SCHEMA_NAME, "namespace": "io.cosmicgarden.lake",
    "doc": "A Kafka message archived as it came, for topics whose values have no schema.",
    "fields": [
        {"name": "key", "type": ["null", "bytes"], "default": None},
        {"name": "value", "type": ["null", "bytes"], "default": None},
        {"name": "timestamp_ms", "type": "long"},
        {"name": "headers", "type": {"type": "array", "items": {
            "type": "record", "name": "Header", "fields": [
                {"name": "name", "type": "string"},
                {"name": "value", "type": ["null", "bytes"], "default": None}]}}},
    ],
}
_STEM = re.compile(r"^part-(\d{3,})-(\d{20})$")


def hour_of(ts_ms: int) -> datetime:
    """The UTC hour a Kafka timestamp falls in."""
    return from_ms(ts_ms).replace(minute=0, second=0, microsecond=0)


def topic_dir(lake: Path, topic: str) -> Path:
    return lake / f"topic={topic}"


def hour_dir(lake: Path, topic: str, hour: datetime) -> Path:
    """``topic=<name>/date=YYYY-MM-DD/hour=HH`` under the lake."""
    hour = hour.astimezone(UTC)
    return topic_dir(lake, topic) / f"date={hour:%Y-%m-%d}" / f"hour={hour:%H}"


def file_stem(partition: int, first_offset: int) -> str:
    # Named by where they start: a file rewritten after a crash gets the same name.
    return f"part-{partition:03d}-{first_offset:020d}"


def parse_stem(stem: str) -> tuple[int, int] | None:
    m = _STEM.match(stem)
    return (int(m.group(1)), int(m.group(2))) if m else None


def offset_runs(offsets: Iterable[int]) -> list[list[int]]:
    """Increasing offsets as ``[start, count]`` runs of consecutive values."""
    runs: list[list[int]] = []
    for o in offsets:
        if runs and o == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        elif runs and o <= runs[-1][0] + runs[-1][1] - 1:
            raise LakeError(f"offsets must increase: {o} after {runs[-1][0] + runs[-1][1] - 1}")
        else:
            runs.append([o, 1])
    return runs


def expand_runs(runs: Iterable[Iterable[int]]) -> list[int]:
    out: list[int] = []
    for start, count in runs:
        out.extend(range(start, start + count))
    return out


@dataclass(frozen=True, slots=True)
class Manifest:
    topic: str
    partition: int
    first_offset: int
    last_offset: int
    count: int
    offsets: list[list[int]]  # runs of [start, count]
    schema: str
    min_ts_ms: int
    max_ts_ms: int
    file: str
    version: int = MANIFEST_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str, where: str = "manifest") -> Manifest:
        try:
            raw = json.loads(text)
            m = cls(**raw)
        except (ValueError, TypeError) as exc:
            raise LakeError(f"{where} is not a valid manifest: {exc}") from None
        offsets = expand_runs(m.offsets)
        if (m.version != MANIFEST_VERSION or len(offsets) != m.count or not offsets
                or offsets[0] != m.first_offset or offsets[-1] != m.last_offset):
            raise LakeError(f"{where} is inconsistent: version {m.version}, count {m.count}, "
                            f"offsets {m.first_offset}..{m.last_offset} vs runs {m.offsets}")
        return m


def read_manifest(path: Path) -> Manifest:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise LakeError(f"cannot read manifest {path}: {exc}") from None
    return Manifest.from_json(text, str(path))


def manifests(lake: Path, topic: str, partition: int | None = None) -> list[tuple[Path, Manifest]]:
    """Every manifest of a topic (optionally one partition), by partition then offset."""
    pattern = f"part-{partition:03d}-*.json" if partition is not None else "part-*.json"
    found = [(p, read_manifest(p)) for p in topic_dir(lake, topic).glob(f"date=*/hour=*/{pattern}")]
    return sorted(found, key=lambda pm: (pm[1].partition, pm[1].first_offset))


def resume_position(lake: Path, topic: str, partition: int) -> int | None:
    """The offset after the last one archived for this partition; None if nothing is."""
    found = manifests(lake, topic, partition)
    return max(m.last_offset for _, m in found) + 1 if found else None


@dataclass(frozen=True, slots=True)
class LakeRecord:
    topic: str
    partition: int
    offset: int
    value: Any


def read_topic(lake: Path, topic: str, start: datetime | None = None,
               end: datetime | None = None,
               partitions: Iterable[int] | None = None) -> Iterator[LakeRecord]:
    """Records of ``topic`` from the lake, partition by partition, in offset order.

    ``start``/``end`` (UTC, end exclusive) pick the files whose Kafka
    timestamps overlap the range; filter on the events' own time fields for
    anything finer. Unions of records come back as ``(record name, record)``
    pairs, as the serde returns them.
    """
    wanted = set(partitions) if partitions is not None else None
    lo = to_ms(start) if start else None
    hi = to_ms(end) if end else None
    last: dict[int, int] = {}
    for path, m in manifests(lake, topic):
        if wanted is not None and m.partition not in wanted:
            continue
        if (lo is not None and m.max_ts_ms < lo) or (hi is not None and m.min_ts_ms >= hi):
            continue
        if m.first_offset <= last.get(m.partition, -1):
            raise LakeError(f"{path} overlaps an earlier file of partition {m.partition}")
        last[m.partition] = m.last_offset
        yield from _read_file(path.with_name(m.file), m)


def _read_file(data: Path, m: Manifest) -> Iterator[LakeRecord]:
    offsets = iter(expand_runs(m.offsets))
    n = 0
    try:
        with data.open("rb") as fh:
            # Streamed: a file may be tens of megabytes of snapshots.
            for value in fastavro.reader(fh, return_record_name=True):
                offset = next(offsets, None)
                if offset is None:
                    raise LakeError(f"{data} holds more records than its manifest's {m.count}")
                n += 1
                yield LakeRecord(m.topic, m.partition, offset, value)
    except (OSError, ValueError, EOFError) as exc:
        raise LakeError(f"cannot read {data}: {exc}") from None
    if n != m.count:
        raise LakeError(f"{data} holds {n} records, its manifest {m.count}")


@dataclass(frozen=True, slots=True)
class RolloverPolicy:
    """When an open file is closed: too big, too old, or its records moved to a new hour."""

    max_bytes: int = 64 * 1024 * 1024
    max_age_s: float = 300.0

    def reason(self, size: int, age_s: float, file_hour: datetime | None = None,
               record_hour: datetime | None = None) -> str | None:
        if size >= self.max_bytes:
            return "size"
        if age_s >= self.max_age_s:
            return "age"
        # Only forward: a late record joins the current file rather than
        # flip-flopping files around an hour boundary.
        if file_hour is not None and record_hour is not None and record_hour > file_hour:
            return "hour"
        return None


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

