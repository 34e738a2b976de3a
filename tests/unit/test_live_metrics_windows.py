"""The live-metrics job's pure pieces: window math and wire-format decoding (no Flink)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from cosmic import topics
from cosmic.errors import SerializationError
from jobs.flink import windows as W
from jobs.flink.decode import TOPICS, EventDecoder, UnsupportedTopic
from schemas.serde import AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry

# -- window math ---------------------------------------------------------------------


def test_windows_are_epoch_aligned():
    assert W.window_start(12_345, 10_000) == 10_000
    assert W.window_start(10_000, 10_000) == 10_000
    assert W.window_start(9_999, 10_000) == 0


def test_too_late_only_once_the_lateness_has_passed():
    # Window [0, 10 s), lateness 5 s: its state lives until the watermark reaches 14.999 s.
    assert not W.is_too_late(3_000, 9_000, 10_000, 5_000)    # on time
    assert not W.is_too_late(3_000, 14_998, 10_000, 5_000)   # late, still counted
    assert W.is_too_late(3_000, 14_999, 10_000, 5_000)       # beyond the lateness


def test_percentiles_are_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert W.percentile(values, 50) == 50
    assert W.percentile(values, 95) == 95
    assert W.percentile(values, 99) == 99
    assert W.percentile([7], 99) == 7
    assert W.percentile([1, 2, 3, 4], 50) == 2  # an observed value, never interpolated
    with pytest.raises(ValueError):
        W.percentile([], 50)


def _by_key(rows):
    return {(r.name, r.label): r.value for r in rows}


def test_one_window_by_hand():
    events = [
        W.Tick("w", 0, 300, 2, 0), W.Tick("w", 500, 100, 1, 1), W.Tick("w", 1_000, 200, 0, 1),
        W.Tick("w", 1_500, 400, 1, 0),
        W.Command("w", 10, "SpawnBody", "ann"), W.Command("w", 20, "SpawnBody", "bob"),
        W.Command("w", 30, "ApplyImpulse", "ann"),
        W.Rejection("w", 40, "RATE_LIMITED"),
    ]
    rows = W.window_metrics("w", 0, 2_000, events)
    assert all((r.world_id, r.window_start_ms, r.window_end_ms) == ("w", 0, 2_000) for r in rows)
    assert _by_key(rows) == {
        ("physics.ticks_per_s", ""): 2.0,            # 4 ticks in 2 s
        ("physics.step_duration_us.p50", ""): 200.0,
        ("physics.step_duration_us.p95", ""): 400.0,
        ("physics.step_duration_us.p99", ""): 400.0,
        ("commands.rejected_ratio", ""): 2 / 6,      # 2 rejected of 6 considered
        ("commands.per_s", "all"): 1.5,
        ("commands.per_s", "ApplyImpulse"): 0.5,
        ("commands.per_s", "SpawnBody"): 1.0,
        ("players.active", ""): 2.0,
        ("commands.rejections_per_s", "RATE_LIMITED"): 0.5,
    }


def test_a_window_without_ticks_reports_zero_ticks_and_no_percentiles():
    rows = _by_key(W.window_metrics("w", 0, 1_000, [W.Command("w", 5, "SpawnBody", "a")]))
    assert rows[("physics.ticks_per_s", "")] == 0.0
    assert not any(name.startswith("physics.step") for name, _ in rows)
    assert ("commands.rejected_ratio", "") not in rows


def test_gauges_carry_over_windows_in_event_time_order():
    events = [
        W.Population("w", 1_500, 3, planet_id=1, species_id=1, population=70),
        W.Population("w", 500, 1, planet_id=1, species_id=1, population=100),  # out of order
        W.Population("w", 600, 2, planet_id=2, species_id=5, population=10),
        W.Civilization("w", 700, 2, civilization_id=1, alive=True),
        W.Civilization("w", 2_100, 4, civilization_id=2, alive=True),
        W.Civilization("w", 2_200, 5, civilization_id=1, alive=False),
        W.Population("w", 2_500, 6, planet_id=2, species_id=None, population=0),  # planet gone
        W.Tick("w", 2_900, 100, 0, 0),
    ]
    rows = {(r.name, r.window_start_ms): r.value for r in W.compute_all(events, 1_000)}
    assert rows[("ecosystem.population", 0)] == 110.0
    assert rows[("civilization.count", 0)] == 1.0
    assert rows[("ecosystem.population", 1_000)] == 80.0
    assert rows[("ecosystem.population", 2_000)] == 70.0
    assert rows[("civilization.count", 2_000)] == 1.0  # 1 collapsed, 2 founded


def test_worlds_without_life_get_no_gauge_rows():
    rows = W.compute_all([W.Tick("w", 0, 1, 0, 0)], 1_000)
    assert {r.name for r in rows}.isdisjoint({"ecosystem.population", "civilization.count"})


# -- decoding --------------------------------------------------------------------------

TS = datetime(2026, 11, 29, 12, 0, 0, 250_000, tzinfo=UTC)
TS_MS = int(TS.timestamp() * 1000)


@pytest.fixture
def wire():
    registry = LocalRegistry()
    decoder = EventDecoder(registry, {t.name: t for t in TOPICS})

    def encode(topic: topics.Topic, record: dict) -> bytes:
        return AvroSerializer(registry, topic.value)(record, SerializationContext(topic.name))

    return decoder, encode


def test_decodes_each_record_type(wire):
    decode, encode = wire
    tick = {"world_id": "w", "tick": 7, "sim_time": 0.1, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": 2,
            "n_rejected": 1, "body_count": 3, "total_energy": -1.0, "state_hash": "ab",
            "step_duration_us": 1234, "ts": TS}
    assert decode(topics.PHYSICS_TICKS.name, encode(topics.PHYSICS_TICKS, tick)) == [
        W.Tick("w", TS_MS, 1234, 2, 1)]
    command = {"command_id": uuid.uuid4(), "player_id": "ann", "world_id": "w",
               "client_ts": datetime(2020, 1, 1, tzinfo=UTC), "received_ts": TS,
               "command": ("io.cosmicgarden.RemoveBody", {"body_id": 3})}
    # Event time is the gateway's receipt, not the client's clock.
    assert decode(topics.COMMANDS.name, encode(topics.COMMANDS, command)) == [
        W.Command("w", TS_MS, "RemoveBody", "ann")]
    rejected = {"command_id": uuid.uuid4(), "world_id": "w", "player_id": "ann",
                "reason": "UNKNOWN_BODY", "message": "?", "tick": None, "command_offset": None,
                "ts": TS}
    assert decode(topics.COMMANDS_REJECTED.name, encode(topics.COMMANDS_REJECTED, rejected)) == [
        W.Rejection("w", TS_MS, "UNKNOWN_BODY")]


@pytest.mark.parametrize(("body", "expected"), [
    (("io.cosmicgarden.PopulationChanged", {"species_id": 4, "previous": 1, "current": 9}),
     [W.Population("w", TS_MS, 11, 2, 4, 9)]),
    (("io.cosmicgarden.SpeciesExtinct", {"species_id": 4, "cause": "cold"}),
     [W.Population("w", TS_MS, 11, 2, 4, 0)]),
    (("io.cosmicgarden.PlanetDestroyed", {"cause": "collision", "merged_into": None}),
     [W.Population("w", TS_MS, 11, 2, None, 0)]),
])
def test_decodes_ecosystem_events_to_population(wire, body, expected):
    decode, encode = wire
    record = {"event_id": uuid.uuid4(), "world_id": "w", "planet_id": 2, "tick": 11, "ts": TS,
              "event": body}
    assert decode(topics.ECOSYSTEM_EVENTS.name, encode(topics.ECOSYSTEM_EVENTS, record)) == expected


def test_civilization_events_that_do_not_change_the_count_yield_nothing(wire):
    decode, encode = wire

    def civ(body):
        record = {"event_id": uuid.uuid4(), "world_id": "w", "planet_id": 1,
                  "civilization_id": 5, "tick": 3, "ts": TS, "event": body}
        return decode(topics.CIVILIZATION_EVENTS.name, encode(topics.CIVILIZATION_EVENTS, record))

    assert civ(("io.cosmicgarden.TechAdvanced", {"tech": "fire", "level": 1})) == []
    assert civ(("io.cosmicgarden.CivilizationCollapsed",
                {"reason": "war", "peak_population": 3})) == [
        W.Civilization("w", TS_MS, 3, 5, False)]


def test_bad_bytes_and_unknown_topics_raise_typed_errors(wire):
    decode, _ = wire
    with pytest.raises(SerializationError):
        decode(topics.PHYSICS_TICKS.name, b"not avro")
    with pytest.raises(UnsupportedTopic):
        decode("somewhere.else", b"\x00\x00\x00\x00\x01")
    with pytest.raises(UnsupportedTopic):
        EventDecoder(LocalRegistry(), {"x": topics.STATE_DELTAS})
    assert decode(topics.PHYSICS_TICKS.name, None) == []  # a tombstone carries nothing


# -- job wiring that needs no JVM ------------------------------------------------------


def test_restarts_resume_from_the_newest_complete_checkpoint(tmp_path):
    import os

    from jobs.flink.live_metrics import latest_checkpoint

    assert latest_checkpoint(tmp_path) is None
    for i, (job, chk) in enumerate([("old-job", "chk-7"), ("new-job", "chk-2")]):
        (tmp_path / job / chk).mkdir(parents=True)
        meta = tmp_path / job / chk / "_metadata"
        meta.write_bytes(b"x")
        os.utime(meta, (1_000 + i, 1_000 + i))
    # A checkpoint still being written has no _metadata yet: never resume from it.
    (tmp_path / "new-job" / "chk-3").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "new-job" / "chk-2"

    from jobs.flink.live_metrics import prune_checkpoints

    assert prune_checkpoints(tmp_path, tmp_path / "new-job" / "chk-2") == [tmp_path / "old-job"]
    assert latest_checkpoint(tmp_path) == tmp_path / "new-job" / "chk-2"


def test_the_source_reads_raw_bytes_of_every_routed_topic_read_committed():
    from cosmic.settings import Settings
    from jobs.flink.live_metrics import _source_ddl

    ddl = _source_ddl(Settings(), {"a.ticks": topics.PHYSICS_TICKS, "b.cmds": topics.COMMANDS},
                      "g1")
    assert "'topic' = 'a.ticks;b.cmds'" in ddl
    assert "'value.format' = 'raw'" in ddl
    assert "'properties.isolation.level' = 'read_committed'" in ddl
    assert "'properties.group.id' = 'g1'" in ddl
