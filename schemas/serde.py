"""Confluent wire format: magic byte 0, 4-byte big-endian schema id, Avro binary.

Serializers and deserializers are small callables with an explicit context,
the shape confluent-kafka uses, so handlers never build bytes inline::

    serialize = AvroSerializer(registry, "PlayerCommand")
    deserialize = AvroDeserializer(registry, "PlayerCommand")
    data = serialize(record, SerializationContext(topics.COMMANDS.name))
    record = deserialize(data, SerializationContext(topics.COMMANDS.name))

Speed: encoding uses :mod:`schemas.fastwriter` (one join, so columnar
records are copied once), falling back to fastavro's writer for values it
does not cover; decoding is fastavro's compiled reader on an already-parsed
schema. The 5-byte header is built once per subject. Everything else (ids, parsed schemas, the writer -> reader resolution
plan) is resolved once per (writer id, reader schema) and cached.

Decoding resolves the writer's schema (named by the id in the header) to the
reader's schema, so consumers keep working while producers evolve. Bad bytes
raise the typed errors of :mod:`schemas.errors` (all ``SerializationError``);
an unreachable registry raises :class:`~schemas.errors.RegistryError`
instead, because retrying, not dead-lettering, is the cure for that.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from enum import StrEnum
from io import BytesIO
from typing import Any, NamedTuple, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError

from schemas import catalog
from schemas.errors import (
    IncompatibleRegistration,
    IncompatibleSchema,
    InvalidRecord,
    MalformedPayload,
    SchemaNotFound,
    SubjectNotFound,
    TruncatedPayload,
    UnknownMagicByte,
    UnknownSchema,
    UnknownSchemaId,
)
from schemas.fastwriter import Unsupported, compile_writer
from schemas.registry.compatibility import ParsedSchema, reader_problems

MAGIC_BYTE = 0
_HEADER = struct.Struct(">bI")
HEADER_SIZE = _HEADER.size  # 5

# What fastavro raises on bytes that do not fit the schema, besides running out (EOFError).
_DECODE_ERRORS = (ValueError, IndexError, KeyError, TypeError, OverflowError, UnicodeDecodeError, struct.error)
# What the specialised encoder raises on a value it leaves to fastavro.
_FAST_FALLBACK = (Unsupported, TypeError, ValueError, KeyError, IndexError, OverflowError, struct.error)
_ENCODE_ERRORS = (ValueError, TypeError, KeyError, AttributeError, OverflowError, struct.error)


class MessageField(StrEnum):
    KEY = "key"
    VALUE = "value"


class SerializationContext(NamedTuple):
    """Where the bytes go or came from: the topic and whether they are the key or the value."""

    topic: str
    field: MessageField = MessageField.VALUE


SubjectNameStrategy = Callable[[SerializationContext, ParsedSchema], str]


def topic_name_strategy(ctx: SerializationContext, schema: ParsedSchema) -> str:
    """Confluent's default: ``<topic>-key`` / ``<topic>-value``."""
    return f"{ctx.topic}-{ctx.field.value}"


class SchemaSource(Protocol):
    """What the serde needs from a registry; :class:`~schemas.registry.client.RegistryClient` is one."""

    def register(self, subject: str, schema: ParsedSchema) -> int: ...

    def lookup(self, subject: str, schema: ParsedSchema) -> Any: ...

    def schema(self, schema_id: int) -> ParsedSchema: ...


def _schema(schema: str | dict[str, Any] | ParsedSchema) -> ParsedSchema:
    """A schema given as a catalog name, JSON text, a JSON object or already parsed."""
    if isinstance(schema, ParsedSchema):
        return schema
    if isinstance(schema, str) and not schema.lstrip().startswith(("{", "[", '"')):
        return ParsedSchema(catalog.load(schema))
    return ParsedSchema(schema)


def header(schema_id: int) -> bytes:
    return _HEADER.pack(MAGIC_BYTE, schema_id)


def parse_header(data: bytes) -> int:
    """The schema id of a wire-format payload; raises the typed error for a bad header."""
    if len(data) < HEADER_SIZE:
        raise TruncatedPayload(f"payload of {len(data)} bytes is shorter than the 5-byte wire-format header")
    magic, schema_id = _HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise UnknownMagicByte(magic & 0xFF)
    return int(schema_id)


