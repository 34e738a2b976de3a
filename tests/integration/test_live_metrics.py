"""The live-metrics PyFlink job: a scripted event log with known timestamps lands as
exactly the expected window values in TimescaleDB, late events inside the allowed
lateness are counted and those beyond it are not, and a job killed mid-stream and
restarted from its checkpoint still leaves every window exact.

Windows of 10 s, watermark 1 s behind the newest event, allowed lateness 5 s. The
script runs in phases, each started only once the job has observably reached the
previous one (rows in the table, or offsets committed by a checkpoint), because
lateness is judged against the watermark at the moment a record is read.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from confluent_kafka import TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from cosmic import kafka, metrics, topics
from cosmic.settings import Settings
from jobs.flink import windows as W
from jobs.process import JobProcess
from tests.integration.connectors_support import cli_env, produce, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(420)]

WINDOW_MS = 10_000
SCHEMAS = {"ticks": "PhysicsTick", "commands": "PlayerCommand", "rejected": "CommandRejected",
           "ecosystem": "EcosystemEvent", "civilization": "CivilizationEvent"}
REGISTERED = {"ticks": topics.PHYSICS_TICKS, "commands": topics.COMMANDS,
              "rejected": topics.COMMANDS_REJECTED, "ecosystem": topics.ECOSYSTEM_EVENTS,
              "civilization": topics.CIVILIZATION_EVENTS}
_BODIES = {
    "SpawnBody": {"body_id": 1, "kind": "PLANET", "mass": 1.0, "radius": 0.1,
                  "position": {"x": 0.0, "y": 0.0, "z": 0.0},
                  "velocity": {"x": 0.0, "y": 0.0, "z": 0.0}},
    "ApplyImpulse": {"body_id": 1, "dv": {"x": 1.0, "y": 0.0, "z": 0.0}},
    "FoundCivilization": {"planet_id": 2, "civilization_id": 9, "name": "Ur"},
}


class Script:
    """Builds wire records at known event times and the window events they imply."""

    def __init__(self, world: str, t0_ms: int) -> None:
        self.world, self.t0 = world, t0_ms
        self.records: dict[str, list[dict[str, Any]]] = {k: [] for k in SCHEMAS}
        self.events: list[W.Event] = []
        self._tick = 0

    def _ts(self, at_s: float) -> tuple[int, datetime]:
        ms = self.t0 + round(at_s * 1000)
        return ms, datetime.fromtimestamp(ms / 1000, tz=UTC)

    def tick(self, at_s: float) -> None:
        i = self._tick = self._tick + 1
        ms, ts = self._ts(at_s)
        step, applied, rejected = 100 + (i * 37) % 500, i % 3, int(i % 7 == 0)
        self.records["ticks"].append({
            "world_id": self.world, "tick": i, "sim_time": i * 0.01, "command_partition": None,
            "first_command_offset": None, "last_command_offset": None, "n_applied": applied,
            "n_rejected": rejected, "body_count": 5, "total_energy": -1.0,
            "state_hash": f"{i:016x}", "step_duration_us": step, "ts": ts})
        self.events.append(W.Tick(self.world, ms, step, applied, rejected))

    def command(self, at_s: float, player: str, kind: str) -> W.Command:
        ms, ts = self._ts(at_s)
        self.records["commands"].append({
            "command_id": uuid.uuid4(), "player_id": player, "world_id": self.world,
            "client_ts": ts, "received_ts": ts,
            "command": (f"io.cosmicgarden.{kind}", _BODIES[kind])})
        ev = W.Command(self.world, ms, kind, player)
        self.events.append(ev)
        return ev

    def rejected(self, at_s: float, reason: str) -> None:
        ms, ts = self._ts(at_s)
        self.records["rejected"].append({
            "command_id": uuid.uuid4(), "world_id": self.world, "player_id": "p1",
            "reason": reason, "message": "no", "tick": None, "command_offset": None, "ts": ts})
        self.events.append(W.Rejection(self.world, ms, reason))

    def population(self, at_s: float, tick: int, planet: int, species: int, current: int) -> None:
        ms, ts = self._ts(at_s)
        self.records["ecosystem"].append({
            "event_id": uuid.uuid4(), "world_id": self.world, "planet_id": planet, "tick": tick,
            "ts": ts, "event": ("io.cosmicgarden.PopulationChanged",
                                {"species_id": species, "previous": 0, "current": current})})
        self.events.append(W.Population(self.world, ms, tick, planet, species, current))

    def civilization(self, at_s: float, tick: int, civ: int, founded: bool) -> None:
        ms, ts = self._ts(at_s)
        body = (("io.cosmicgarden.CivilizationFounded",
                 {"name": "Ur", "founder_player_id": None, "species_id": None}) if founded else
                ("io.cosmicgarden.CivilizationCollapsed", {"reason": "famine", "peak_population": 9}))
        self.records["civilization"].append({
            "event_id": uuid.uuid4(), "world_id": self.world, "planet_id": 1,
            "civilization_id": civ, "tick": tick, "ts": ts, "event": body})
        self.events.append(W.Civilization(self.world, ms, tick, civ, founded))

    def send(self, settings: Settings, names: dict[str, str]) -> None:
        """Produce what was scripted since the last send, in order per topic."""
        for kind, records in self.records.items():
            if records:
                produce(settings, names[kind], SCHEMAS[kind], records)
                records.clear()


def _rows(settings: Settings, world: str) -> dict[tuple[str, str, int], float]:
    with psycopg.connect(settings.postgres.dsn) as conn:
        got = conn.execute("SELECT name, label, (extract(epoch FROM ts) * 1000)::bigint, value "
                           "FROM live_metrics WHERE world_id = %s", (world,)).fetchall()
    return {(n, lb, int(ts)): v for n, lb, ts, v in got}


def _has_window(settings: Settings, world: str, start_ms: int) -> bool:
    return ("physics.ticks_per_s", "", start_ms) in _rows(settings, world)


def _committed_to_end(settings: Settings, group: str, names: list[str]) -> bool:
    """True once a completed checkpoint has committed every partition up to its end:
    then every record so far went through every operator of the job."""
    consumer = kafka.consumer(settings, group)
    try:
        tps = [TopicPartition(n, 0) for n in names]
        committed = consumer.committed(tps, timeout=10)
        ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps]
        return all(c.offset == e for c, e in zip(committed, ends, strict=True))
    finally:
        consumer.close()


def _end_offset(settings: Settings, name: str) -> int:
    consumer = kafka.reader(settings, "test-live-end")
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(name, 0), timeout=10)[1])
    finally:
        consumer.close()


def _committed_offset(settings: Settings, group: str, name: str) -> int:
    """Where the group's last completed checkpoint left the (one-partition) topic."""
    consumer = kafka.consumer(settings, group)
    try:
        (tp,) = consumer.committed([TopicPartition(name, 0)], timeout=10)
        return max(int(tp.offset), 0)
    finally:
        consumer.close()


