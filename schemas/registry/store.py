"""Where the registry keeps its changes: an append-only log of keyed records.

Every change (a schema version registered or deleted, a compatibility level
set) is one ``(key, value)`` record; a ``None`` value is a tombstone. The
registry rebuilds its state by replaying the log, so any store that can
append and replay works: :class:`MemoryStore` for tests, and
:class:`schemas.registry.kafka_store.KafkaStore` (a compacted topic) for the
running platform. Keys are per entity, so compaction keeps the latest state.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

Record = dict[str, Any]


class Store(Protocol):
    def replay(self) -> Iterator[tuple[Record, Record | None]]:
        """Every record appended so far, oldest first."""
        ...

    def append(self, key: Record, value: Record | None) -> None:
        """Persist one change; returns only once it is durable.

        Raises :class:`cosmic.errors.StoreError` when it cannot.
        """
        ...

    def close(self) -> None: ...


def schema_key(subject: str, version: int) -> Record:
    return {"keytype": "SCHEMA", "subject": subject, "version": version}


def config_key(subject: str | None) -> Record:
    return {"keytype": "CONFIG", "subject": subject}


class MemoryStore:
    """A store in a list; survives a registry "restart" as long as the object lives."""

    def __init__(self) -> None:
        self.records: list[tuple[Record, Record | None]] = []

    def replay(self) -> Iterator[tuple[Record, Record | None]]:
        return iter(list(self.records))

    def append(self, key: Record, value: Record | None) -> None:
        self.records.append((dict(key), None if value is None else dict(value)))

    def close(self) -> None:
        pass
