"""Every shipped schema survives the wire format, for generated records of every shape."""

from __future__ import annotations

import io
import math
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from cosmic import topics
from schemas import catalog, columnar
from schemas.registry.compatibility import ParsedSchema
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext, parse_header
from schemas.testing import LocalRegistry
from tests.unit.avro_strategies import records

_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _same(a: Any, b: Any) -> bool:
    """Equality that treats -0.0/0.0 as Avro does (bit patterns survive; == is enough) and recurses."""
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture(scope="module")
def registry() -> LocalRegistry:
    return LocalRegistry()


def _topic_of(name: str) -> str:
    return next((t for t, s in catalog.TOPIC_SCHEMAS.items() if s == name), f"test.{name}")


@pytest.mark.parametrize("name", catalog.names())
def test_round_trip_through_the_wire_format(name: str, registry: LocalRegistry) -> None:
    schema = ParsedSchema(catalog.load(name))
    serialize = AvroSerializer(registry, name)
    deserialize = AvroDeserializer(registry, name)
    ctx = SerializationContext(_topic_of(name))

    @_SETTINGS
    @given(records(schema))
    def check(record: dict[str, Any]) -> None:
        data = serialize(record, ctx)
        assert data[0] == 0
        assert parse_header(data) == serialize.schema_id(ctx)
        decoded = deserialize(data, ctx)
        assert _same(decoded, record), (decoded, record)
        # The Avro body is exactly what raw fastavro writes for the same record.
        raw = io.BytesIO()
        fastavro.schemaless_writer(raw, schema.tree, record)
        assert data[5:] == raw.getvalue()

    check()


@_SETTINGS
@given(
    n=st.integers(0, 200),
    removed=hnp.arrays(np.int64, st.integers(0, 20)),
    vector_dtype=st.sampled_from(["FLOAT32", "FLOAT64"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_state_delta_columns_round_trip_bit_exact(n: int, removed: np.ndarray, vector_dtype: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    bodies = columnar.Bodies(
        ids=rng.integers(-(2**63), 2**63 - 1, n, dtype=np.int64),
        kinds=rng.integers(0, 4, n, dtype=np.uint8),
        masses=rng.standard_normal(n),
        radii=rng.random(n),
        positions=rng.standard_normal((n, 3)) * 1e12,
        velocities=rng.standard_normal((n, 3)),
    )
    registry = LocalRegistry()
    record = {
        "world_id": "w-1", "tick": 7, "sim_time": 0.5, "ts": 1_700_000_000_000,
        **columnar.delta_fields(bodies, removed, vector_dtype),  # type: ignore[arg-type]
    }
    ctx = SerializationContext(topics.STATE_DELTAS.name)
    data = AvroSerializer(registry, "StateDelta")(record, ctx)
    decoded = AvroDeserializer(registry, "StateDelta")(data, ctx)
    back = columnar.unpack_bodies(decoded)
    assert np.array_equal(back.ids, bodies.ids)
    assert np.array_equal(back.kinds, bodies.kinds)
    assert np.array_equal(back.masses, bodies.masses)
    assert np.array_equal(back.radii, bodies.radii)
    want = columnar.VECTOR_DTYPES[vector_dtype]
    assert back.positions.dtype == want and back.positions.shape == (n, 3)
    assert np.array_equal(back.positions, bodies.positions.astype(want))
    assert np.array_equal(back.velocities, bodies.velocities.astype(want))
    assert np.array_equal(columnar.removed_ids(decoded), removed)


def test_snapshot_keeps_float64_bit_exact() -> None:
    rng = np.random.default_rng(1)
    n = 1000
    pos = rng.standard_normal((n, 3)) * 1e7
    packed = columnar.pack_vectors(pos, "FLOAT64")
    assert len(packed) == n * 24
    assert np.array_equal(columnar.unpack_vectors(packed, "FLOAT64"), pos)
    # row-major: the first 24 bytes are body 0's x, y, z
    assert np.frombuffer(packed[:24], "<f8").tolist() == pos[0].tolist()
