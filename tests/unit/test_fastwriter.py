"""The specialised encoder writes exactly fastavro's bytes, and leaves what it does not cover to fastavro."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from schemas import catalog
from schemas.errors import InvalidRecord
from schemas.fastwriter import Unsupported, compile_writer
from schemas.registry.compatibility import ParsedSchema
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry
from tests.unit.avro_strategies import records


def _fastavro(schema: ParsedSchema, record: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, schema.tree, record)
    return out.getvalue()


@pytest.mark.parametrize("name", catalog.names())
def test_every_shipped_schema_is_covered_and_byte_identical(name: str) -> None:
    schema = ParsedSchema(catalog.load(name))
    write = compile_writer(schema.tree, schema.named)
    assert write is not None, f"{name} is not covered by the fast encoder"

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(records(schema, max_bytes=300))
    def check(record: Any) -> None:
        assert write(record, [b"HEAD"]) == b"HEAD" + _fastavro(schema, record)

    check()


PROBE: dict[str, Any] = {
    "type": "record", "name": "Probe", "fields": [
        {"name": "n", "type": "long"},
        {"name": "t", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "opt", "type": ["null", "string"], "default": None},
    ],
}


@pytest.mark.parametrize(
    "record",
    [
        {"n": np.int64(-5), "t": 0, "opt": None},               # numpy scalar
        {"n": 1, "t": datetime(2026, 1, 1, 12, 0), "opt": "x"},  # noqa: DTZ001 - naive on purpose
        {"n": 1, "t": 5},                                        # missing field that has a default
        {"n": True, "t": 5, "opt": None},                        # bool where a long is expected
    ],
)
def test_values_outside_the_fast_path_fall_back_to_fastavro(record: dict[str, Any]) -> None:
    schema = ParsedSchema(PROBE)
    write = compile_writer(schema.tree, schema.named)
    assert write is not None
    with pytest.raises((Unsupported, KeyError)):
        write(record, [])
    data = AvroSerializer(LocalRegistry(), schema)(record, SerializationContext("t"))
    assert data[5:] == _fastavro(schema, record)


def test_extreme_values_match_fastavro() -> None:
    schema = ParsedSchema(PROBE)
    write = compile_writer(schema.tree, schema.named)
    assert write is not None
    for n in (0, -1, 1, 63, -64, 64, 2**63 - 1, -(2**63), 2**31, -(2**31) - 1):
        for t in (datetime(1900, 1, 1, tzinfo=UTC), datetime(2262, 4, 11, 23, 47, 16, 854775, tzinfo=UTC)):
            record = {"n": n, "t": t, "opt": "é" * 100}
            assert write(record, []) == _fastavro(schema, record)


def test_out_of_range_long_is_refused_by_both_paths() -> None:
    registry = LocalRegistry()
    ser = AvroSerializer(registry, PROBE)
    with pytest.raises(InvalidRecord, match="OverflowError"):
        ser({"n": 2**63, "t": 0, "opt": None}, SerializationContext("t"))


def test_fast_encoded_records_decode() -> None:
    registry = LocalRegistry()
    ctx = SerializationContext("t")
    record = {"n": -3, "t": datetime(2026, 1, 1, tzinfo=UTC), "opt": "hi"}
    assert AvroDeserializer(registry, PROBE)(AvroSerializer(registry, PROBE)(record, ctx), ctx) == record
