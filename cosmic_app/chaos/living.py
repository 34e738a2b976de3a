"""The Faust apps' rows: scripted input on private topics, judged by the rules alone.

**Ecosystem.**
The cell's worlds are scripted as the physics worker would log them (a star and
two planets each, species seeded on the planets): the seeds go to the private
commands topic before any instance runs, then the feed produces each world's
ticks and deltas. The ecosystem rules (``EcosystemWorld``) run over the same log
in this process and name every event and planet status the app must commit, in
order: world ``w``'s events are ``1..n`` in the rules' order, its statuses
``1..m``, and each committed record is matched to its number by its id.
Progress is counted in statuses, which come at a steady rate (one per planet
per step), where events come in bursts. The app commits its outputs in Kafka
transactions; a read_uncommitted reader beside the read_committed one sees the
aborted records too, the proof that a kill landed inside a transaction.

**Civilization** (:class:`CivilizationRow`): scripted planet statuses, the
ecosystem app's output, with foundings in them; the civilization rules
(``civics.on_status``) name every civilization event and refusal the app must
commit, per civilization and per world, in order.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka.admin import NewTopic

from cosmic import kafka, topics
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.living import civics, outputs
from streams.living import testing as script
from streams.living.ecosystem_state import EcoEvent, EcoParams, EcosystemWorld, PlanetStatus
from streams.living.faustapp import topic_name

from .cell import Row, Verdict
from .verify import tally

_WORLDS = 4
_PARTITIONS = 3
# Two species per planet, seeded before the first tick: every step has events to make.
_SEEDS = ((10, 1, 4000), (10, 2, 900), (11, 3, 2500), (11, 4, 700))


def status_id(record: dict[str, Any]) -> str:
    """A planet status's identity: one per planet per step."""
    return f"status/{record['planet_id']}/{record['tick']}"


# What a committed record is to the verifier: (key, id) of (topic, decoded record).
Naming = Callable[[str, dict[str, Any]], tuple[str, str]]


class _Outputs:
    """An app's private output topics as committed, or as written (read_uncommitted);
    ``progress`` is the topic whose records count the app's progress."""

    def __init__(self, consumer: Consumer, progress: str, *others: str) -> None:
        self.consumer = consumer
        self.progress_topic = progress
        self.records: list[tuple[str, str]] = []  # (key, id), in each partition's order
        self.progress_ms: list[int] = []  # the broker's time of each progress record
        self.count = 0
        self._decode: AvroDeserializer | None = None
        self._name: Naming | None = None
        # Pinned as numbers: a partition nothing is read from reports no position.
        self.start = [TopicPartition(t, p, kafka.high_watermark(consumer, TopicPartition(t, p)))
                      for t in (progress, *others) for p in range(_PARTITIONS)]
        consumer.assign(self.start)

    def decoding(self, registry: RegistryClient, name: Naming) -> _Outputs:
        self._decode = AvroDeserializer(registry)
        self._name = name
        return self

    def poll(self, timeout: float = 0.0) -> None:
        for msg in self.consumer.consume(2000, timeout=timeout):
            self._take(msg)

    def _take(self, msg: Message) -> None:
        if msg.error() is not None:
            return
        self.count += 1
        topic = msg.topic() or ""
        if topic == self.progress_topic:
            self.progress_ms.append(msg.timestamp()[1])
        if self._decode is not None and self._name is not None:
            self.records.append(self._name(topic, self._decode(msg.value(),
                                                               SerializationContext(topic))))

    def drain(self) -> None:
        """Read to the end of every partition (what is there now)."""
        start = {(tp.topic, tp.partition): tp.offset for tp in self.start}
        for _ in range(200):
            positions = self.consumer.position(self.consumer.assignment())
            if all(max(tp.offset, start[tp.topic, tp.partition])
                   >= kafka.high_watermark(self.consumer, tp) for tp in positions):
                return
            self.poll(0.2)

    def close(self) -> None:
        self.consumer.close()