def _dlq_ends(settings: Settings) -> list[TopicPartition]:
    consumer = kafka.reader(settings, "test-live-dlq")
    try:
        parts = consumer.list_topics(topics.DLQ.name, timeout=10).topics[topics.DLQ.name].partitions
        return [TopicPartition(topics.DLQ.name, p,
                               consumer.get_watermark_offsets(TopicPartition(topics.DLQ.name, p),
                                                              timeout=10)[1]) for p in parts]
    finally:
        consumer.close()


def _dead_letters_from(settings: Settings, since: list[TopicPartition], topic: str) -> list[Any]:
    """Dead letters whose source is ``topic``, among those written after ``since``."""
    ends = {tp.partition: tp.offset for tp in _dlq_ends(settings)}
    consumer = kafka.reader(settings, "test-live-dlq")
    found = []
    try:
        consumer.assign(since)
        left = {tp.partition for tp in since if ends[tp.partition] > tp.offset}
        deadline = time.monotonic() + 30
        while left and time.monotonic() < deadline:
            for msg in consumer.consume(500, timeout=1.0):
                if msg.error():
                    continue
                headers = dict(msg.headers() or [])
                if headers.get("cosmic.source.topic") == topic.encode():
                    found.append(msg)
                if (msg.offset() or 0) + 1 >= ends[msg.partition() or 0]:
                    left.discard(msg.partition() or 0)
    finally:
        consumer.close()
    return found


def _flink_metrics_url(settings: Settings, job: JobProcess) -> str:
    """The job's Flink reporter, from the file_sd target its driver process wrote."""
    assert job.proc is not None
    target = metrics.targets_dir(settings) / f"flink-{job.proc.pid}.json"
    wait_for(target.exists, 60, f"the Flink reporter's target {target}", job.failure)
    (entry,) = json.loads(target.read_text())
    return f"http://{entry['targets'][0]}/metrics"


