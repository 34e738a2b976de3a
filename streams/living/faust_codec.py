"""Faust codecs that speak our Confluent wire format through our registry.

Faust agents read and write exactly the bytes every other service does:
:class:`AvroCodec` wraps :class:`schemas.serde.AvroSerializer` /
:class:`~schemas.serde.AvroDeserializer`. A codec writes to one topic (the
subject is ``<topic>-value``, so the codec is bound to its topic), and reads
any writer schema the registry knows, returning a :class:`Record` named by
the writer's schema, so an agent on several topics dispatches on the record
type rather than on topic names or dict fields.

Bad bytes are data, not crashes: decoding returns an :class:`Undecodable`
instead of raising, so the agent that receives it can dead-letter it inside
its own transaction (exactly once, with the consumer offset) and carry on.
Faust's own decode-error path acks the record outside any transaction and
gives the agent no say, which would lose it silently.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from faust.serializers.codecs import Codec
from faust.types import Message

from cosmic.errors import SerializationError
from schemas import dlq
from schemas.catalog import short_name
from schemas.errors import RegistryError
from schemas.serde import (
    AvroDeserializer,
    AvroSerializer,
    SchemaSource,
    SerializationContext,
    parse_header,
)

log = logging.getLogger(__name__)

# Longest wait between two tries of an unavailable registry.
REGISTRY_RETRY_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class Record:
    """A decoded value and the short name of the record type its writer wrote."""

    name: str  # e.g. "PlayerCommand"
    value: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Undecodable:
    """What an agent receives for a record whose bytes are not a valid record."""

    data: bytes
    error: SerializationError


class AvroCodec(Codec):
    """``value_serializer`` for a Faust topic: Confluent wire format, Avro, our registry.

    ``topic`` and ``schema`` are needed to write (the subject and the writer
    schema); reading needs only the registry.
    """

    def __init__(self, registry: SchemaSource, topic: str | None = None,
                 schema: str | None = None, **kwargs: Any) -> None:
        super().__init__(registry=registry, topic=topic, schema=schema, **kwargs)
        self._ctx = SerializationContext(topic or "")
        self._write = AvroSerializer(registry, schema) if schema is not None else None
        self._read = AvroDeserializer(registry)
        self._registry = registry
        self._names: dict[int, str] = {}

    def _dumps(self, obj: Any) -> bytes:
        if self._write is None:
            raise SerializationError(f"codec for {self._ctx.topic!r} has no writer schema")
        return self._write(obj, self._ctx)

    def _loads(self, s: bytes) -> Any:
        # A registry that does not answer is no reason to call the bytes bad: Faust would
        # ack an undecodable record, and it would be lost without a dead letter. Wait for
        # the registry instead (a stalled worker loses its partitions to another, which
        # reads the record again; a dropped record is gone).
        delay = 0.1
        while True:
            try:
                return self._decode(s)
            except RegistryError as exc:
                log.warning("schema registry unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, REGISTRY_RETRY_MAX_S)

    def _decode(self, s: bytes) -> Record | Undecodable:
        try:
            value = self._read(s, self._ctx)
        except SerializationError as exc:
            return Undecodable(s, exc)
        schema_id = parse_header(s)
        name = self._names.get(schema_id)
        if name is None:
            tree = self._registry.schema(schema_id).tree
            name = short_name(str(tree["name"])) if isinstance(tree, dict) else str(tree)
            self._names[schema_id] = name
        return Record(name, value)


def dead_letter_headers(message: Message, error: BaseException) -> list[tuple[str, bytes]]:
    """The DLQ headers of :mod:`schemas.dlq` for a Faust message."""
    raw: Any = message.headers or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    kept = [(str(k), v if isinstance(v, bytes) else str(v).encode())
            for k, v in pairs if k not in dlq._OURS]
    ours = [
        (dlq.SOURCE_TOPIC, message.topic.encode()),
        (dlq.SOURCE_PARTITION, str(message.partition).encode()),
        (dlq.SOURCE_OFFSET, str(message.offset).encode()),
        (dlq.ERROR_TYPE, type(error).__name__.encode()),
        (dlq.ERROR_MESSAGE, str(error).encode()[:dlq.MAX_MESSAGE_BYTES]),
    ]
    if message.timestamp:
        ours.insert(3, (dlq.SOURCE_TIMESTAMP, str(int(message.timestamp * 1000)).encode()))
    return kept + ours