class _FaustRow(Row):
    """A Faust app on private topics: its input scripted, its outputs named by the rules.

    A subclass scripts ``self.input`` (topic, key, record) and ``self.expected_ids``
    (each key's output ids in order) in :meth:`script`, and says which of its output
    topics count progress."""

    transactional = True
    # Each input record does not make one output: the rules say how many.
    one_output_per_input = False
    # The others: matrix.KNOWN_FAILING.
    faults: tuple[str, ...] = ("registry-outage",)
    app = "ecosystem"  # `cosmic living run APP`
    outputs: tuple[topics.Topic, ...] = ()  # the first counts progress

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:8]
        living = self.settings.living.model_copy(update={
            "topic_prefix": f"chaos.{run}.", "ecosystem_app_id": f"chaos-eco-{run}",
            "civilization_app_id": f"chaos-civ-{run}", "step_every": 5,
            "session_timeout_s": 6.0, "start_from": "earliest"})
        self.settings = self.settings.model_copy(update={"living": living})
        self.prefix = living.topic_prefix
        self.app_id = (living.ecosystem_app_id if self.app == "ecosystem"
                       else living.civilization_app_id)
        admin = kafka.admin(self.settings)
        made = admin.create_topics([NewTopic(topic_name(self.settings, t), _PARTITIONS, 1)
                                    for t in topics.ALL])
        for f in made.values():
            f.result(30)
        self.registry = RegistryClient.from_settings(self.settings)
        self.input: list[tuple[topics.Topic, str, dict[str, Any]]] = []
        self.expected_ids: dict[str, list[str]] = {}
        self.script(random.Random(self.cell.seed))
        out = [topic_name(self.settings, t) for t in self.outputs]
        self.committed = _Outputs(kafka.reader(self.settings, f"chaos-{self.app}-committed"),
                                  *out).decoding(self.registry, self.name_output)
        self.uncommitted = _Outputs(kafka.reader(
            self.settings, f"chaos-{self.app}-uncommitted",
            **{"isolation.level": "read_uncommitted"}), *out)

    @abstractmethod
    def script(self, rng: random.Random) -> None:
        """The input and the ids the rules make of it (``self.input``, ``self.expected_ids``)."""

    @abstractmethod
    def name_output(self, topic: str, record: dict[str, Any]) -> tuple[str, str]:
        """(key, id) of a committed output record, as ``self.expected_ids`` names them."""

    def feed(self) -> Iterator[int]:
        producer = kafka.producer(self.settings)
        encoders: dict[str, AvroSerializer] = {}
        for n, (topic, key, rec) in enumerate(self.input, 1):
            name = topic_name(self.settings, topic)
            encode = encoders.get(topic.name)
            if encode is None:
                encode = encoders[topic.name] = AvroSerializer(self.registry, topic.value)
            producer.produce(name, key=key.encode(), value=encode(rec, SerializationContext(name)))
            producer.poll(0)
            yield n
        if producer.flush(60) != 0:
            raise RuntimeError("the input was not delivered within 60 s")

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        return (["living", "run", self.app, "--loglevel", "INFO"],
                {"COSMIC_METRICS__PORT": "0"})

    @property
    def expected(self) -> int:
        progress = self.progress_keys()
        return sum(len(ids) for k, ids in self.expected_ids.items() if k in progress)

    def progress_keys(self) -> set[str]:
        """The keys of ``self.expected_ids`` whose records come on the progress topic."""
        return set(self.expected_ids)

    def output(self, since_ms: int | None = None) -> int:
        self.committed.poll()
        self.uncommitted.poll()
        return sum(1 for ts in self.committed.progress_ms if since_ms is None or ts >= since_ms)

    def await_open_transaction(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        low: int | None = None
        while time.monotonic() < deadline:
            self.output()  # polls both readers
            ahead = self.uncommitted.count - self.committed.count
            if low is not None and ahead > low:
                return
            low = ahead if low is None else min(low, ahead)
            time.sleep(0.002)

    def verify(self) -> Verdict:
        self.committed.drain()
        self.uncommitted.drain()
        number = {(k, e): n for k, ids in self.expected_ids.items()
                  for n, e in enumerate(ids, 1)}
        # An output the rules never made counts as unexpected (number 0 is never expected).
        seen = [(k, number.get((k, e), 0)) for k, e in self.committed.records]
        return Verdict(tally({k: range(1, len(ids) + 1) for k, ids in self.expected_ids.items()},
                             seen),
                       aborted=self.uncommitted.count - self.committed.count)

    def produce_now(self, topic: topics.Topic, records: list[tuple[str, dict[str, Any]]]
                    ) -> list[int]:
        """Records produced before any instance runs, one at a time (so their offsets come
        in order); their offsets."""
        name = topic_name(self.settings, topic)
        encode = AvroSerializer(self.registry, topic.value)
        producer = kafka.producer(self.settings)
        offsets: list[int] = []
        for key, rec in records:
            def done(err: Any, msg: Message) -> None:
                if err is not None:
                    raise RuntimeError(f"not delivered: {err}")
                offsets.append(int(msg.offset() or 0))
            producer.produce(name, key=key.encode(), value=encode(rec, SerializationContext(name)),
                             on_delivery=done)
            if producer.flush(30) != 0:
                raise RuntimeError(f"{name}: not delivered within 30 s")
        return offsets

    def cleanup(self) -> None:
        for reader in ("committed", "uncommitted"):
            if hasattr(self, reader):
                getattr(self, reader).close()
        if hasattr(self, "registry"):
            self.registry.close()
        if not hasattr(self, "prefix"):
            return
        admin = kafka.admin(self.settings)
        ours = [t for t in admin.list_topics(timeout=30).topics
                if t.startswith(self.prefix) or t.startswith(self.app_id)]
        if ours:
            for f in admin.delete_topics(ours, operation_timeout=30).values():
                with contextlib.suppress(Exception):  # cleanup must not mask the verdict
                    f.result(30)


class EcosystemRow(_FaustRow):
    name = "ecosystem"
    app = "ecosystem"
    # Progress is counted in planet statuses: one per planet per step, so they grow with
    # the input (events come in bursts, and less often as populations settle).
    outputs = (topics.PLANET_STATUS, topics.ECOSYSTEM_EVENTS)

    def script(self, rng: random.Random) -> None:
        run = self.settings.living.topic_prefix.split(".")[1]
        self.worlds = [f"chaos-{run}-w{i}" for i in range(_WORLDS)]
        # Each world's ticks, one input record a tick and one a delta, interleaved (seeded).
        per_world = max(2, self.cell.size // (2 * _WORLDS))
        order = [w for w in self.worlds for _ in range(per_world)]
        rng.shuffle(order)
        bodies = script.solar_system(2)
        commands = {w: [script.seed(w, *s) for s in _SEEDS] for w in self.worlds}
        offsets = {w: self.produce_now(topics.COMMANDS, [(w, c) for c in cmds])
                   for w, cmds in commands.items()}
        count = dict.fromkeys(self.worlds, 0)
        for w in order:
            count[w] += 1
            n = count[w]
            applied = offsets[w][-1] if n == 2 else None  # the seeds apply at tick 2
            self.input.append((topics.PHYSICS_TICKS, w, script.tick(w, n, last_offset=applied)))
            self.input.append((topics.STATE_DELTAS, w,
                               script.delta(w, n, bodies if n == 1 else {})))
        self.expected_ids = self._oracle(commands, offsets)

    def _oracle(self, commands: dict[str, list[dict[str, Any]]],
                offsets: dict[str, list[int]]) -> dict[str, list[str]]:
        """Each world's event and status ids, in order, as the rules make them from the
        same log."""
        params = EcoParams(step_every=self.settings.living.step_every,
                           time_scale=self.settings.living.time_scale)
        worlds = {w: EcosystemWorld(w, params) for w in self.worlds}
        out: dict[str, list[str]] = {k: [] for w in self.worlds for k in (w, f"{w}/status")}

        def take(w: str, produced: list[Any]) -> None:
            for o in produced:
                if isinstance(o, EcoEvent):
                    out[w].append(str(outputs.ecosystem_event(w, o)["event_id"]))
                elif isinstance(o, PlanetStatus):
                    out[f"{w}/status"].append(status_id(o.record))

        for w in self.worlds:
            for offset, cmd in zip(offsets[w], commands[w], strict=True):
                take(w, worlds[w].on_command(offset, cmd))
        for topic, w, rec in self.input:
            world = worlds[w]
            take(w, world.on_tick(rec) if topic is topics.PHYSICS_TICKS else world.on_delta(rec))
        return out

    def progress_keys(self) -> set[str]:
        return {k for k in self.expected_ids if k.endswith("/status")}

    def name_output(self, topic: str, record: dict[str, Any]) -> tuple[str, str]:
        w = str(record["world_id"])
        if topic == self.committed.progress_topic:
            return f"{w}/status", status_id(record)
        return w, str(record["event_id"])


# The civilization row's planets: (planet, civilization founded there, its population).
_CIV_PLANETS = ((10, 1, 1_000_000), (11, 2, 400_000))
_LOW_POPULATION = 500  # a founding on such a planet is refused (NOT_PERMITTED)


class CivilizationRow(_FaustRow):
    """The civilization app on scripted planet statuses, judged by its rules (``civics``).

    Each world has two planets, a civilization founded on each at the first status,
    and a founding refused (a third planet's population is too small) and one refused
    as a duplicate; every status after that gives the planet's civilization about as
    much knowledge as its next advance costs, so the events come at a steady pace (one
    per status), which is what progress is counted in."""

    name = "civilization"
    app = "civilization"
    outputs = (topics.CIVILIZATION_EVENTS, topics.COMMANDS_REJECTED)

    def script(self, rng: random.Random) -> None:
        run = self.settings.living.topic_prefix.split(".")[1]
        worlds = [f"chaos-{run}-w{i}" for i in range(_WORLDS)]
        # The input is the cell's size (the runner feeds that many): each world's
        # refused founding and every planet's closing status (below) are part of it.
        extra = 2 * _WORLDS + _WORLDS * len(_CIV_PLANETS)
        per_planet = max(3, (self.cell.size - extra) // (_WORLDS * len(_CIV_PLANETS)))
        streams = {(w, p): self._statuses(w, p, civ, pop, per_planet)
                   for w in worlds for p, civ, pop in _CIV_PLANETS}
        refused = [(w, self._status(w, 12, 1, _LOW_POPULATION, 1.0,
                                    found=(90, "Too few"))) for w in worlds]
        order = [k for k, statuses in streams.items() for _ in statuses]
        rng.shuffle(order)  # each planet's own statuses stay in tick order
        at = dict.fromkeys(streams, 0)
        for w, rec in refused:
            self.input.append((topics.PLANET_STATUS, f"{w}/12", rec))
        for k in order:
            self.input.append((topics.PLANET_STATUS, f"{k[0]}/{k[1]}", streams[k][at[k]]))
            at[k] += 1
        # Faust acks an event when its agent takes the next one, so a partition's last
        # event stays unacked, and its outputs uncommitted, until another comes: one more
        # status per planet, which changes nothing (no years pass), ends every partition.
        for (w, p), statuses in streams.items():
            last = statuses[-1]
            self.input.append((topics.PLANET_STATUS, f"{w}/{p}", self._status(
                w, p, int(last["tick"]) + 1, int(last["population"]), 0.0)))
        tick = dict.fromkeys((w for w, _ in refused), 1)
        while len(self.input) < self.cell.size:  # the rest: statuses that change nothing
            w = refused[len(self.input) % _WORLDS][0]
            tick[w] += 1
            self.input.append((topics.PLANET_STATUS, f"{w}/12", self._status(
                w, 12, tick[w], _LOW_POPULATION, 0.0)))
        self.expected_ids = self._oracle()

    def _statuses(self, world: str, planet: int, civ: int, population: int, n: int
                  ) -> list[dict[str, Any]]:
        out = [self._status(world, planet, 1, population, 0.5, found=(civ, f"Civ {civ}"))]
        knowledge = 0.0  # beyond what the advances so far cost (the founding's aside)
        for advances, tick in enumerate(range(2, n + 1)):
            # Years that bring the next advance's cost (the rules: log10(1 + pop) a year).
            cost = civics.KNOWLEDGE_PER_ADVANCE * (advances + 1)
            years = (cost - knowledge + 0.01) / math.log10(1 + population)
            dup = (civ, "Again") if tick == 3 else None  # refused: it exists
            out.append(self._status(world, planet, tick, population, years, found=dup))
            knowledge += years * math.log10(1 + population) - cost
        return out

    @staticmethod
    def _status(world: str, planet: int, tick: int, population: int, years: float,
                found: tuple[int, str] | None = None) -> dict[str, Any]:
        request = None
        if found is not None:
            request = {"command_id": str(uuid.uuid4()), "player_id": "chaos",
                       "civilization_id": found[0], "name": found[1],
                       "command_offset": 1000 * planet + tick}
        return {"world_id": world, "planet_id": planet, "tick": tick, "known": True,
                "destroyed": False, "temperature_k": 288.0, "population": population,
                "carrying_capacity": float(population), "species_count": 3,
                "dominant_species_id": 1, "years": years, "found": request,
                "ts": 1_700_000_000_000 + tick}

    def _oracle(self) -> dict[str, list[str]]:
        """Each civilization's event ids and each world's refusals, in order, as the rules
        make them from the same statuses."""
        civs: dict[str, Any] = {}
        on_planet: dict[str, Any] = {}
        # A refusal names its command, not its planet.
        self._planet_of = {str(st["found"]["command_id"]): int(st["planet_id"])
                           for _, _, st in self.input if st["found"] is not None}
        out: dict[str, list[str]] = {}
        for _, _, status in self.input:
            w = str(status["world_id"])
            outcome = civics.on_status(status, civs, on_planet)
            if outcome.refused is not None:  # per planet: planets' order is not kept
                out.setdefault(f"{w}/{status['planet_id']}/refused", []).append(
                    str(status["found"]["command_id"]))
            for change in outcome.changes:
                key = f"{w}/{change.civilization.civilization_id}"
                event = outputs.civilization_event(change, int(status["tick"]), 0)
                out.setdefault(key, []).append(str(event["event_id"]))
        return out

    def progress_keys(self) -> set[str]:
        return {k for k in self.expected_ids if not k.endswith("/refused")}

    def name_output(self, topic: str, record: dict[str, Any]) -> tuple[str, str]:
        w = str(record["world_id"])
        if topic == self.committed.progress_topic:
            return f"{w}/{record['civilization_id']}", str(record["event_id"])
        return f"{w}/{self._planet_of[str(record['command_id'])]}/refused", str(
            record["command_id"])