def _decoder_counts(url: str) -> tuple[float, float]:
    """Records into and out of the decode operator, as Flink's reporter exposes them (the
    operator is named after its chain: ``decode__Extract_Timestamp``)."""
    counts = {"numRecordsIn": 0.0, "numRecordsOut": 0.0}
    for fam in text_string_to_metric_families(httpx.get(url, timeout=10).text):
        for sample in fam.samples:
            kind = sample.name.removeprefix("flink_taskmanager_job_task_operator_")
            if kind in counts and sample.labels.get("operator_name", "").startswith("decode"):
                counts[kind] += sample.value
    return counts["numRecordsIn"], counts["numRecordsOut"]


def _scraped_up(settings: Settings, url: str) -> bool:
    """The local Prometheus has scraped ``url`` and found it up (within two intervals)."""
    instance = url.removeprefix("http://").removesuffix("/metrics")
    prometheus = f"http://127.0.0.1:{settings.prometheus.port}/api/v1/query"
    deadline = time.monotonic() + 4 * settings.prometheus.scrape_interval_s + 10
    while time.monotonic() < deadline:
        result = httpx.get(prometheus, params={"query": f'up{{instance="{instance}"}}'},
                           timeout=10).json()["data"]["result"]
        if result and result[0]["value"][1] == "1":
            return True
        time.sleep(1)
    return False


def _job(settings: Settings, tmp_path: Path, names: dict[str, str], group: str) -> JobProcess:
    routes = [a for kind, n in names.items() for a in ("--route", f"{n}={REGISTERED[kind].name}")]
    env = cli_env(settings,
                  COSMIC_LIVE_METRICS__WINDOW_MS=str(WINDOW_MS),
                  COSMIC_LIVE_METRICS__OUT_OF_ORDERNESS_MS="1000",
                  COSMIC_LIVE_METRICS__ALLOWED_LATENESS_MS="5000",
                  COSMIC_LIVE_METRICS__CHECKPOINT_INTERVAL_MS="3000",
                  COSMIC_CACHE_DIR=str(settings.cache_dir))
    return JobProcess("live-metrics", tmp_path / "job.log",
                      [*routes, "--group-id", group, "--checkpoint-dir", str(tmp_path / "chk")],
                      env=env)


