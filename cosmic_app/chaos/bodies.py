"""The bodies connector's row: scripted snapshots and deltas into a private PostGIS table.

The connector keeps one row per body, so a lost or doubled record cannot be counted
as a row; the script is built so that every record leaves a mark the verifier can
read back. Each world's tick ``t`` is one delta that creates body ``t``, moves body
``t - 2`` and removes body ``t - 30`` (unless its id is a multiple of ten, so some
bodies live long); every 25th tick a snapshot of the whole world follows its delta,
on the snapshot topic, which the connector reads in no fixed order with the deltas.
Velocities are zero and positions float32 values, so a position in the table is
exactly the script's.

The verifier checks, as a demanding reader of ``celestial_bodies`` would:

- the final table is the script's final state: every body there with its position,
  owner (only bodies some snapshot held have one) and ``updated_tick`` (its last
  change, or the last snapshot that held it if later), and nothing else. Per body
  ``world/id``: missing or older is *lost*, present but removed or of a tick the
  script never gives it is *unexpected*;
- while the input flows, about once a second, one world read in one transaction
  equals the script's state at the tick the table claims (ids and positions), so a
  record lost and then healed by the next snapshot is caught while it shows;
- no world's tick and no stored position moves back, and at the end the stored
  positions are the topics' ends: everything read, nothing pending.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import psycopg
from confluent_kafka import TopicPartition

from connectors import bodies
from cosmic import kafka, topics
from schemas import columnar
from schemas.registry.client import RegistryClient
from schemas.serde import AvroSerializer, SerializationContext

from .cell import Verdict
from .stores import _PARTITIONS, TimescaleRow
from .verify import tally

_WORLDS = 5
_MOVE_BACK = 2      # tick t moves body t - 2
_LIFETIME = 30      # tick t removes body t - 30 ...
_KEEP_EVERY = 10    # ... unless its id is a multiple of this
_SNAPSHOT_EVERY = 25
_KIND = 3           # ASTEROID, by the schema's ordinal
_SAMPLE_EVERY_S = 1.0
_MAX_REPORTED = 5


def _owner(body: int) -> str:
    return f"p{body % 3}"


@dataclass(slots=True)
class _Body:
    pos: tuple[float, float, float]
    changed: int              # the tick of its last delta
    snapped: int = 0          # the tick of the last snapshot that held it (0: none)


@dataclass(slots=True)
class _Step:
    """One tick of one world: the delta's changes, and whether a snapshot follows."""

    tick: int
    changed: dict[int, tuple[float, float, float]]
    removed: list[int]
    snapshot: bool


@dataclass(slots=True)
class ScriptedWorld:
    name: str
    steps: list[_Step] = field(default_factory=list)

    def state_at(self, tick: int) -> dict[int, _Body]:
        """The world's bodies after ``tick`` (the script replayed up to it)."""
        alive: dict[int, _Body] = {}
        for step in self.steps:
            if step.tick > tick:
                break
            for i, pos in step.changed.items():
                alive[i] = _Body(pos, step.tick, alive[i].snapped if i in alive else 0)
            for i in step.removed:
                alive.pop(i, None)
            if step.snapshot:
                for b in alive.values():
                    b.snapped = step.tick
        return alive


def script(world: ScriptedWorld, ticks: int, rng: random.Random) -> None:
    def spot() -> tuple[float, float, float]:
        # float32 values: the delta carries float32, so the table holds them exactly.
        v = np.asarray([rng.uniform(-5, 5) for _ in range(3)], np.float32).astype(np.float64)
        return (float(v[0]), float(v[1]), float(v[2]))

    alive: set[int] = set()
    for t in range(1, ticks + 1):
        changed = {t: spot()}
        if t - _MOVE_BACK in alive:
            changed[t - _MOVE_BACK] = spot()
        gone = t - _LIFETIME
        removed = [gone] if gone in alive and gone % _KEEP_EVERY else []
        alive |= set(changed)
        alive -= set(removed)
        world.steps.append(_Step(t, changed, removed, t % _SNAPSHOT_EVERY == 0))


