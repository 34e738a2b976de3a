"""The ecosystem and civilization Faust apps on real Kafka: events, rejections, DLQ, crashes.

Each test runs both apps as worker processes on private topics (a unique
topic prefix and app ids), feeds a scripted command, tick and delta log, and
reads what comes out with a ``read_committed`` consumer. The pure rules run
on the same log in-process as the oracle: Kafka must produce exactly what
they predict, once, even when a worker is SIGKILLed in the middle.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic

from cosmic import kafka, topics
from cosmic.settings import Settings
from cosmic.stack import Stack
from schemas.catalog import short_name
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.living import civics, outputs
from streams.living import testing as script
from streams.living.ecosystem_state import (
    EcoEvent,
    EcoParams,
    EcosystemWorld,
    PlanetStatus,
    Rejection,
)
from streams.living.faustapp import topic_name
from streams.living.service import FaustService

pytestmark = [pytest.mark.integration, pytest.mark.slow]

OUTPUTS = (topics.ECOSYSTEM_EVENTS, topics.CIVILIZATION_EVENTS, topics.COMMANDS_REJECTED,
           topics.DLQ, topics.PLANET_STATUS)


class Living:
    """Both apps on private topics, a producer of the scripted log, a reader of the outputs."""

    def __init__(self, settings: Settings) -> None:
        u = uuid.uuid4().hex[:10]
        self.world = f"w-{u}"
        living = settings.living.model_copy(update={
            "topic_prefix": f"test.living.{u}.", "ecosystem_app_id": f"test-eco-{u}",
            "civilization_app_id": f"test-civ-{u}", "step_every": 5, "session_timeout_s": 6.0,
            "start_from": "earliest"})
        self.settings = settings.model_copy(update={"living": living})
        self.registry = RegistryClient.from_settings(self.settings)
        self.admin = kafka.admin(self.settings)
        futures = self.admin.create_topics([NewTopic(self.name(t), 3, 1) for t in topics.ALL])
        for f in futures.values():
            f.result(30)
        self.eco = FaustService("ecosystem", "streams.ecosystem", self.settings, "INFO")
        self.civ = FaustService("civilization", "streams.civilization", self.settings, "INFO")
        self.eco.log_path = self.settings.state_dir / "logs" / f"test-ecosystem-{u}.log"
        self.civ.log_path = self.settings.state_dir / "logs" / f"test-civilization-{u}.log"
        self.producer: Producer = kafka.producer(self.settings)
        self._encoders: dict[str, AvroSerializer] = {}
        self.offsets: list[int] = []  # of the commands, in produce order
        self.consumer = kafka.consumer(self.settings, f"test-living-read-{u}")
        self.consumer.subscribe([self.name(t) for t in OUTPUTS])
        self._decode = AvroDeserializer(self.registry)
        self.seen: dict[str, list[tuple[bytes | None, Any]]] = defaultdict(list)

    def name(self, topic: topics.Topic) -> str:
        return topic_name(self.settings, topic)

    def send(self, topic: topics.Topic, record: dict[str, Any]) -> None:
        name = self.name(topic)
        encode = self._encoders.setdefault(name, AvroSerializer(self.registry, topic.value))
        self.producer.produce(name, key=self.world.encode(),
                              value=encode(record, SerializationContext(name)))

    def commands(self, *cmds: dict[str, Any] | bytes) -> list[int]:
        """Produce commands (records or raw bytes); their offsets, once delivered."""
        got: list[int] = []

        def done(err: Any, msg: Any) -> None:
            assert err is None, err
            got.append(msg.offset())

        for c in cmds:
            value = c if isinstance(c, bytes) else AvroSerializer(
                self.registry, "PlayerCommand")(c, SerializationContext(self.name(topics.COMMANDS)))
            self.producer.produce(self.name(topics.COMMANDS), key=self.world.encode(),
                                  value=value, on_delivery=done)
            self.producer.flush(30)  # one at a time: offsets in order
        return got

    def physics(self, ticks: range, bodies: script.Bodies,
                applied: dict[int, int]) -> list[tuple[str, int, dict[str, Any]]]:
        """Produce ticks and deltas; ``applied``: tick -> last command offset applied then."""
        log = []
        for n in ticks:
            t = script.tick(self.world, n, last_offset=applied.get(n))
            d = script.delta(self.world, n, bodies if n == ticks[0] else {})
            self.send(topics.PHYSICS_TICKS, t)
            self.send(topics.STATE_DELTAS, d)
            log += [("tick", 0, t), ("delta", 0, d)]
        self.producer.flush(30)
        return log

    def read(self, until: Callable[[], bool], timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not until():
            assert time.monotonic() < deadline, (
                f"timed out; seen {[(k, len(v)) for k, v in self.seen.items()]}; logs: "
                f"{self.eco.log_path}, {self.civ.log_path}; {self._debug()}")
            for msg in self.consumer.consume(500, timeout=0.2):
                if msg.error():
                    continue
                topic = str(msg.topic())[len(self.settings.living.topic_prefix):]
                value = msg if topic == topics.DLQ.name else self._decode(msg.value())
                self.seen[topic].append((msg.key(), value))

    def consumed_everything(self) -> bool:
        """Both apps have committed every record of their input topics. Their outputs go
        in the same transactions as those offsets, so all of them are visible now: a
        duplicate, if there were one, would be on the output topics already."""
        from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
        probe = kafka.reader(self.settings, "living-settled")
        try:
            for group in (self.settings.living.ecosystem_app_id,
                          self.settings.living.civilization_app_id):
                done = self.admin.list_consumer_group_offsets(
                    [ConsumerGroupTopicPartitions(group)])[group].result(30)
                for tp in done.topic_partitions:
                    if not tp.topic.startswith(self.settings.living.topic_prefix):
                        continue
                    high = probe.get_watermark_offsets(
                        TopicPartition(tp.topic, tp.partition), timeout=30)[1]
                    # A topic the apps write in transactions ends with a commit marker,
                    # which takes an offset but is never consumed.
                    marker = 1 if tp.topic.endswith(topics.PLANET_STATUS.name) else 0
                    if tp.offset < high - marker:
                        return False
            return True
        finally:
            probe.close()

    def read_to_end(self) -> None:
        """Read every output partition up to its end as it is now."""
        from confluent_kafka import TopicPartition
        probe = kafka.reader(self.settings, "living-ends")
        try:
            ends = {(self.name(t), p): probe.get_watermark_offsets(
                TopicPartition(self.name(t), p), timeout=30)[1] for t in OUTPUTS for p in range(3)}
        finally:
            probe.close()

        def reached() -> bool:
            assignment = self.consumer.assignment()
            if not assignment:
                return False
            at = {(tp.topic, tp.partition): tp.offset
                  for tp in self.consumer.position(assignment)}
            # A consumer's position moves past commit markers as it reads, so every
            # partition reaches its end exactly.
            return all(end == 0 or at.get(k, -1) >= end for k, end in ends.items())
        self.read(reached, timeout_s=60)

    def _debug(self) -> str:
        from confluent_kafka import TopicPartition
        out = []
        for iso in ("read_uncommitted", "read_committed"):
            c = kafka.consumer(self.settings, f"dbg-{uuid.uuid4().hex}", **{"isolation.level": iso})
            tps = [TopicPartition(self.name(t), p, 0) for t in OUTPUTS for p in range(3)]
            c.assign(tps)
            n: Counter[str] = Counter()
            end = time.monotonic() + 5
            while time.monotonic() < end:
                for m in c.consume(500, timeout=0.2):
                    if not m.error():
                        n[f"{m.topic()[-20:]}/{m.partition()}"] += 1
            c.close()
            out.append(f"{iso}: {sorted(n.items())}")
        return " | ".join(out)

    def values(self, topic: topics.Topic) -> list[Any]:
        return [v for _, v in self.seen[topic.name]]

    def close(self) -> None:
        self.eco.stop()
        self.civ.stop()
        self.consumer.close()
        self.registry.close()
        prefix, apps = self.settings.living.topic_prefix, (
            self.settings.living.ecosystem_app_id, self.settings.living.civilization_app_id)
        ours = [t for t in self.admin.list_topics(timeout=30).topics
                if t.startswith(prefix) or t.startswith(apps)]
        if ours:
            for f in self.admin.delete_topics(ours, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # cleanup must not mask results
                    f.result(30)


@pytest.fixture
def living(settings: Settings, stack: Stack) -> Iterator[Living]:
    lw = Living(settings)
    try:
        yield lw
    finally:
        lw.close()


def oracle(world_id: str, log: list[tuple[str, int, dict[str, Any]]]) -> dict[str, list[Any]]:
    """What the apps must produce for ``log``, computed by the rules alone."""
    world = EcosystemWorld(world_id, EcoParams(step_every=5, time_scale=50.0))
    civs: dict[str, Any] = {}
    on_planet: dict[str, Any] = {}
    out: dict[str, list[Any]] = defaultdict(list)
    for kind, offset, rec in log:
        produced = (world.on_command(offset, rec) if kind == "cmd" else
                   world.on_tick(rec) if kind == "tick" else world.on_delta(rec))
        for o in produced:
            if isinstance(o, EcoEvent):
                out["eco"].append(outputs.ecosystem_event(world_id, o)["event_id"])
            elif isinstance(o, Rejection):
                out["rejected"].append((o.reason, o.offset))
            elif isinstance(o, PlanetStatus):
                res = civics.on_status(o.record, civs, on_planet)
                out["civ"] += [outputs.civilization_event(c, o.record["tick"], 0)["event_id"]
                               for c in res.changes]
                if res.refused:
                    out["rejected"].append((res.refused.reason, o.record["found"]["command_offset"]))
    return out


def _ids(values: list[dict[str, Any]]) -> list[str]:
    return [str(v["event_id"]) for v in values]


@pytest.mark.xfail(strict=False, reason=(
    "issue 18, load-dependent (CI, 2 busy cores): a crash of both Faust workers sometimes left "
    "an extra refusal or other civilization events than the oracle's, or a transaction that "
    "never commits. Two causes are fixed (a commit's offsets missed an event whose outputs it "
    "held: tests/unit/test_living_commit.py; a rebalance, which a broker blip causes, replayed "
    "events into the transaction holding their first outputs: the fault matrix's ecosystem "
    "row); the mark stays until CI shows the rest gone. "
    "The test still runs and reports XPASS/XFAIL"))
def test_scripted_world_events_rejections_dlq_and_crash_recovery(living: Living) -> None:
    w = living.world
    living.eco.start()
    living.civ.start()
    bodies = script.solar_system(2)
    # Phase 1: seeds (one on the star, one on no planet), a garbage record, foundings.
    cmds = [script.seed(w, 10, 1, 5000), script.seed(w, 1, 2, 50), script.seed(w, 99, 3, 50)]
    o_seed = living.commands(*cmds)
    o_bad = living.commands(b"\x00\x00\x00\x00\x01not avro")
    found = [script.found(w, 10, 7, "Ur"), script.found(w, 99, 8, "Nowhere")]
    o_found = living.commands(*found)
    log: list[tuple[str, int, dict[str, Any]]] = [
        ("cmd", o, c) for o, c in zip(o_seed + o_found, cmds + found, strict=True)]
    log += living.physics(range(1, 41), bodies, {2: o_seed[-1], 20: o_found[-1]})
    expected = oracle(w, log)
    living.read(lambda: len(living.values(topics.ECOSYSTEM_EVENTS)) >= len(expected["eco"])
                and len(living.values(topics.COMMANDS_REJECTED)) >= 3
                and len(living.values(topics.CIVILIZATION_EVENTS)) >= len(expected["civ"]))

    # Crash both workers (no commit, no goodbye) and bring them back: the tables
    # must come back from their changelogs. Phase 2 founds civilization 7 again.
    living.eco.kill()
    living.civ.kill()
    living.eco.start()
    living.civ.start()
    again = script.found(w, 10, 7, "Ur again")
    o_again = living.commands(again)
    log.append(("cmd", o_again[0], again))
    log += living.physics(range(41, 121), {}, {60: o_again[0]})
    # And crash the ecosystem once more in the middle of that stream.
    living.read(lambda: any(v["tick"] > 40 for v in living.values(topics.PLANET_STATUS)))
    living.eco.kill()
    living.eco.start()
    expected = oracle(w, log)
    living.read(lambda: len(living.values(topics.ECOSYSTEM_EVENTS)) >= len(expected["eco"])
                and len(living.values(topics.CIVILIZATION_EVENTS)) >= len(expected["civ"])
                and len(living.values(topics.COMMANDS_REJECTED)) >= 4, timeout_s=90)
    # Not a quiet spell but the cause: once both apps have committed every input, every
    # output they will ever make for it (duplicates included) is on the output topics.
    living.read(living.consumed_everything, timeout_s=90)
    living.read_to_end()

    eco = living.values(topics.ECOSYSTEM_EVENTS)
    dups = {d for d, n in Counter(_ids(eco)).items() if n > 1}
    assert not dups, sorted((v["tick"], v["planet_id"], v["event"][0][16:]) for v in eco if str(v["event_id"]) in dups)
    extra = [(v["tick"], v["planet_id"], v["event"]) for v in eco
             if str(v["event_id"]) not in set(expected["eco"])]
    assert sorted(_ids(eco)) == sorted(expected["eco"]), (extra, len(eco), len(expected["eco"]))
    # Per planet (one partition each) in the oracle's order.
    for pid in {v["planet_id"] for v in eco}:
        mine = [str(v["event_id"]) for v in eco if v["planet_id"] == pid]
        assert mine == [e for e in expected["eco"] if e in set(mine)]
    kinds = Counter(short_name(v["event"][0]) for v in eco)
    assert kinds["SpeciesEmerged"] >= 1 and kinds["PopulationChanged"] >= 5
    # Keys are planet ids, as the topic registry says.
    assert {k for k, _ in living.seen[topics.ECOSYSTEM_EVENTS.name]} <= {b"10", b"11"}

    civ = living.values(topics.CIVILIZATION_EVENTS)
    assert sorted(_ids(civ)) == sorted(expected["civ"]), (
        [(v["tick"], v["civilization_id"], v["event"]) for v in civ], len(expected["civ"]))
    assert next(short_name(v["event"][0]) for v in civ) == "CivilizationFounded"
    assert civ[0]["civilization_id"] == 7 and civ[0]["event"][1]["name"] == "Ur"
    assert any(v["event"][0].endswith("TechAdvanced") for v in civ)

    rejected = living.values(topics.COMMANDS_REJECTED)
    got = sorted((str(r["reason"]), int(r["command_offset"])) for r in rejected)
    assert got == sorted(expected["rejected"]) == sorted([
        ("NOT_PERMITTED", o_seed[1]), ("UNKNOWN_PLANET", o_seed[2]),
        ("UNKNOWN_PLANET", o_found[1]), ("DUPLICATE_ID", o_again[0])])
    assert all(r["message"] for r in rejected)
    assert {str(r["command_id"]) for r in rejected} == {
        str(c["command_id"]) for c in (cmds[1], cmds[2], found[1], again)}

    dlq = living.values(topics.DLQ)
    assert len(dlq) == 1
    headers = dict(dlq[0].headers())
    assert dlq[0].value() == b"\x00\x00\x00\x00\x01not avro"
    assert headers["cosmic.source.offset"] == str(o_bad[0]).encode()
    assert headers["cosmic.source.topic"] == living.name(topics.COMMANDS).encode()
    assert headers["cosmic.error.type"] in (b"TruncatedPayload", b"MalformedPayload")