def test_windows_are_exact_with_late_events_and_a_restart(settings, topic_factory, tmp_path):
    names = {kind: topic_factory(partitions=1, prefix=f"test.live.{kind}") for kind in SCHEMAS}
    world, group = f"w-{uuid.uuid4().hex[:8]}", f"test-live-{uuid.uuid4().hex[:8]}"
    # Ten minutes ago, on a window boundary: event time, not wall-clock time, drives the job.
    t0 = (int(time.time() * 1000) // WINDOW_MS) * WINDOW_MS - 600_000
    s = Script(world, t0)

    # Phase 1a: the first window's events. The job reads topics in no set order, so a
    # phase only starts once a checkpoint shows the previous one fully processed;
    # otherwise a tick from a later phase could push the watermark past records
    # still unread in another topic.
    for k in range(20):
        s.tick(k * 0.5)
    for at, player, kind in [(0.2, "p1", "SpawnBody"), (1.0, "p2", "ApplyImpulse"),
                             (3.3, "p1", "ApplyImpulse"), (9.9, "p3", "SpawnBody")]:
        s.command(at, player, kind)
    s.rejected(2.0, "RATE_LIMITED")
    s.population(1.0, 10, planet=1, species=1, current=100)
    s.civilization(3.0, 5, civ=1, founded=True)

    dlq_before = _dlq_ends(settings)
    job = _job(settings, tmp_path, names, group)
    job.start()
    try:
        sent = sum(len(r) for r in s.records.values()) + 1
        s.send(settings, names)
        # Bytes our serde cannot read: dead-lettered, and nothing else changes.
        produce(settings, names["ticks"], SCHEMAS["ticks"], [], garbage=1)
        wait_for(lambda: _committed_to_end(settings, group, list(names.values())), 120,
                 "a checkpoint covering phase 1a", job.failure)
        # Flink's own reporter, found where every process publishes its /metrics, counts
        # exactly the records phase 1a sent into the decoder, and one fewer out of it
        # (the garbage went to the dead letters).
        flink = _flink_metrics_url(settings, job)
        wait_for(lambda: _decoder_counts(flink) == (sent, sent - 1), 30,
                 f"Flink's reporter to count {sent} records into decode", job.failure)
        assert _scraped_up(settings, flink), "the local Prometheus does not scrape Flink"

        # Phase 1b: up to 21.5 s, so the watermark reaches 20.5 s: windows [0,10) and
        # [10,20) fire, and [0,10) is final (its lateness ended at 15 s).
        for k in range(20, 44):
            s.tick(k * 0.5)
        for at, player, kind in [(10.0, "p2", "ApplyImpulse"), (14.2, "p2", "SpawnBody"),
                                 (21.0, "p4", "ApplyImpulse")]:
            s.command(at, player, kind)
        s.rejected(11.0, "UNKNOWN_BODY")
        s.rejected(12.0, "RATE_LIMITED")
        s.population(12.0, 20, planet=1, species=1, current=150)
        s.population(15.0, 30, planet=2, species=2, current=50)
        s.civilization(13.0, 25, civ=2, founded=True)
        s.civilization(14.0, 26, civ=1, founded=False)
        s.send(settings, names)
        wait_for(lambda: _has_window(settings, world, t0 + 10_000), 120,
                 "window [10,20) to fire", job.failure)

        # Phase 2: late events inside the lateness of [10,20) (open until the watermark
        # passes 25 s): a command by a new player, of a new type, and a population change.
        s.command(12.5, "p9", "FoundCivilization")
        s.population(16.0, 31, planet=1, species=1, current=175)
        s.send(settings, names)
        wait_for(lambda: _committed_to_end(settings, group, list(names.values())), 60,
                 "a checkpoint covering the late events", job.failure)

        # Phase 3a: a command beyond the lateness of [0,10) (final since the watermark
        # passed 15 s), more of the stream, then a crash before a checkpoint covers this
        # phase (checked below): the restarted job then reads the too-late command again
        # with its watermark starting from scratch, and must still drop it.
        phase_3a_from = _end_offset(settings, names["commands"])
        too_late = s.command(5.0, "p8", "SpawnBody")
        s.events.remove(too_late)
        for k in range(44, 60):
            s.tick(k * 0.5)
        s.command(24.0, "p1", "SpawnBody")
        s.civilization(25.0, 40, civ=3, founded=True)
        s.send(settings, names)
    finally:
        job.kill()
    # The premise of phase 3b, proven rather than hoped for: no checkpoint covered 3a.
    assert _committed_offset(settings, group, names["commands"]) <= phase_3a_from, (
        "a checkpoint covered phase 3a before the crash: the restart would not re-read it")

    # Phase 3b: restart from the checkpoint and finish: ticks to 41.5 s, so the
    # watermark (40.5 s) fires [30,40) and closes [20,30) for good.
    job = _job(settings, tmp_path, names, group)
    job.start()
    try:
        for k in range(60, 84):
            s.tick(k * 0.5)
        s.command(33.0, "p5", "ApplyImpulse")
        s.rejected(35.0, "UNKNOWN_BODY")
        s.population(36.0, 50, planet=2, species=2, current=0)
        s.send(settings, names)
        expected = {(r.name, r.label, r.window_start_ms): r.value
                    for r in W.compute_all(s.events, WINDOW_MS) if r.window_start_ms < t0 + 40_000}
        wait_for(lambda: _rows(settings, world) == expected, 120,
                 "every window [0,40) to hold its exact values", job.failure)
    finally:
        job.stop()

    got = _rows(settings, world)
    dead = _dead_letters_from(settings, dlq_before, names["ticks"])
    assert [m.value() for m in dead] == [b"not avro at all"]
    # Spot checks by hand, so the test does not rest on the shared window math alone.
    assert got[("physics.ticks_per_s", "", t0)] == 2.0
    assert got[("players.active", "", t0)] == 3.0  # p8's too-late command is not counted
    assert got[("commands.per_s", "all", t0)] == 0.4
    assert got[("commands.per_s", "FoundCivilization", t0 + 10_000)] == 0.1  # the late one
    assert got[("players.active", "", t0 + 10_000)] == 2.0  # p2 and the late p9
    assert got[("ecosystem.population", "", t0 + 10_000)] == 225.0  # 175 (late) + 50
    assert got[("civilization.count", "", t0 + 20_000)] == 2.0  # civ 2 and civ 3
    assert got[("ecosystem.population", "", t0 + 30_000)] == 175.0
