"""A specialised Avro binary encoder, compiled once per schema into nested closures.

Why: fastavro writes through a growing ``BytesIO`` and copies the result out,
which for columnar records (hundreds of kB of ``bytes`` fields) costs more
than the encoding itself. Here each record becomes a list of byte strings
joined once, so a 10,000-body StateDelta is copied exactly once; small
records gain from skipping fastavro's per-call option handling.

Scope: the encoder covers the types our contracts use (primitives, records,
enums, fixed, arrays, maps, unions with fastavro's tuple notation for records,
``timestamp-millis`` and ``uuid``). It is strict on purpose: any value it is
not sure to encode exactly as fastavro would (a numpy scalar where an int is
expected, a naive datetime, a missing field that has a default) raises
:class:`Unsupported` or a ``TypeError``/``ValueError``, and the serde then
falls back to fastavro for that record, which either encodes it or raises the
precise error. Its output is byte-identical to fastavro's, which a property
test checks for every shipped schema.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Parts = list[bytes]
Encoder = Callable[[Any, Parts], None]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SMALL = [bytes([i]) for i in range(128)]
_MIN_LONG, _MAX_LONG = -(2**63), 2**63 - 1
_MIN_INT, _MAX_INT = -(2**31), 2**31 - 1
_pack_double = struct.Struct("<d").pack
_pack_float = struct.Struct("<f").pack


class Unsupported(TypeError):
    """This schema or value is outside what the fast encoder guarantees; use fastavro.

    An internal signal: the serde catches it and never lets it out.
    """


def _varint(n: int) -> bytes:
    """Unsigned LEB128 of a non-negative int (the zig-zag is done by the caller)."""
    if n < 0x80:
        return _SMALL[n]
    if n < 0x4000:  # two bytes: lengths of most strings and bytes fields
        return bytes((n & 0x7F | 0x80, n >> 7))
    digits = []
    while n >= 0x80:
        digits.append(n & 0x7F | 0x80)
        n >>= 7
    digits.append(n)
    return bytes(digits)


def _zigzag(n: int) -> bytes:
    return _varint((n << 1) ^ (n >> 63))


def _long(value: Any, out: Parts) -> None:
    if type(value) is not int:  # bool, numpy ints, floats: leave them to fastavro
        raise Unsupported
    if not _MIN_LONG <= value <= _MAX_LONG:
        raise Unsupported
    out.append(_varint((value << 1) ^ (value >> 63)))


def _int(value: Any, out: Parts) -> None:
    if type(value) is not int or not _MIN_INT <= value <= _MAX_INT:
        raise Unsupported
    out.append(_varint((value << 1) ^ (value >> 63)))


def _double(value: Any, out: Parts) -> None:
    if type(value) is not float and type(value) is not int:
        raise Unsupported
    out.append(_pack_double(value))


def _float(value: Any, out: Parts) -> None:
    if type(value) is not float and type(value) is not int:
        raise Unsupported
    out.append(_pack_float(value))


def _boolean(value: Any, out: Parts) -> None:
    if type(value) is not bool:
        raise Unsupported
    out.append(b"\x01" if value else b"\x00")


def _null(value: Any, out: Parts) -> None:
    if value is not None:
        raise Unsupported


def _bytes(value: Any, out: Parts) -> None:
    if type(value) is not bytes:
        raise Unsupported
    out.append(_varint(len(value) << 1))
    out.append(value)


def _string(value: Any, out: Parts) -> None:
    if type(value) is not str:
        raise Unsupported
    data = value.encode()
    out.append(_varint(len(data) << 1))
    out.append(data)


def _uuid(value: Any, out: Parts) -> None:
    _string(str(value) if isinstance(value, uuid.UUID) else value, out)


def _timestamp_millis(value: Any, out: Parts) -> None:
    if type(value) is datetime:
        if value.tzinfo is None:
            raise Unsupported  # fastavro reads naive datetimes as local time
        delta = value - _EPOCH
        ms = (delta.days * 86400 + delta.seconds) * 1000 + delta.microseconds // 1000
        if not _MIN_LONG <= ms <= _MAX_LONG:
            raise Unsupported
        out.append(_varint((ms << 1) ^ (ms >> 63)))
        return
    _long(value, out)


_PRIMITIVES: dict[str, Encoder] = {
    "null": _null, "boolean": _boolean, "int": _int, "long": _long,
    "float": _float, "double": _double, "bytes": _bytes, "string": _string,
}
_LOGICAL: dict[tuple[str, str], Encoder] = {
    ("long", "timestamp-millis"): _timestamp_millis,
    ("string", "uuid"): _uuid,
}


class _Compiler:
    def __init__(self, named: dict[str, Any]) -> None:
        self.named = named
        self.compiled: dict[str, Encoder] = {}

    def node(self, schema: Any) -> Encoder:
        if isinstance(schema, list):
            return self.union(schema)
        if isinstance(schema, str):
            if schema in _PRIMITIVES:
                return _PRIMITIVES[schema]
            return self.named_ref(schema)
        kind = schema["type"]
        logical = schema.get("logicalType")
        if logical is not None:
            encoder = _LOGICAL.get((kind, logical))
            if encoder is None:
                raise Unsupported(f"logical type {logical} on {kind}")
            return encoder
        if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind in self.named):
            return self.node(kind)
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        if kind == "record" or kind == "error":
            return self.record(schema)
        if kind == "enum":
            return self.enum(schema)
        if kind == "fixed":
            return self.fixed(schema)
        if kind == "array":
            return self.array(schema)
        if kind == "map":
            return self.map(schema)
        raise Unsupported(f"type {kind}")

    def named_ref(self, name: str) -> Encoder:
        if name not in self.compiled:
            # Bind late, so recursive types compile: the table is filled below.
            self.compiled[name] = lambda v, out: self.compiled[name](v, out)
            self.compiled[name] = self.node(self.named[name])
        return self.compiled[name]

    def record(self, schema: dict[str, Any]) -> Encoder:
        fields = tuple((f["name"], self.node(f["type"])) for f in schema["fields"])

        def encode(value: Any, out: Parts) -> None:
            for name, enc in fields:
                enc(value[name], out)  # KeyError (a missing field) falls back to fastavro

        if "name" in schema:
            self.compiled.setdefault(schema["name"], encode)
        return encode

    def enum(self, schema: dict[str, Any]) -> Encoder:
        codes = {s: _zigzag(i) for i, s in enumerate(schema["symbols"])}

        def encode(value: Any, out: Parts) -> None:
            out.append(codes[value])

        self.compiled.setdefault(schema["name"], encode)
        return encode

    def fixed(self, schema: dict[str, Any]) -> Encoder:
        size = schema["size"]

        def encode(value: Any, out: Parts) -> None:
            if type(value) is not bytes or len(value) != size:
                raise Unsupported
            out.append(value)

        self.compiled.setdefault(schema["name"], encode)
        return encode

    def array(self, schema: dict[str, Any]) -> Encoder:
        item = self.node(schema["items"])

        def encode(value: Any, out: Parts) -> None:
            if type(value) is not list:
                raise Unsupported
            if value:
                out.append(_zigzag(len(value)))
                for v in value:
                    item(v, out)
            out.append(b"\x00")

        return encode

    def map(self, schema: dict[str, Any]) -> Encoder:
        item = self.node(schema["values"])

        def encode(value: Any, out: Parts) -> None:
            if type(value) is not dict:
                raise Unsupported
            if value:
                out.append(_zigzag(len(value)))
                for k, v in value.items():
                    _string(k, out)
                    item(v, out)
            out.append(b"\x00")

        return encode

    def union(self, branches: list[Any]) -> Encoder:
        encoders = [self.node(b) for b in branches]
        names = {}
        for i, b in enumerate(branches):
            target = self.named.get(b) if isinstance(b, str) else b
            if isinstance(target, dict) and target.get("type") == "record":
                names[target["name"]] = i
        null_index = branches.index("null") if "null" in branches else None
        others = [i for i, b in enumerate(branches) if b != "null"]
        if len(others) == 1:
            # ["null", X]: the common optional field.
            only = others[0]
            only_code, only_enc = _zigzag(only), encoders[only]

            def optional(value: Any, out: Parts) -> None:
                if value is None and null_index is not None:
                    out.append(_zigzag(null_index))
                    return
                if isinstance(value, tuple):
                    raise Unsupported
                out.append(only_code)
                only_enc(value, out)

            return optional
        if others and len(names) == len(others):
            # Unions of records: the writer names the branch with fastavro's tuple notation.
            codes = {n: (_zigzag(i), encoders[i]) for n, i in names.items()}

            def tagged(value: Any, out: Parts) -> None:
                if value is None and null_index is not None:
                    out.append(_zigzag(null_index))
                    return
                if type(value) is not tuple:
                    raise Unsupported  # untagged dicts: fastavro guesses the branch
                code, enc = codes[value[0]]
                out.append(code)
                enc(value[1], out)

            return tagged
        raise Unsupported("union of several non-record types")


def compile_writer(schema: Any, named: dict[str, Any]) -> Callable[[Any, Parts], bytes] | None:
    """An encoder ``(record, head) -> head + Avro bytes`` for ``schema``; None when not covered.

    ``schema`` and ``named`` are fastavro's parsed tree and its named types.
    ``head`` is a list of byte strings to start the output with (the wire-format
    header), so the whole payload is joined in one copy.
    """
    try:
        encode = _Compiler(named).node(schema)
    except Unsupported:
        return None

    def write(record: Any, head: Parts) -> bytes:
        encode(record, head)
        return b"".join(head)

    return write