class AvroSerializer:
    """``serializer(record, ctx) -> bytes`` for one writer schema.

    ``auto_register`` registers the schema under the context's subject on
    first use (subject to the registry's compatibility rule); otherwise the
    schema must already be registered there and is looked up.
    """

    def __init__(
        self,
        registry: SchemaSource,
        schema: str | dict[str, Any] | ParsedSchema,
        *,
        auto_register: bool = True,
        subject_name: SubjectNameStrategy = topic_name_strategy,
    ) -> None:
        self._registry = registry
        self.schema = _schema(schema)
        self._tree = self.schema.tree
        self._auto_register = auto_register
        self._subject_name = subject_name
        self._headers: dict[tuple[str, str], bytes] = {}
        self._fast = compile_writer(self._tree, self.schema.named)

    def _header_for(self, ctx: SerializationContext) -> bytes:
        subject = self._subject_name(ctx, self.schema)
        try:
            if self._auto_register:
                schema_id = self._registry.register(subject, self.schema)
            else:
                schema_id = self._registry.lookup(subject, self.schema).id
        except IncompatibleRegistration as exc:
            # The writer's schema breaks the subject's rule: no record of it may be written.
            raise IncompatibleSchema(f"cannot write {_name(self.schema)} to {subject}: {exc}") from exc
        except (SchemaNotFound, SubjectNotFound):
            raise UnknownSchema(
                f"{_name(self.schema)} is not registered under {subject} (and auto_register is off)"
            ) from None
        built = header(schema_id)
        self._headers[(ctx.topic, ctx.field)] = built
        return built

    def schema_id(self, ctx: SerializationContext) -> int:
        return parse_header(self._headers.get((ctx.topic, ctx.field)) or self._header_for(ctx))

    def framed(self, payload: bytes, ctx: SerializationContext) -> bytes:
        """A record already Avro-encoded with this serializer's schema, in the wire format
        (for a caller that needed the encoding itself, e.g. to sign it)."""
        return (self._headers.get((ctx.topic, ctx.field)) or self._header_for(ctx)) + payload

    def __call__(self, record: Any, ctx: SerializationContext) -> bytes:
        head = self._headers.get((ctx.topic, ctx.field)) or self._header_for(ctx)
        if self._fast is not None:
            try:
                return self._fast(record, [head])
            except _FAST_FALLBACK:
                pass  # fastavro below encodes it, or says precisely what is wrong
        out = BytesIO()
        out.write(head)
        try:
            schemaless_writer(out, self._tree, record)
        except _ENCODE_ERRORS as exc:
            raise InvalidRecord(f"record does not match {_name(self.schema)}: {type(exc).__name__}: {exc}") from None
        return out.getvalue()


class _Plan(NamedTuple):
    """How to read one writer id: the writer tree and the reader tree (None: same schema)."""

    writer: Any
    reader: Any


class AvroDeserializer:
    """``deserializer(data, ctx) -> record``, reading every writer's data as ``reader_schema``.

    Without a reader schema, each record is returned as its writer wrote it.
    Unions of records come back as ``(record name, record)`` pairs when
    ``return_record_name`` is set (the default), so which branch was written
    survives a round trip; optional records (``["null", R]``) stay plain.
    """

    def __init__(
        self,
        registry: SchemaSource,
        reader_schema: str | dict[str, Any] | ParsedSchema | None = None,
        *,
        return_record_name: bool = True,
    ) -> None:
        self._registry = registry
        self.reader = None if reader_schema is None else _schema(reader_schema)
        self._plans: dict[int, _Plan] = {}
        self._named = return_record_name

    def _plan(self, schema_id: int) -> _Plan:
        try:
            writer = self._registry.schema(schema_id)
        except SchemaNotFound as exc:
            raise UnknownSchemaId(schema_id, str(exc)) from None
        reader_tree = None
        if self.reader is not None and self.reader.canonical != writer.canonical:
            problems = reader_problems(self.reader, writer, "the reader's schema", f"writer schema {schema_id}")
            if problems:
                raise IncompatibleSchema(
                    f"data written with schema {schema_id} cannot be read as {_name(self.reader)}: "
                    + "; ".join(problems),
                    problems,
                )
            reader_tree = self.reader.tree
        plan = _Plan(writer.tree, reader_tree)
        self._plans[schema_id] = plan
        return plan

    def schema_id(self, data: bytes) -> int:
        return parse_header(data)

    def __call__(self, data: bytes | None, ctx: SerializationContext | None = None) -> Any:
        if data is None:
            return None  # a tombstone stays a tombstone
        # Hot path kept flat: one unpack, one dict lookup, one reader call.
        try:
            magic, schema_id = _HEADER.unpack_from(data)
        except struct.error:
            parse_header(data)  # raises the precise TruncatedPayload
            raise
        if magic:
            raise UnknownMagicByte(magic & 0xFF)
        writer, reader = self._plans.get(schema_id) or self._plan(schema_id)
        named = self._named
        stream = BytesIO(data)
        stream.seek(HEADER_SIZE)
        try:
            # Positional arguments: keyword parsing costs ~3% of a small record's decode.
            record = schemaless_reader(stream, writer, reader, named, named)
        except EOFError:
            raise TruncatedPayload(
                f"payload of {len(data)} bytes ends inside a record of schema {schema_id}"
            ) from None
        except SchemaResolutionError as exc:
            raise IncompatibleSchema(f"cannot resolve schema {schema_id} to the reader's: {exc}") from None
        except _DECODE_ERRORS as exc:
            if stream.tell() >= len(data):
                # fastavro reports running out of bytes in several ways; position tells.
                raise TruncatedPayload(
                    f"payload of {len(data)} bytes ends inside a record of schema {schema_id}"
                ) from None
            raise MalformedPayload(
                f"payload is not a valid record of schema {schema_id}: {type(exc).__name__}: {exc}"
            ) from None
        if stream.tell() != len(data):
            raise MalformedPayload(
                f"payload has {len(data) - stream.tell()} bytes left over after a record of schema {schema_id}"
            )
        return record


def _name(schema: ParsedSchema) -> str:
    tree = schema.tree
    return str(tree.get("name", tree.get("type"))) if isinstance(tree, dict) else str(tree)