class BodiesRow(TimescaleRow):
    name = "bodies"
    connector = "bodies"
    one_output_per_input = False  # the output is the bodies alive at the end

    def prepare(self) -> None:
        run = uuid.uuid4().hex[:10]
        self.run = run
        self.topic = f"chaos.{run}.deltas"
        self.snapshots = f"chaos.{run}.snapshots"
        self.dlq = f"chaos.{run}.dlq"
        self.group = f"chaos-{run}"
        self._create_topics(self.topic, self.snapshots, self.dlq)
        rng = random.Random(self.cell.seed)
        names = [f"chaos-{run}-w{i}" for i in range(_WORLDS)]
        # Which world each delta belongs to, in input order, as the store rows do.
        self.order = [names[rng.randrange(_WORLDS)] for _ in range(self.cell.size)]
        self.scripted = {n: ScriptedWorld(n) for n in names}
        for n, world in self.scripted.items():
            script(world, self.order.count(n), rng)
        self.snapshot_count = sum(s.snapshot for w in self.scripted.values() for s in w.steps)
        self._stored: list[dict[tuple[str, int], int]] = []
        self._ticks: dict[str, int] = {}
        self._went_back: list[str] = []
        self._mismatches: list[str] = []
        self._samples = 0
        self._next_sample = 0.0
        self._turn = 0
        self._make_database()

    def _migrate(self) -> None:
        bodies.migrate(self.settings)

    # -- input ----------------------------------------------------------------------

    def feed(self) -> Iterator[int]:
        now = datetime.now(UTC)
        next_step = dict.fromkeys(self.scripted, 0)
        with RegistryClient.from_settings(self.settings) as registry:
            delta = AvroSerializer(registry, "StateDelta")
            snapshot = AvroSerializer(registry, "WorldSnapshot")
            to_deltas = SerializationContext(self.topic)
            to_snapshots = SerializationContext(self.snapshots)
            producer = kafka.producer(self.settings)
            for n, name in enumerate(self.order, 1):
                world = self.scripted[name]
                step = world.steps[next_step[name]]
                next_step[name] += 1
                key = name.encode()
                producer.produce(self.topic, key=key,
                                 value=delta(_delta(name, step, now), to_deltas))
                if step.snapshot:
                    producer.produce(self.snapshots, key=key, value=snapshot(
                        _snapshot(name, step.tick, world.state_at(step.tick), now),
                        to_snapshots))
                producer.poll(0)
                yield n
            if producer.flush(60) != 0:
                raise RuntimeError("records not delivered within 60 s")

    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        return (["connectors", "run", self.connector,
                 "--route", f"{self.topic}={topics.STATE_DELTAS.name}",
                 "--route", f"{self.snapshots}={topics.STATE_SNAPSHOTS.name}",
                 "--group-id", self.group, "--instance-id", f"{self.group}-{instance}",
                 "--dlq-topic", self.dlq, "--metrics-port", "0"], {})

    # -- output ---------------------------------------------------------------------

    @property
    def expected(self) -> int:
        return self.cell.size + self.snapshot_count

    def output(self, since_ms: int | None = None) -> int:
        """Records the connector has committed (its stored positions, which it writes in
        the transaction of each batch's rows), both topics: the worlds' ticks alone can
        be complete while records are still unread (a snapshot of the last tick read
        before the deltas it covers turns them into no-ops still to be read)."""
        try:
            ticks = {w: int(t) for w, t in self._db().execute(
                "SELECT world_id, tick FROM celestial_worlds").fetchall()}
            stored = self._positions_stored()
            if time.monotonic() >= self._next_sample:
                self._sample()
        except psycopg.OperationalError:
            return self._last  # the store is down (the outage cell)
        for w, t in ticks.items():
            if t < self._ticks.get(w, 0) and len(self._went_back) < _MAX_REPORTED:
                self._went_back.append(f"world {w} went back from tick {self._ticks[w]} to {t}")
            self._ticks[w] = max(t, self._ticks.get(w, 0))
        if not self._stored or stored != self._stored[-1]:
            self._stored.append(stored)
        # The input topics hold only the cell's records, from offset 0.
        self._last = sum(stored.values())
        return self._last

    def _positions_stored(self) -> dict[tuple[str, int], int]:
        return {(t, int(p)): int(o) for t, p, o in self._db().execute(
            "SELECT topic, kafka_partition, next_offset FROM connector_offsets "
            "WHERE connector = %s", (self.group,)).fetchall()}

    def _sample(self) -> None:
        """One world, read in one transaction, against the script at the tick it claims."""
        self._next_sample = time.monotonic() + _SAMPLE_EVERY_S
        name = list(self.scripted)[self._turn % _WORLDS]
        self._turn += 1
        conn = self._db()
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            row = conn.execute("SELECT tick FROM celestial_worlds WHERE world_id = %s",
                               (name,)).fetchone()
            table = _positions(conn, name)
        if row is None:
            return
        self._samples += 1
        tick = int(row[0])
        want = {i: b.pos for i, b in self.scripted[name].state_at(tick).items()}
        if table != want and len(self._mismatches) < _MAX_REPORTED:
            self._mismatches.append(f"world {name} at tick {tick}: {_difference(table, want)}")

    def verify(self) -> Verdict:
        conn = self._db()
        rows = conn.execute(
            "SELECT world_id, body_id, ST_X(position), ST_Y(position), ST_Z(position), "
            "owner, updated_tick FROM celestial_bodies").fetchall()
        verdict = judge_table(self.scripted, rows)
        failures = verdict.failures
        ticks = dict(conn.execute("SELECT world_id, tick FROM celestial_worlds").fetchall())
        for name, world in self.scripted.items():
            last = world.steps[-1].tick if world.steps else 0
            if last and ticks.get(name) != last:
                failures.append(f"world {name} at tick {ticks.get(name)}, the script ends at {last}")
        failures += self._went_back + self._mismatches
        if not self._samples:
            failures.append("no world was sampled while the input flowed")
        for before, after in zip(self._stored, self._stored[1:], strict=False):
            back = sorted(k for k, o in before.items() if after.get(k, o) < o)
            if back:
                failures.append(f"stored position moved back on {back}")
                break
        ends = self._ends()
        stored = self._positions_stored()
        behind = {k: (stored.get(k, 0), end) for k, end in ends.items() if stored.get(k, 0) != end}
        if behind:
            failures.append(f"stored positions are not the topics' ends (stored, end): {behind}")
        return verdict

    def _ends(self) -> dict[tuple[str, int], int]:
        reader = kafka.reader(self.settings, "chaos-ends")
        try:
            return {(t, p): kafka.high_watermark(reader, TopicPartition(t, p))
                    for t in (self.topic, self.snapshots) for p in range(_PARTITIONS)}
        finally:
            reader.close()


