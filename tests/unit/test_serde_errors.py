"""Bad bytes produce typed errors; evolved schemas decode old and new data."""

from __future__ import annotations

import contextlib
import struct
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cosmic.errors import CosmicError, SerializationError
from schemas.errors import (
    IncompatibleSchema,
    InvalidRecord,
    MalformedPayload,
    TruncatedPayload,
    UnknownMagicByte,
    UnknownSchemaId,
)
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry

CTX = SerializationContext("cosmic.commands.v1")
NOW = datetime(2026, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)


def _command() -> dict[str, Any]:
    return {
        "command_id": uuid.UUID(int=42), "player_id": "p-1", "world_id": "w-1",
        "client_ts": NOW, "received_ts": NOW,
        "command": ("io.cosmicgarden.FoundCivilization", {"planet_id": 3, "civilization_id": 9, "name": "Ur"}),
        "admission": None,
    }


@pytest.fixture
def pair() -> tuple[AvroSerializer, AvroDeserializer]:
    registry = LocalRegistry()
    return AvroSerializer(registry, "PlayerCommand"), AvroDeserializer(registry, "PlayerCommand")


def test_errors_share_the_serialization_root() -> None:
    for kind in (UnknownMagicByte, TruncatedPayload, MalformedPayload, UnknownSchemaId, IncompatibleSchema):
        assert issubclass(kind, SerializationError) and issubclass(kind, CosmicError)


def test_wrong_magic_byte(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    ser, de = pair
    data = bytearray(ser(_command(), CTX))
    data[0] = 7
    with pytest.raises(UnknownMagicByte, match="0x07"):
        de(bytes(data), CTX)


def test_json_is_not_wire_format(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    with pytest.raises(UnknownMagicByte):
        pair[1](b'{"world_id": "w"}', CTX)


def test_unknown_schema_id(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    ser, de = pair
    body = ser(_command(), CTX)[5:]
    with pytest.raises(UnknownSchemaId, match="9999") as info:
        de(struct.pack(">bI", 0, 9999) + body, CTX)
    assert info.value.schema_id == 9999


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_short_header_is_truncated(pair: tuple[AvroSerializer, AvroDeserializer], data: bytes) -> None:
    with pytest.raises(TruncatedPayload, match="5-byte"):
        pair[1](data, CTX)


def test_every_truncation_of_a_record_is_reported_as_truncated(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    ser, de = pair
    data = ser(_command(), CTX)
    for cut in range(5, len(data)):
        with pytest.raises(TruncatedPayload):
            de(data[:cut], CTX)
    assert de(data, CTX) == _command()


def test_trailing_bytes_are_malformed(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    ser, de = pair
    with pytest.raises(MalformedPayload, match="left over"):
        de(ser(_command(), CTX) + b"\x00\x01", CTX)


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=200))
def test_garbage_after_a_valid_header_never_escapes_the_typed_errors(garbage: bytes) -> None:
    registry = LocalRegistry()
    ser = AvroSerializer(registry, "PlayerCommand")
    de = AvroDeserializer(registry, "PlayerCommand")
    header = ser(_command(), CTX)[:5]
    # The typed path is fine; any other exception fails the test.
    with contextlib.suppress(SerializationError):
        de(header + garbage, CTX)


def test_invalid_record_is_refused_on_encode(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    bad = _command() | {"world_id": 12}
    with pytest.raises(InvalidRecord, match="PlayerCommand"):
        pair[0](bad, CTX)


def test_tombstone_stays_none(pair: tuple[AvroSerializer, AvroDeserializer]) -> None:
    assert pair[1](None, CTX) is None


# -- evolution ----------------------------------------------------------------

V1 = {
    "type": "record", "name": "Probe", "namespace": "io.cosmicgarden", "doc": "test",
    "fields": [{"name": "id", "type": "long", "doc": "id"}, {"name": "note", "type": "string", "doc": "n"}],
}
V2 = {**V1, "fields": [*V1["fields"], {"name": "score", "type": "double", "default": 1.5, "doc": "s"}]}
V2_NO_DEFAULT = {**V1, "fields": [*V1["fields"], {"name": "score", "type": "double", "doc": "s"}]}


def test_old_records_decode_with_the_new_reader_schema() -> None:
    registry = LocalRegistry()
    ctx = SerializationContext("test.probe")
    old = AvroSerializer(registry, V1)({"id": 1, "note": "a"}, ctx)
    new = AvroSerializer(registry, V2)({"id": 2, "note": "b", "score": 3.0}, ctx)
    assert old[1:5] != new[1:5]  # two schema ids
    reader = AvroDeserializer(registry, V2)
    assert reader(old, ctx) == {"id": 1, "note": "a", "score": 1.5}
    assert reader(new, ctx) == {"id": 2, "note": "b", "score": 3.0}
    # and an old reader reads new data, dropping the field it does not know
    assert AvroDeserializer(registry, V1)(new, ctx) == {"id": 2, "note": "b"}


def test_reader_needing_a_field_the_writer_lacks_is_incompatible_with_a_clear_message() -> None:
    registry = LocalRegistry()
    ctx = SerializationContext("test.probe")
    old = AvroSerializer(registry, V1)({"id": 1, "note": "a"}, ctx)
    with pytest.raises(IncompatibleSchema, match="field 'score' is in the reader's schema without a default") as info:
        AvroDeserializer(registry, V2_NO_DEFAULT)(old, ctx)
    assert info.value.problems


def test_schema_ids_are_cached_per_subject() -> None:
    calls: list[str] = []

    class Counting(LocalRegistry):
        def register(self, subject: str, schema: Any) -> int:
            calls.append(subject)
            return super().register(subject, schema)

    ser = AvroSerializer(Counting(), "PlayerCommand")
    for _ in range(100):
        ser(_command(), CTX)
    ser(_command(), SerializationContext("other"))
    assert calls == ["cosmic.commands.v1-value", "other-value"]


def test_writing_with_a_schema_the_subject_refuses_is_an_incompatible_schema_error() -> None:
    registry = LocalRegistry()
    ctx = SerializationContext("test.probe")
    AvroSerializer(registry, V1)({"id": 1, "note": "a"}, ctx)
    with pytest.raises(IncompatibleSchema, match="field 'score' is in the new schema without a default"):
        AvroSerializer(registry, V2_NO_DEFAULT)({"id": 1, "note": "a", "score": 2.0}, ctx)


def test_without_auto_register_an_unregistered_schema_is_refused() -> None:
    from schemas.errors import UnknownSchema

    registry = LocalRegistry()
    ctx = SerializationContext("test.probe")
    with pytest.raises(UnknownSchema, match="not registered"):
        AvroSerializer(registry, V1, auto_register=False)({"id": 1, "note": "a"}, ctx)
    AvroSerializer(registry, V1)({"id": 1, "note": "a"}, ctx)
    assert AvroSerializer(registry, V1, auto_register=False)({"id": 1, "note": "a"}, ctx)[:5] == b"\x00\x00\x00\x00\x01"
