"""The catalog of event contracts: every ``*.avsc`` shipped in this package, by name.

The ``.avsc`` files are the single source of truth. This module loads them,
parses them once (fastavro's parsed form is what the serde and fastavro need
on every call) and maps each topic of :mod:`cosmic.topics` to its value schema.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

from cosmic import topics
from schemas.errors import UnknownSchema

SCHEMA_DIR = Path(__file__).resolve().parent
NAMESPACE = "io.cosmicgarden"


def short_name(name: str) -> str:
    """A record's name without its namespace: ``io.cosmicgarden.SeedSpecies`` -> ``SeedSpecies``.

    A union of records decodes as a ``(full name, body)`` pair; the short name
    is what handlers dispatch on and what the stores' ``event_type`` columns hold.
    """
    return name.rsplit(".", 1)[-1]


def full_name(short: str) -> str:
    """The platform's full record name for ``short`` (a union branch as the serde writes it)."""
    return f"{NAMESPACE}.{short}"


def names() -> tuple[str, ...]:
    """Names of every shipped schema (file stem == record name)."""
    return tuple(sorted(p.stem for p in SCHEMA_DIR.glob("*.avsc")))


@cache
def schema_text(name: str) -> str:
    """The ``.avsc`` text of the schema ``name``, exactly as shipped."""
    path = SCHEMA_DIR / f"{name}.avsc"
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UnknownSchema(
            f"no schema named {name!r}; shipped schemas: {', '.join(names())}"
        ) from None


def load(name: str) -> dict[str, Any]:
    """The schema ``name`` as a fresh JSON object (safe to modify)."""
    loaded: dict[str, Any] = json.loads(schema_text(name))
    return loaded


@cache
def parsed(name: str) -> dict[str, Any]:
    """The schema ``name`` parsed by fastavro, cached; treat as read-only."""
    result = fastavro.parse_schema(load(name))
    assert isinstance(result, dict)  # every shipped schema is a record
    return result


def union_branches(name: str, field: str) -> tuple[str, ...]:
    """Short names of the record branches of the union field ``field`` of schema ``name``,
    in declaration order (what a union's ``member_<Name>`` columns are called)."""
    for f in load(name)["fields"]:
        if f["name"] == field and isinstance(f["type"], list):
            return tuple(short_name(b if isinstance(b, str) else b["name"]) for b in f["type"]
                         if not (isinstance(b, str) and b == "null"))
    raise UnknownSchema(f"schema {name!r} has no union field {field!r}")


# topic name -> schema name; the topic registry's ``value`` names the record.
TOPIC_SCHEMAS: dict[str, str] = {
    t.name: t.value for t in topics.ALL if (SCHEMA_DIR / f"{t.value}.avsc").exists()
}


def schema_name_for_topic(topic: str | topics.Topic) -> str:
    """The schema name of a topic's values; raises :class:`UnknownSchema` if it has none."""
    name = str(topic)
    try:
        return TOPIC_SCHEMAS[name]
    except KeyError:
        raise UnknownSchema(
            f"topic {name!r} has no Avro value schema (mapped topics: {', '.join(sorted(TOPIC_SCHEMAS))})"
        ) from None


def value_subject(topic: str | topics.Topic) -> str:
    """The registry subject of a topic's values (Confluent TopicNameStrategy)."""
    return f"{topic}-value"


def subjects() -> dict[str, str]:
    """Every subject the platform registers, mapped to its schema name."""
    out = {value_subject(t): s for t, s in TOPIC_SCHEMAS.items()}
    # A contract no topic carries yet is still registered, under its record name.
    out.update({full_name(s): s for s in names() if s not in TOPIC_SCHEMAS.values()})
    return out
