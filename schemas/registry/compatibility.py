"""Schema compatibility by Avro's schema-resolution rules, for every registry mode.

The core question is "can a reader holding schema R decode data written with
schema W?" (:func:`reader_problems`). Modes ask it in one direction or both,
against the latest version or all of them (Confluent semantics):

- BACKWARD: the new schema can read data written with the latest version
  (consumers upgrade first). FORWARD: the latest version can read data
  written with the new schema (producers upgrade first). FULL: both.
- ``*_TRANSITIVE``: the same against every registered version, not only the latest.
- NONE: no check.

Problems are returned as sentences naming the field path and both schemas, so
a refused registration says exactly what to change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import fastavro
from fastavro.schema import SchemaParseException, UnknownType

from schemas.catalog import short_name
from schemas.errors import InvalidSchema

Schema = Any  # a fastavro-parsed schema node: str, list or dict

_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
_NAMED = frozenset({"record", "error", "enum", "fixed"})
# writer type -> reader types that may read it (Avro spec, "Schema Resolution").
_PROMOTIONS = {
    "int": {"long", "float", "double"},
    "long": {"float", "double"},
    "float": {"double"},
    "string": {"bytes"},
    "bytes": {"string"},
}


class Compatibility(StrEnum):
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"
    NONE = "NONE"

    @property
    def transitive(self) -> bool:
        return self.endswith("_TRANSITIVE")

    @property
    def backward(self) -> bool:
        return self.startswith(("BACKWARD", "FULL"))

    @property
    def forward(self) -> bool:
        return self.startswith(("FORWARD", "FULL"))


class ParsedSchema:
    """An Avro schema parsed once: the fastavro tree plus its named types, and a canonical text."""

    __slots__ = ("canonical", "named", "raw", "text", "tree")

    def __init__(self, schema: str | dict[str, Any] | list[Any]) -> None:
        try:
            raw = json.loads(schema) if isinstance(schema, str) else schema
        except json.JSONDecodeError as exc:
            raise InvalidSchema(f"schema is not valid JSON: {exc}") from None
        named: dict[str, Any] = {}
        try:
            tree = fastavro.parse_schema(raw, named_schemas=named)
        except (SchemaParseException, UnknownType, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise InvalidSchema(f"invalid Avro schema: {type(exc).__name__}: {exc}") from None
        self.raw = raw
        self.tree = tree
        self.named = named
        # Whitespace and key order must not make two identical schemas distinct.
        self.canonical = json.dumps(raw, sort_keys=True, separators=(",", ":"))
        # What clients get back: compact, the author's key order kept.
        self.text = json.dumps(raw, separators=(",", ":"))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ParsedSchema) and other.canonical == self.canonical

    def __hash__(self) -> int:
        return hash(self.canonical)


def _kind(node: Schema) -> str:
    if isinstance(node, list):
        return "union"
    if isinstance(node, dict):
        return str(node["type"]) if not isinstance(node["type"], (dict, list)) else _kind(node["type"])
    return str(node)


def _describe(node: Schema) -> str:
    if isinstance(node, dict) and node.get("type") in _NAMED:
        return f"{node['type']} {node['name']}"
    if isinstance(node, list):
        return "union [" + ", ".join(_describe(b) for b in node) + "]"
    return _kind(node)


class _Resolver:
    """Walks a reader and a writer schema side by side, collecting problems."""

    def __init__(self, reader: ParsedSchema, writer: ParsedSchema, reader_label: str, writer_label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.rl = reader_label
        self.wl = writer_label
        # Named pairs already being compared: recursive types are assumed fine
        # on the second visit (the first visit reports any problem).
        self._visiting: set[tuple[str, str]] = set()

    def _deref(self, node: Schema, named: dict[str, Any]) -> Schema:
        while isinstance(node, str) and node not in _PRIMITIVES:
            node = named[node]
        if isinstance(node, dict) and "logicalType" not in node:
            inner = node.get("type")
            # {"type": {...}}, {"type": [...]} and {"type": "some.Named"} are wrappers.
            if isinstance(inner, (dict, list)) or (
                isinstance(inner, str) and inner not in _PRIMITIVES | _NAMED | {"array", "map"}
            ):
                return self._deref(inner, named)
        return node

    def check(self, r: Schema, w: Schema, path: str) -> list[str]:
        r = self._deref(r, self.reader.named)
        w = self._deref(w, self.writer.named)
        rk, wk = _kind(r), _kind(w)
        if wk == "union":
            out: list[str] = []
            for branch in w:
                out += self.check(r, branch, path)
            return out
        if rk == "union":
            for branch in r:
                if not self.check(branch, w, path):
                    return []
            return [
                f"{path}: {self.wl} writes {_describe(w)}, which no branch of "
                f"{self.rl}'s {_describe(r)} can read"
            ]
        if rk != wk:
            if rk in _PROMOTIONS.get(wk, ()):
                return []
            return [f"{path}: {self.wl} has type {_describe(w)} where {self.rl} has {_describe(r)}; Avro cannot convert it"]
        if wk in _PRIMITIVES:
            return []
        if wk == "array":
            return self.check(r["items"], w["items"], f"{path}[]")
        if wk == "map":
            return self.check(r["values"], w["values"], f"{path}{{}}")
        return self._named(r, w, path)

    def _named(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        rname, wname = r["name"], w["name"]
        # Avro matches named types by unqualified name, or by the reader's aliases.
        accepted = {short_name(rname)} | {short_name(a) for a in r.get("aliases", ())}
        if short_name(wname) not in accepted:
            return [f"{path}: {self.wl} names the type {wname} where {self.rl} expects {rname}"]
        pair = (rname, wname)
        if pair in self._visiting:
            return []
        self._visiting.add(pair)
        try:
            if r["type"] == "enum":
                missing = [s for s in w["symbols"] if s not in r["symbols"]]
                if missing and "default" not in r:
                    return [
                        f"{path}: {self.wl} may write enum symbols {missing} of {wname} that "
                        f"{self.rl} does not know, and {self.rl}'s enum has no default"
                    ]
                return []
            if r["type"] == "fixed":
                if r["size"] != w["size"]:
                    return [f"{path}: fixed {wname} has size {w['size']} in {self.wl} but {r['size']} in {self.rl}"]
                return []
            return self._record(r, w, path)
        finally:
            self._visiting.discard(pair)

    def _record(self, r: dict[str, Any], w: dict[str, Any], path: str) -> list[str]:
        writer_fields = {f["name"]: f for f in w["fields"]}
        out: list[str] = []
        for field in r["fields"]:
            name = field["name"]
            here = f"{path}.{name}"
            match = writer_fields.get(name) or next(
                (writer_fields[a] for a in field.get("aliases", ()) if a in writer_fields), None
            )
            if match is not None:
                out += self.check(field["type"], match["type"], here)
            elif "default" not in field:
                out.append(
                    f"{here}: field '{name}' is in {self.rl} without a default and is missing "
                    f"from {self.wl}, so records written with {self.wl} cannot be read "
                    f"(give the field a default, or keep it in both)"
                )
        return out


def reader_problems(
    reader: ParsedSchema,
    writer: ParsedSchema,
    reader_label: str = "the reader's schema",
    writer_label: str = "the writer's schema",
) -> list[str]:
    """Why ``reader`` cannot decode data written with ``writer``; empty when it can."""
    root = reader.tree["name"] if isinstance(reader.tree, dict) and "name" in reader.tree else _kind(reader.tree)
    return _Resolver(reader, writer, reader_label, writer_label).check(reader.tree, writer.tree, root)


def check(
    mode: Compatibility | str,
    new: ParsedSchema,
    existing: Sequence[tuple[int, ParsedSchema]],
) -> list[str]:
    """Problems registering ``new`` after ``existing`` (version, schema) pairs, oldest first."""
    mode = Compatibility(mode)
    if mode is Compatibility.NONE or not existing:
        return []
    targets = existing if mode.transitive else existing[-1:]
    out: list[str] = []
    for version, old in targets:
        label = f"version {version}"
        if mode.backward:
            out += [
                f"{mode.value}: {p}"
                for p in reader_problems(new, old, "the new schema", label)
            ]
        if mode.forward:
            out += [
                f"{mode.value}: {p}"
                for p in reader_problems(old, new, label, "the new schema")
            ]
    return out
