"""Ecosystem agent benchmark: events/s of the Faust worker beside a plain confluent-kafka loop.

Both sides process the same input, a few scripted worlds (a seed command, then
ticks and deltas), applying the same rule object (:class:`EcosystemWorld`),
with the same serde, exactly once: outputs, the world state written to a
changelog topic and the consumer offsets commit in Kafka transactions. The
Faust side is the real ecosystem worker process (its tables, codec, outbox);
the anchor is a hand-written consume-process-produce loop. Each side gets the
whole input before it starts, and both are clocked the same way, by an observer
of the group's committed offsets: from the first commit to the one that covers
the input (so neither side's boot or group join is counted). Printed in one
run: events/s per worker for each, and their ratio.

Needs the local stack (`cosmic stack up`).

    .venv/bin/python bench/agents.py [--worlds 6] [--ticks 1500]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
import uuid
from typing import Any

from confluent_kafka import KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic
from report import result

from cosmic import kafka, topics
from cosmic.settings import Settings, get_settings
from schemas.registry.client import RegistryClient
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from streams.living import outputs
from streams.living import testing as script
from streams.living.ecosystem_state import EcoEvent, EcoParams, EcosystemWorld, PlanetStatus
from streams.living.faustapp import topic_name
from streams.living.service import FaustService

INPUTS = (topics.COMMANDS, topics.PHYSICS_TICKS, topics.STATE_DELTAS)


def _settings(base: Settings, tag: str) -> Settings:
    living = base.living.model_copy(update={
        "topic_prefix": f"bench.{tag}.", "ecosystem_app_id": f"bench-eco-{tag}",
        "start_from": "earliest", "step_every": 10})
    return base.model_copy(update={"living": living})


def _feed(settings: Settings, registry: RegistryClient, worlds: int, ticks: int) -> int:
    producer = kafka.producer(settings, **{"linger.ms": 20})
    enc = {t.name: AvroSerializer(registry, t.value) for t in INPUTS}
    n = 0
    bodies = script.solar_system(2)

    def send(topic: topics.Topic, key: str, record: dict[str, Any]) -> None:
        name = topic_name(settings, topic)
        producer.produce(name, key=key.encode(), value=enc[topic.name](record, SerializationContext(name)))

    offsets: dict[str, int] = {}

    def seeded(err: Any, msg: Any) -> None:
        offsets[msg.key().decode()] = msg.offset()

    for w in range(worlds):
        world = f"bw-{w}"
        name = topic_name(settings, topics.COMMANDS)
        producer.produce(name, key=world.encode(), on_delivery=seeded,
                         value=enc[topics.COMMANDS.name](script.seed(world, 10, 1, 5000),
                                                         SerializationContext(name)))
        n += 1
    producer.flush(30)
    for t in range(1, ticks + 1):
        for w in range(worlds):
            world = f"bw-{w}"
            send(topics.PHYSICS_TICKS, world, script.tick(world, t, last_offset=offsets[world] if t == 2 else None))
            send(topics.STATE_DELTAS, world, script.delta(world, t, bodies if t == 1 else {}))
            n += 2
        producer.poll(0)
    producer.flush(60)
    return n


def _ends(settings: Settings) -> list[TopicPartition]:
    c = kafka.consumer(settings, f"bench-probe-{uuid.uuid4().hex[:6]}")
    out = []
    for t in INPUTS:
        for p in range(3):
            _, high = c.get_watermark_offsets(TopicPartition(topic_name(settings, t), p), timeout=10)
            out.append(TopicPartition(topic_name(settings, t), p, high))
    c.close()
    return out


def _committed(settings: Settings, group: str, ends: list[TopicPartition]) -> int:
    """Records the group has committed, over the input partitions."""
    c = kafka.consumer(settings, group)
    try:
        committed = c.committed([TopicPartition(tp.topic, tp.partition) for tp in ends], timeout=10)
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in committed)


def _observe(settings: Settings, group: str, ends: list[TopicPartition],
             failure: Any, timeout_s: float = 600) -> float:
    """Events/s as an outside observer of the group's commits sees it, the same for both
    sides: from the first commit to the one that reaches the end of the input, the
    records committed in between over the time between (boot, group join and the first
    batch are outside the clock on both sides)."""
    total = sum(tp.offset for tp in ends)
    first: tuple[float, int] | None = None
    deadline = time.monotonic() + timeout_s
    while True:
        if (err := failure()) is not None:
            raise RuntimeError(f"{group} failed: {err}")
        done, now = _committed(settings, group, ends), time.perf_counter()
        if first is None and done > 0:
            first = (now, done)
        if first is not None and done >= total:
            if done == first[1]:
                raise RuntimeError(f"{group} committed everything at once: feed more events")
            return (done - first[1]) / (now - first[0])
        if time.monotonic() > deadline:
            raise RuntimeError(f"{group}: {done} of {total} committed after {timeout_s} s")
        time.sleep(0.05)


def bench_faust(settings: Settings, registry: RegistryClient, worlds: int, ticks: int) -> float:
    # The whole input first, as for the plain loop: both start on the same backlog.
    _feed(settings, registry, worlds, ticks)
    ends = _ends(settings)
    svc = FaustService("bench-ecosystem", "streams.ecosystem", settings)
    svc.start()
    try:
        return _observe(settings, settings.living.ecosystem_app_id, ends, svc.failure)
    finally:
        svc.stop()


def bench_plain(settings: Settings, registry: RegistryClient, worlds: int, ticks: int) -> float:
    """The anchor: consume, apply the rules, produce outputs + state + offsets per transaction."""
    n = _feed(settings, registry, worlds, ticks)
    group = f"bench-plain-{uuid.uuid4().hex[:6]}"
    ends = _ends(settings)
    errors: list[BaseException] = []
    loop = threading.Thread(target=_guard(errors, _plain_loop), daemon=True,
                            args=(settings, registry, group, n))
    loop.start()
    try:
        return _observe(settings, group, ends, lambda: errors[0] if errors else None)
    finally:
        loop.join(60)


def _guard(errors: list[BaseException], fn: Any) -> Any:
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the observer reports it
            errors.append(exc)
    return run


def _plain_loop(settings: Settings, registry: RegistryClient, group: str, n: int) -> None:
    consumer = kafka.consumer(settings, group)
    consumer.subscribe([topic_name(settings, t) for t in INPUTS])
    producer = kafka.producer(settings, transactional_id=f"{group}-tx")
    producer.init_transactions(30)
    decode = AvroDeserializer(registry)
    enc = {t.name: AvroSerializer(registry, t.value)
           for t in (topics.ECOSYSTEM_EVENTS, topics.PLANET_STATUS, topics.COMMANDS_REJECTED)}
    changelog = topic_name(settings, topics.DLQ) + ".plain-state"
    live: dict[str, EcosystemWorld] = {}
    params = EcoParams(step_every=10, time_scale=settings.living.time_scale)
    names = {topic_name(settings, t): t.value for t in INPUTS}
    done = 0
    while done < n:
        msgs = consumer.consume(500, timeout=1.0)
        if not msgs:
            continue
        producer.begin_transaction()
        for msg in msgs:
            if msg.error():
                continue
            value = decode(msg.value())
            world_id = str(value["world_id"])
            world = live.get(world_id) or live.setdefault(world_id, EcosystemWorld(world_id, params))
            kind = names[str(msg.topic())]
            outs = (world.on_command(msg.offset() or 0, value) if kind == "PlayerCommand" else
                    world.on_tick(value) if kind == "PhysicsTick" else world.on_delta(value))
            # The same state writes as the Faust side's two tables: world, changed planets.
            state = {"world": world.to_dict(),
                     "planets": {p: world.planets[p].to_dict() for p in sorted(world.dirty)}}
            world.dirty.clear()
            producer.produce(changelog, key=world_id.encode(), value=json.dumps(state).encode(),
                             partition=msg.partition() or 0)
            for o in outs:
                topic, rec = ((topics.ECOSYSTEM_EVENTS, outputs.ecosystem_event(world_id, o))
                              if isinstance(o, EcoEvent) else
                              (topics.PLANET_STATUS, o.record) if isinstance(o, PlanetStatus) else
                              (topics.COMMANDS_REJECTED, outputs.rejection(world_id, o)))
                name = topic_name(settings, topic)
                producer.produce(name, key=world_id.encode(), partition=msg.partition() or 0,
                                 value=enc[topic.name](rec, SerializationContext(name)))
            done += 1
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                             consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
    consumer.close()


def _topics(settings: Settings, create: bool) -> None:
    admin = kafka.admin(settings)
    names = [topic_name(settings, t) for t in topics.ALL] + [topic_name(settings, topics.DLQ) + ".plain-state"]
    if create:
        for f in admin.create_topics([NewTopic(n, 3, 1) for n in names]).values():
            f.result(30)
        return
    extra = [t for t in admin.list_topics(timeout=30).topics
             if t.startswith(settings.living.ecosystem_app_id)]
    for f in admin.delete_topics(names + extra, operation_timeout=30).values():
        with contextlib.suppress(KafkaException):
            f.result(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worlds", type=int, default=6)
    ap.add_argument("--ticks", type=int, default=1500)
    args = ap.parse_args()
    base = get_settings()
    registry = RegistryClient.from_settings(base)
    results = {}
    for side, fn in (("faust", bench_faust), ("plain", bench_plain)):
        settings = _settings(base, f"{side}{uuid.uuid4().hex[:6]}")
        _topics(settings, create=True)
        try:
            results[side] = fn(settings, registry, args.worlds, args.ticks)
        finally:
            _topics(settings, create=False)
    registry.close()
    events = args.worlds * (2 * args.ticks + 1)
    print(f"ecosystem agent, {args.worlds} worlds, {events} input events, exactly once, one worker each")
    print(f"  faust worker (tables, outbox)     {results['faust']:10.0f} events/s")
    print(f"  plain confluent-kafka loop        {results['plain']:10.0f} events/s")
    ratio = results['faust'] / results['plain']
    result("agents", "ecosystem worker events/s, exactly once",
           f"{args.worlds} worlds, {events} input events, one worker", results["faust"],
           "plain confluent-kafka loop", results["plain"], ratio, unit="events/s",
           line=f"  ratio faust / plain               {ratio:10.2f}")


if __name__ == "__main__":
    main()
