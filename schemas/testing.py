"""In-process stand-ins for unit tests of code that serializes events.

:class:`LocalRegistry` answers the serde's questions from a
:class:`~schemas.registry.core.Registry` over a memory store, with the same
compatibility rules as the served registry, and no HTTP or Kafka. Integration
tests still use the real registry server.
"""

from __future__ import annotations

from schemas.registry.client import RegisteredSchema
from schemas.registry.compatibility import Compatibility, ParsedSchema
from schemas.registry.core import DEFAULT_COMPATIBILITY, Registry
from schemas.registry.store import MemoryStore


class LocalRegistry:
    """A :class:`~schemas.serde.SchemaSource` backed by an in-memory registry."""

    def __init__(self, compatibility: Compatibility = DEFAULT_COMPATIBILITY) -> None:
        self.registry = Registry(MemoryStore(), default=compatibility)

    def register(self, subject: str, schema: ParsedSchema) -> int:
        return self.registry.register(subject, schema).id

    def lookup(self, subject: str, schema: ParsedSchema) -> RegisteredSchema:
        v = self.registry.lookup(subject, schema)
        return RegisteredSchema(v.subject, v.version, v.id, v.schema)

    def schema(self, schema_id: int) -> ParsedSchema:
        return self.registry.schema(schema_id)