def judge_table(scripted: dict[str, ScriptedWorld], rows: list[tuple[Any, ...]]) -> Verdict:
    """The final table, rows of (world, body, x, y, z, owner, updated_tick), against the
    scripts' final states: per body ``world/id`` with its tick, and its position and owner."""
    expected: dict[str, list[int]] = {}
    final: dict[tuple[str, int], _Body] = {}
    for name, world in scripted.items():
        last = world.steps[-1].tick if world.steps else 0
        for i, b in world.state_at(last).items():
            final[(name, i)] = b
            expected[f"{name}/{i}"] = [max(b.changed, b.snapped)]
    got = [(f"{w}/{i}", int(t)) for w, i, *_, t in rows]
    verdict = Verdict(tally(expected, got, ordered=False))
    wrong = [f"{w}/{i}" for w, i, x, y, z, owner, _ in rows
             if (want := final.get((w, int(i)))) is not None
             and ((x, y, z) != want.pos or owner != (_owner(int(i)) if want.snapped else None))]
    if wrong:
        verdict.failures.append(f"{len(wrong)} bodies with another position or owner than the "
                                f"script's, e.g. {wrong[:_MAX_REPORTED]}")
    return verdict


def _positions(conn: psycopg.Connection[Any], world: str) -> dict[int, tuple[float, ...]]:
    return {int(i): (x, y, z) for i, x, y, z in conn.execute(
        "SELECT body_id, ST_X(position), ST_Y(position), ST_Z(position) "
        "FROM celestial_bodies WHERE world_id = %s", (world,)).fetchall()}


def _difference(table: dict[int, Any], want: dict[int, Any]) -> str:
    missing = sorted(set(want) - set(table))
    extra = sorted(set(table) - set(want))
    moved = sorted(i for i in set(want) & set(table) if want[i] != table[i])
    return (f"missing {missing[:_MAX_REPORTED]}, extra {extra[:_MAX_REPORTED]}, "
            f"elsewhere {moved[:_MAX_REPORTED]} (of {len(want)} bodies)")


def _columns(ids: list[int], spots: list[tuple[float, float, float]],
             vectors: np.dtype[Any]) -> columnar.Bodies:
    n = len(ids)
    return columnar.Bodies(ids=np.asarray(ids, np.int64), kinds=np.full(n, _KIND, np.uint8),
                           masses=np.ones(n), radii=np.full(n, 0.01),
                           positions=np.asarray(spots, vectors).reshape(n, 3),
                           velocities=np.zeros((n, 3), vectors))


def _delta(world: str, step: _Step, now: datetime) -> dict[str, Any]:
    bodies_ = _columns(list(step.changed), list(step.changed.values()), np.dtype(np.float32))
    return {"world_id": world, "tick": step.tick, "sim_time": step.tick * 0.01,
            **columnar.delta_fields(bodies_, np.asarray(step.removed, np.int64)), "ts": now}


def _snapshot(world: str, tick: int, alive: dict[int, _Body], now: datetime) -> dict[str, Any]:
    ids = sorted(alive)
    bodies_ = _columns(ids, [alive[i].pos for i in ids], np.dtype(np.float64))
    return {"world_id": world, "tick": tick, "sim_time": tick * 0.01,
            "params": {"G": 1.0, "softening": 0.01, "tick_rate_hz": 10.0, "dt": 0.01,
                       "merge_on_contact": False, "snapshot_every": _SNAPSHOT_EVERY},
            "command_partition": None, "last_command_offset": None, "body_count": len(ids),
            "state_hash": "0" * 64, "backend": "cpu", **columnar.pack_bodies(bodies_),
            "owners": [_owner(i) for i in ids], "world_owner": None, "recent_commands": [],
            "ts": now}
