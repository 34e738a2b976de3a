"""Hypothesis strategies that generate valid records for any Avro schema.

Derived from the parsed schema itself, so every shipped ``.avsc`` gets
property-based examples without a hand-written strategy per record. Values
take the shape the serde returns when decoding: unions of records as
``(full name, record)`` pairs, optional records plain, timestamp-millis as
aware UTC datetimes at millisecond precision, uuids as :class:`uuid.UUID`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from schemas.registry.compatibility import ParsedSchema

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_MILLIS = st.datetimes(
    min_value=datetime(1970, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)  # noqa: DTZ001 - hypothesis wants naive bounds
).map(lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000))


def records(schema: ParsedSchema, max_bytes: int = 64) -> st.SearchStrategy[Any]:
    return _node(schema.tree, schema.named, max_bytes)


def _node(node: Any, named: dict[str, Any], max_bytes: int) -> st.SearchStrategy[Any]:
    if isinstance(node, list):
        return _union(node, named, max_bytes)
    if isinstance(node, str):
        if node in named:
            return st.deferred(lambda: _node(named[node], named, max_bytes))
        return _primitive(node, max_bytes)
    logical = node.get("logicalType")
    if logical == "uuid":
        return st.uuids()
    if logical == "timestamp-millis":
        return _MILLIS
    kind = node["type"]
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: _node(f["type"], named, max_bytes) for f in node["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(node["symbols"])
    if kind == "array":
        return st.lists(_node(node["items"], named, max_bytes), max_size=5)
    if kind == "map":
        return st.dictionaries(st.text(max_size=10), _node(node["values"], named, max_bytes), max_size=5)
    if kind == "fixed":
        return st.binary(min_size=node["size"], max_size=node["size"])
    return _node(kind, named, max_bytes)


def _primitive(name: str, max_bytes: int) -> st.SearchStrategy[Any]:
    return {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": _INT32,
        "long": _INT64,
        "float": st.floats(width=32, allow_nan=False),
        "double": st.floats(allow_nan=False),
        "bytes": st.binary(max_size=max_bytes),
        "string": st.text(max_size=40),
    }[name]


def _union(branches: list[Any], named: dict[str, Any], max_bytes: int) -> st.SearchStrategy[Any]:
    non_null = [b for b in branches if b != "null"]
    record_branches = [b for b in non_null if _record_name(b, named)]
    options = []
    if "null" in branches:
        options.append(st.none())
    for b in non_null:
        value = _node(b, named, max_bytes)
        name = _record_name(b, named)
        # A lone record beside null reads back plain; among several records, tagged.
        if name and len(record_branches) > 1:
            options.append(value.map(lambda v, n=name: (n, v)))
        else:
            options.append(value)
    return st.one_of(options)


def _record_name(node: Any, named: dict[str, Any]) -> str | None:
    if isinstance(node, str) and node in named:
        node = named[node]
    if isinstance(node, dict) and node.get("type") == "record":
        return str(node["name"])
    return None
