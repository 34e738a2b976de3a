"""Dead letters: the one way every consumer sets a bad record aside and carries on.

A record that cannot be decoded (or processed) is copied to ``cosmic.dlq.v1``
with its original key, value and headers, plus headers that say where it came
from and what went wrong::

    cosmic.source.topic / cosmic.source.partition / cosmic.source.offset
    cosmic.source.timestamp                       (ms since the epoch, when known)
    cosmic.error.type / cosmic.error.message

The produce is not flushed here: delivery belongs to the caller's processing
guarantee (with a transactional producer, the dead letter commits with the
consumer's offsets; otherwise flush before committing offsets).

Consumers use :func:`decode_or_dead_letter`, which returns either a
:class:`Decoded` record (the ok path) or a :class:`DeadLettered` one (already
sent to the DLQ)::

    result = decode_or_dead_letter(msg, deserialize, dlq)
    if isinstance(result, Decoded):
        handle(result.value)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, Producer

from cosmic import topics
from cosmic.errors import SerializationError
from schemas.serde import MessageField, SerializationContext

SOURCE_TOPIC = "cosmic.source.topic"
SOURCE_PARTITION = "cosmic.source.partition"
SOURCE_OFFSET = "cosmic.source.offset"
SOURCE_TIMESTAMP = "cosmic.source.timestamp"
ERROR_TYPE = "cosmic.error.type"
ERROR_MESSAGE = "cosmic.error.message"
_OURS = frozenset({SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, SOURCE_TIMESTAMP, ERROR_TYPE, ERROR_MESSAGE})

# Kafka headers are not meant for essays; a stack-trace-sized message is cut.
MAX_MESSAGE_BYTES = 4096

Headers = list[tuple[str, str | bytes | None]]


def _original_headers(msg: Message) -> Headers:
    """The message's headers as (name, bytes) pairs, whichever shape the client gave them in."""
    raw = msg.headers() or []
    pairs = raw.items() if isinstance(raw, dict) else raw
    return [
        (str(k), v.encode() if isinstance(v, str) else (v or b""))
        for k, v in pairs
        if k not in _OURS
    ]


def dead_letter_headers(msg: Message, error: BaseException) -> Headers:
    """The original headers (ours from an earlier hop dropped) plus source and error headers."""
    kept = _original_headers(msg)
    ts_type, ts = msg.timestamp()
    ours: Headers = [
        (SOURCE_TOPIC, (msg.topic() or "").encode()),
        (SOURCE_PARTITION, str(msg.partition()).encode()),
        (SOURCE_OFFSET, str(msg.offset()).encode()),
        (ERROR_TYPE, type(error).__name__.encode()),
        (ERROR_MESSAGE, str(error).encode()[:MAX_MESSAGE_BYTES]),
    ]
    if ts_type and ts is not None and ts >= 0:
        ours.insert(3, (SOURCE_TIMESTAMP, str(ts).encode()))
    return kept + ours


class DeadLetterQueue:
    """Sends failed records to the DLQ topic through a producer the caller owns."""

    def __init__(self, producer: Producer, topic: topics.Topic = topics.DLQ) -> None:
        self.producer = producer
        self.topic = topic
        self.sent = 0

    def send(self, msg: Message, error: BaseException) -> None:
        self.producer.produce(
            self.topic.name, key=msg.key(), value=msg.value(),
            headers=dead_letter_headers(msg, error),
        )
        self.sent += 1
        # Serve delivery callbacks without blocking, so a long run of bad
        # records cannot fill the producer's queue.
        self.producer.poll(0)


@dataclass(frozen=True, slots=True)
class Decoded:
    """The ok path: the message and its decoded value."""

    message: Message
    value: Any


@dataclass(frozen=True, slots=True)
class DeadLettered:
    """The error path: the message went to the DLQ because of ``error``."""

    message: Message
    error: SerializationError


def decode_or_dead_letter(
    msg: Message,
    deserialize: Callable[[bytes | None, SerializationContext], Any],
    dlq: DeadLetterQueue,
) -> Decoded | DeadLettered:
    """Decode a message's value, or dead-letter it when its bytes are bad.

    Only :class:`~cosmic.errors.SerializationError` (bad bytes, unknown schema
    id, incompatible schema) dead-letters: a registry outage or a bug must
    surface, not silently fill the DLQ.
    """
    ctx = SerializationContext(msg.topic() or "", MessageField.VALUE)
    try:
        return Decoded(msg, deserialize(msg.value(), ctx))
    except SerializationError as exc:
        dlq.send(msg, exc)
        return DeadLettered(msg, exc)
