"""Bad records become dead letters with the original bytes and the reason; good ones pass."""

from __future__ import annotations

from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from cosmic import topics
from schemas import dlq
from schemas.dlq import DeadLettered, DeadLetterQueue, Decoded, decode_or_dead_letter
from schemas.serde import AvroDeserializer, AvroSerializer, SerializationContext
from schemas.testing import LocalRegistry


class RecordingProducer:
    """Stands in for confluent_kafka.Producer: keeps what was produced."""

    def __init__(self) -> None:
        self.produced: list[dict[str, Any]] = []
        self.polls = 0

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.produced.append({"topic": topic, **kwargs})

    def poll(self, timeout: float) -> int:
        self.polls += 1
        return 0


def _message(value: bytes | None, offset: int = 41) -> Message:
    return Message(topic=topics.METRICS.name, partition=2, offset=offset, key=b"physics.step_us",
                   value=value, headers=[("trace", b"abc")], timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_123))


def test_garbage_goes_to_the_dlq_with_source_and_reason() -> None:
    producer = RecordingProducer()
    queue = DeadLetterQueue(producer)  # type: ignore[arg-type]
    deserialize = AvroDeserializer(LocalRegistry(), "MetricPoint")
    msg = _message(b"\x07garbage")

    result = decode_or_dead_letter(msg, deserialize, queue)

    assert isinstance(result, DeadLettered)
    assert type(result.error).__name__ == "UnknownMagicByte"
    [sent] = producer.produced
    assert sent["topic"] == topics.DLQ.name
    assert sent["key"] == b"physics.step_us" and sent["value"] == b"\x07garbage"
    headers = dict(sent["headers"])
    assert headers["trace"] == b"abc"  # the original headers are kept
    assert headers[dlq.SOURCE_TOPIC] == topics.METRICS.name.encode()
    assert headers[dlq.SOURCE_PARTITION] == b"2"
    assert headers[dlq.SOURCE_OFFSET] == b"41"
    assert headers[dlq.SOURCE_TIMESTAMP] == b"1700000000123"
    assert headers[dlq.ERROR_TYPE] == b"UnknownMagicByte"
    assert b"magic byte 0x07" in headers[dlq.ERROR_MESSAGE]
    assert queue.sent == 1 and producer.polls == 1


def test_good_records_take_the_ok_path_and_processing_carries_on() -> None:
    registry = LocalRegistry()
    ctx = SerializationContext(topics.METRICS.name)
    good = AvroSerializer(registry, "MetricPoint")(
        {"name": "n", "world_id": None, "window_start": 0, "window_end": 1000, "value": 1.0, "labels": {}}, ctx
    )
    producer = RecordingProducer()
    queue = DeadLetterQueue(producer)  # type: ignore[arg-type]
    deserialize = AvroDeserializer(registry, "MetricPoint")
    stream = [_message(good, 1), _message(good[:-2], 2), _message(b"\x00\x00\x00\x00\x63abc", 3), _message(good, 4)]

    results = [decode_or_dead_letter(m, deserialize, queue) for m in stream]

    assert [type(r).__name__ for r in results] == ["Decoded", "DeadLettered", "DeadLettered", "Decoded"]
    assert isinstance(results[0], Decoded) and results[0].value["name"] == "n"
    reasons = [dict(p["headers"])[dlq.ERROR_TYPE] for p in producer.produced]
    assert reasons == [b"TruncatedPayload", b"UnknownSchemaId"]
    assert [dict(p["headers"])[dlq.SOURCE_OFFSET] for p in producer.produced] == [b"2", b"3"]


def test_long_error_messages_are_cut() -> None:
    headers = dict(dlq.dead_letter_headers(_message(b"x"), ValueError("e" * 100_000)))
    assert len(headers[dlq.ERROR_MESSAGE]) == dlq.MAX_MESSAGE_BYTES
