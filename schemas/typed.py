"""Decoding straight into the pydantic models: the reader schema, then the model's rules.

Every consumer of commands (the physics worker, its recovery, replay, later
the gateway's echo of them) decodes the same way, so what the live path
dead-letters, replay skips, and what the live path applies, replay applies::

    decode = ModelDeserializer(registry, models.PlayerCommand)
    command = decode(msg.value(), SerializationContext(msg.topic()))  # a PlayerCommand

The writer's schema is resolved to the model's own ``.avsc`` (so a well-framed
record of another schema is an :class:`~schemas.errors.IncompatibleSchema`),
then validated by the model (:class:`~schemas.errors.FailedValidation`). Both
are :class:`~cosmic.errors.SerializationError`: bad input, for the DLQ.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from schemas.errors import FailedValidation, MalformedPayload
from schemas.serde import AvroDeserializer, SchemaSource, SerializationContext


class AvroModel(Protocol):
    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Any: ...


M = TypeVar("M", bound=AvroModel)


def to_model(model: type[M], record: Any) -> M:
    """A record decoded with ``model``'s reader schema, validated into the model."""
    if not isinstance(record, dict):
        raise MalformedPayload(f"expected a {model.__name__} record, got {type(record).__name__}")
    try:
        return model.from_avro(record)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in exc.errors())
        raise FailedValidation(f"not a valid {model.__name__}: {problems}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise FailedValidation(f"not a valid {model.__name__}: {exc}") from None


class ModelDeserializer(Generic[M]):
    """``deserializer(data, ctx) -> model``; the reader schema is the model's record name."""

    def __init__(self, registry: SchemaSource, model: type[M]) -> None:
        self.model = model
        self._decode = AvroDeserializer(registry, model.__name__)

    def __call__(self, data: bytes | None, ctx: SerializationContext | None = None) -> M:
        return to_model(self.model, self._decode(data, ctx))
