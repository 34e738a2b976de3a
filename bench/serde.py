"""Serde throughput: our wire-format serde beside raw fastavro and confluent-kafka's, in one run.

For a PlayerCommand and for a StateDelta with 10,000 bodies, prints events/s
of encode and decode for:

- raw fastavro ``schemaless_writer`` / ``schemaless_reader`` on the same
  record (the anchor: the Avro work itself, no framing, no registry);
- ours: :class:`schemas.serde.AvroSerializer` / ``AvroDeserializer``;
- confluent-kafka's ``AvroSerializer`` / ``AvroDeserializer``,

both registries being our embedded registry on an ephemeral loopback port
(memory store), so ids are fetched once and cached by each client. Goals:
ours within 10% of raw fastavro, and at least 2x confluent-kafka.

Run: ``.venv/bin/python bench/serde.py [--seconds 1.0] [--repeats 5]``
"""

from __future__ import annotations

import argparse
import io
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import numpy as np
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer as ConfluentDeserializer
from confluent_kafka.schema_registry.avro import AvroSerializer as ConfluentSerializer
from confluent_kafka.serialization import MessageField as CMessageField
from confluent_kafka.serialization import SerializationContext as CContext
from fastavro import schemaless_reader, schemaless_writer
from report import result

from cosmic import topics
from schemas import catalog, columnar
from schemas.registry.client import RegistryClient
from schemas.registry.core import Registry
from schemas.registry.server import serve
from schemas.registry.store import MemoryStore
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext


def player_command() -> dict[str, Any]:
    now = datetime.now(UTC).replace(microsecond=0)
    return {
        "command_id": uuid.uuid4(), "player_id": "player-42", "world_id": "world-7",
        "client_ts": now, "received_ts": now,
        "command": ("io.cosmicgarden.SpawnBody", {
            "body_id": 123456, "kind": "PLANET", "mass": 5.97e24, "radius": 6.371e6,
            "position": {"x": 1.496e11, "y": 0.0, "z": 0.0}, "velocity": {"x": 0.0, "y": 29780.0, "z": 0.0},
        }),
    }


def state_delta(n: int = 10_000) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    bodies = columnar.Bodies(
        ids=np.arange(n, dtype=np.int64), kinds=rng.integers(0, 4, n, dtype=np.uint8),
        masses=rng.random(n), radii=rng.random(n),
        positions=rng.standard_normal((n, 3)), velocities=rng.standard_normal((n, 3)),
    )
    return {"world_id": "world-7", "tick": 1000, "sim_time": 10.0,
            "ts": datetime.now(UTC).replace(microsecond=0),
            **columnar.delta_fields(bodies, np.arange(10, dtype=np.int64), "FLOAT32")}


def rates(fns: dict[str, Callable[[], object]], seconds: float, repeats: int) -> dict[str, float]:
    """Best events/s of each function over ``repeats`` rounds of about ``seconds`` each.

    Rounds are interleaved (a, b, c, a, b, c, ...) so drift in the machine's
    state (frequency, caches, allocator) hits every implementation alike, and
    the best round is kept as the least disturbed one.
    """
    batch: dict[str, int] = {}
    for name, fn in fns.items():
        start = time.perf_counter()
        fn()
        one = max(time.perf_counter() - start, 1e-7)
        batch[name] = max(1, int(seconds / one / 10))  # ~1/10 s batches: clock reads negligible
    best = dict.fromkeys(fns, 0.0)
    for _ in range(repeats):
        for name, fn in fns.items():
            calls, done, t0 = batch[name], 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                for _ in range(calls):
                    fn()
                done += calls
            best[name] = max(best[name], done / (time.perf_counter() - t0))
    return best


def bench_record(name: str, schema: str, topic: str, record: dict[str, Any], url: str,
                 seconds: float, repeats: int) -> list[tuple[str, str, str, float]]:
    parsed = catalog.parsed(schema)
    ctx = SerializationContext(topic)
    cctx = CContext(topic, CMessageField.VALUE)
    with RegistryClient(url) as ours, SchemaRegistryClient({"url": url}) as theirs:
        oser, ode = AvroSerializer(ours, schema), AvroDeserializer(ours, schema)
        cser, cde = ConfluentSerializer(theirs, catalog.schema_text(schema)), ConfluentDeserializer(theirs)

        def raw_encode() -> bytes:
            out = io.BytesIO()
            schemaless_writer(out, parsed, record)
            return out.getvalue()

        body = raw_encode()
        framed = oser(record, ctx)
        assert framed[5:] == body and cser(record, cctx) == framed  # all three write the same bytes

        def raw_decode() -> object:
            return schemaless_reader(io.BytesIO(body), parsed)

        rows = []
        for op, impls in (
            ("encode", (("raw fastavro", raw_encode), ("ours", lambda: oser(record, ctx)),
                        ("confluent-kafka", lambda: cser(record, cctx)))),
            ("decode", (("raw fastavro", raw_decode), ("ours", lambda: ode(framed, ctx)),
                        ("confluent-kafka", lambda: cde(framed, cctx)))),
        ):
            measured = rates(dict(impls), seconds, repeats)
            rows += [(name, op, impl, measured[impl]) for impl, _ in impls]
        return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (best is kept)")
    args = parser.parse_args(argv)

    cases = [
        ("PlayerCommand", "PlayerCommand", topics.COMMANDS.name, player_command()),
        ("StateDelta 10k bodies", "StateDelta", topics.STATE_DELTAS.name, state_delta()),
    ]
    rows: list[tuple[str, str, str, float]] = []
    with serve(Registry(MemoryStore())) as server:
        for name, schema, topic, record in cases:
            rows += bench_record(name, schema, topic, record, server.url, args.seconds, args.repeats)

    rates = {(r[0], r[1], r[2]): r[3] for r in rows}
    print(f"{'record':<24}{'op':<8}{'impl':<17}{'events/s':>12}{'vs raw':>9}{'ours/impl':>11}")
    for name, op, impl, value in rows:
        raw = rates[(name, op, "raw fastavro")]
        ours = rates[(name, op, "ours")]
        print(f"{name:<24}{op:<8}{impl:<17}{value:>12,.0f}{value / raw:>9.2f}{ours / value:>11.2f}")
    print()
    for name, *_ in cases:
        for op in ("encode", "decode"):
            ours = rates[(name, op, "ours")]
            raw, ck = rates[(name, op, "raw fastavro")], rates[(name, op, "confluent-kafka")]
            work = f"{name}, best of {args.repeats} x {args.seconds:g}s"
            result("serde", f"{op} events/s", work, ours, "raw fastavro", raw, ours / raw,
                   goal=">= 0.9x", met=ours / raw >= 0.9, unit="events/s")
            result("serde", f"{op} events/s", work, ours, "confluent-kafka", ck, ours / ck,
                   goal=">= 2x", met=ours / ck >= 2, unit="events/s",
                   line=f"{name} {op}: ours = {ours / raw:.2f} x raw fastavro, "
                        f"{ours / ck:.2f} x confluent-kafka")


if __name__ == "__main__":
    main()
