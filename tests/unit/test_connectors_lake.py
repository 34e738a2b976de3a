"""Pure logic of the archive lake and sink: folder naming, rollover, manifests, resume."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from connectors.archive import TOPICS, ArchiveSink
from connectors.base import Batch, Item
from connectors.errors import LakeError
from connectors.lake import (
    Manifest,
    RolloverPolicy,
    expand_runs,
    file_stem,
    hour_dir,
    hour_of,
    manifests,
    offset_runs,
    parse_stem,
    read_topic,
    resume_position,
)
from cosmic import topics
from cosmic.settings import Settings

T0_MS = int(datetime(2026, 3, 4, 5, 59, 59, tzinfo=UTC).timestamp() * 1000)


def test_partition_folders_are_topic_date_hour_in_utc(tmp_path: Path):
    hour = hour_of(T0_MS)
    assert hour == datetime(2026, 3, 4, 5, tzinfo=UTC)
    assert hour_dir(tmp_path, "cosmic.commands.v1", hour) == (
        tmp_path / "topic=cosmic.commands.v1" / "date=2026-03-04" / "hour=05")
    assert hour_of(T0_MS + 1000) == datetime(2026, 3, 4, 6, tzinfo=UTC)


def test_file_names_sort_by_offset_and_parse_back():
    assert file_stem(2, 41) == "part-002-00000000000000000041"
    assert parse_stem(file_stem(2, 41)) == (2, 41)
    assert parse_stem("part-2-41") is None
    names = [file_stem(0, o) for o in (9, 10, 100)]
    assert sorted(names) == names


def test_offset_runs_compress_transaction_gaps():
    offsets = [0, 1, 2, 4, 5, 9]
    runs = offset_runs(offsets)
    assert runs == [[0, 3], [4, 2], [9, 1]]
    assert expand_runs(runs) == offsets
    with pytest.raises(LakeError):
        offset_runs([3, 2])


@pytest.mark.parametrize(("size", "age", "file_hour", "record_hour", "reason"), [
    (10, 1.0, 5, 5, None),
    (1000, 1.0, 5, 5, "size"),
    (10, 60.0, 5, 5, "age"),
    (10, 1.0, 5, 6, "hour"),
    (10, 1.0, 6, 5, None),  # a late record joins the current file
])
def test_rollover_decisions(size, age, file_hour, record_hour, reason):
    policy = RolloverPolicy(max_bytes=1000, max_age_s=60.0)
    fh = datetime(2026, 1, 1, file_hour, tzinfo=UTC)
    rh = datetime(2026, 1, 1, record_hour, tzinfo=UTC)
    assert policy.reason(size, age, fh, rh) == reason


def _manifest(**changes) -> Manifest:
    base = dict(topic="t", partition=1, first_offset=10, last_offset=13, count=3,
                offsets=[[10, 2], [13, 1]], schema="PhysicsTick", min_ts_ms=1, max_ts_ms=2,
                file="part-001-00000000000000000010.avro")
    return Manifest(**(base | changes))


def test_manifest_round_trip_and_validation():
    m = _manifest()
    assert Manifest.from_json(m.to_json()) == m
    with pytest.raises(LakeError, match="inconsistent"):
        Manifest.from_json(_manifest(count=4).to_json())
    with pytest.raises(LakeError, match="inconsistent"):
        Manifest.from_json(_manifest(last_offset=12).to_json())
    with pytest.raises(LakeError, match="not a valid manifest"):
        Manifest.from_json('{"topic": "t"}')
    with pytest.raises(LakeError, match="not a valid manifest"):
        Manifest.from_json("not json")


def test_archived_topics_are_the_long_retained_ones():
    names = {t.name for t in TOPICS}
    assert topics.COMMANDS.name in names and topics.PHYSICS_TICKS.name in names
    assert topics.STATE_SNAPSHOTS.name in names
    assert topics.DLQ.name in names  # kept as raw ArchivedMessage records
    assert topics.METRICS.name not in names  # short retention


def _tick(i: int) -> dict:
    return {"world_id": "w", "tick": i, "sim_time": 0.0, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": 0,
            "n_rejected": 0, "body_count": 1, "total_energy": 0.0, "state_hash": "h",
            "step_duration_us": 1, "ts": datetime(2026, 3, 4, 5, tzinfo=UTC)}


def _batch(topic: str, offsets: list[int], partition: int = 0, ts_ms: int = T0_MS) -> Batch:
    items = [Item(topic, topics.PHYSICS_TICKS, partition, o, ts_ms, b"w", _tick(o))
             for o in offsets]
    return Batch(items, {(topic, partition): offsets[-1] + 1})


def _sink(tmp_path: Path, **policy) -> ArchiveSink:
    settings = Settings(state_dir=tmp_path / "state")
    sink = ArchiveSink(settings, {}, RolloverPolicy(**policy))
    sink.open()
    return sink


def test_offsets_are_durable_only_up_to_an_open_file(tmp_path: Path):
    topic = f"t.{uuid.uuid4().hex[:6]}"
    sink = _sink(tmp_path, max_bytes=10**9, max_age_s=3600)
    assert sink.write(_batch(topic, [0, 1, 2])) == {(topic, 0): 0}
    assert sink.write(_batch(topic, [4, 5])) == {(topic, 0): 0}
    assert resume_position(sink.lake, topic, 0) is None  # nothing closed yet
    # Records of a new hour close the file: everything before them is durable.
    assert sink.write(_batch(topic, [6], ts_ms=T0_MS + 1000)) == {(topic, 0): 6}
    assert resume_position(sink.lake, topic, 0) == 6
    assert sink.drain() == {(topic, 0): 7}
    assert [(r.offset, r.value["tick"]) for r in read_topic(sink.lake, topic)] == [
        (0, 0), (1, 1), (2, 2), (4, 4), (5, 5), (6, 6)]
    hours = sorted(p.parent.name for p, _ in manifests(sink.lake, topic))
    assert hours == ["hour=05", "hour=06"]


def test_restart_removes_leftovers_and_resumes_after_closed_files(tmp_path: Path):
    topic = f"t.{uuid.uuid4().hex[:6]}"
    sink = _sink(tmp_path, max_bytes=1, max_age_s=3600)  # every record closes its file
    sink.write(_batch(topic, [0, 1, 2]))
    sink.write(_batch(topic, [3]))  # still open when we "crash"
    leftovers = list(sink.lake.rglob("*.tmp"))
    assert len(leftovers) == 1
    # A data file renamed just before a crash, without its manifest, is not archived.
    orphan = leftovers[0].parent / f"{file_stem(0, 99)}.avro"
    orphan.write_bytes(b"partial")
    again = _sink(tmp_path, max_bytes=1, max_age_s=3600)
    assert again.resume_positions([(topic, 0)]) == {(topic, 0): 3}
    assert not list(again.lake.rglob("*.tmp")) and not orphan.exists()
    sink.close()  # the "crashed" one: only releases its file handle now
    again.write(_batch(topic, [3, 4]))
    again.drain()
    assert [r.offset for r in read_topic(again.lake, topic)] == [0, 1, 2, 3, 4]


def test_age_rollover_without_new_records(tmp_path: Path):
    topic = f"t.{uuid.uuid4().hex[:6]}"
    sink = _sink(tmp_path, max_bytes=10**9, max_age_s=0.0)
    sink.write(_batch(topic, [0, 1]))  # the age check runs when the next record arrives
    assert sink.poll_durable() == {(topic, 0): 2}
    assert resume_position(sink.lake, topic, 0) == 2


def test_release_abandons_open_files(tmp_path: Path):
    topic = f"t.{uuid.uuid4().hex[:6]}"
    sink = _sink(tmp_path, max_bytes=10**9, max_age_s=3600)
    sink.write(_batch(topic, [0, 1]))
    sink.release([(topic, 0)])
    assert not list(sink.lake.rglob("*.tmp"))
    assert sink.drain() == {}


def test_reader_refuses_a_file_that_disagrees_with_its_manifest(tmp_path: Path):
    topic = f"t.{uuid.uuid4().hex[:6]}"
    sink = _sink(tmp_path, max_bytes=10**9, max_age_s=3600)
    sink.write(_batch(topic, [0, 1]))
    sink.drain()
    other = _sink(tmp_path / "other", max_bytes=10**9, max_age_s=3600)
    other.write(_batch(topic, [0, 1, 2]))
    other.drain()
    (path, m), = manifests(sink.lake, topic)
    (other_path, other_m), = manifests(other.lake, topic)
    path.with_name(m.file).write_bytes(other_path.with_name(other_m.file).read_bytes())
    with pytest.raises(LakeError, match="more records"):
        list(read_topic(sink.lake, topic))
