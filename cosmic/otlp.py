"""Spans to OTLP protobuf bytes without building a message per field.

The SDK's OTLP encoder builds a protobuf object for every span, attribute and value
before serializing them: about 50 us of CPU a span here, on the process's one GIL
beside the gateway's event loop and the worker's ticks. This module writes the same
``ExportTraceServiceRequest`` wire bytes directly: the resource and scope are
encoded once (by the SDK's own encoders), and an attribute whose value is a string
or a bool (mostly the same few: ``messaging.system=kafka``, an operation, a topic)
is encoded once and then looked up. A span with events or links, or a value the
fast path does not write (sequences, mappings, bytes), is encoded by the SDK's
encoder and its bytes spliced in, so every span the SDK could export is exported.

``tests/unit/test_otlp.py`` parses what :func:`encode` writes and compares it with
the SDK's encoding of the same spans.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.common._internal import (
    _encode_instrumentation_scope,
    _encode_key_value,
    _encode_resource,
)
from opentelemetry.exporter.otlp.proto.common._internal.trace_encoder import (
    _SPAN_KIND_MAP,
    _encode_span,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult

log = logging.getLogger(__name__)

__all__ = ["FastOTLPSpanExporter", "encode"]

_HAS_IS_REMOTE, _IS_REMOTE = 0x100, 0x200  # SpanFlags
_CACHE_MAX = 4096  # encoded string/bool attributes kept (a bounded set in practice)
_pack_d = struct.Struct("<d").pack
_pack_q = struct.Struct("<Q").pack
_pack_i = struct.Struct("<I").pack
# The fixed-size fields, each written in one call: trace id and span id (big-endian, as
# OTLP's bytes), the parent's span id, start and end times (fixed64, little-endian).
_IDS = struct.Struct(">BBQQBBQ").pack
_PARENT = struct.Struct(">BBQ").pack
_TIMES = struct.Struct("<BQBQ").pack
_U64 = 0xFFFF_FFFF_FFFF_FFFF


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _len(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (``tag`` is its key byte, field numbers below 16)."""
    return bytes((tag,)) + _varint(len(payload)) + payload


def _text(tag: int, text: str) -> bytes:
    return _len(tag, text.encode())


# Field keys: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length, 5 fixed32).
_ANY_STR, _ANY_BOOL, _ANY_INT, _ANY_DOUBLE = 0x0A, 0x10, 0x18, 0x21
_KV_KEY, _KV_VALUE = 0x0A, 0x12
_SPAN_TRACE, _SPAN_ID, _SPAN_STATE, _SPAN_PARENT, _SPAN_NAME = 0x0A, 0x12, 0x1A, 0x22, 0x2A
_SPAN_KIND, _SPAN_START, _SPAN_END, _SPAN_ATTR, _SPAN_DROPPED_ATTRS = 0x30, 0x39, 0x41, 0x4A, 0x50
_SPAN_STATUS = b"\x7a"  # field 15, length
_SPAN_FLAGS = b"\x85\x01"  # field 16, fixed32
_STATUS_MESSAGE, _STATUS_CODE = 0x12, 0x18
_SCOPE_SCOPE, _SCOPE_SPANS, _SCOPE_SCHEMA = 0x0A, 0x12, 0x1A
_RES_RESOURCE, _RES_SCOPES, _RES_SCHEMA = 0x0A, 0x12, 0x1A
_REQ_RESOURCE_SPANS = 0x0A


# A span kind's field (every kind the SDK maps is non-zero: always written).
_KINDS = {kind: bytes((_SPAN_KIND, int(value))) for kind, value in _SPAN_KIND_MAP.items()}


class _Slow(Exception):
    """A value the fast path does not write: the SDK's encoder does."""


def _value(value: Any) -> bytes:
    """An ``AnyValue`` (the oneof field is written even when it holds its default)."""
    if isinstance(value, bool):
        return bytes((_ANY_BOOL, 1 if value else 0))
    if isinstance(value, str):
        return _text(_ANY_STR, value)
    if isinstance(value, int):
        return bytes((_ANY_INT,)) + _varint(value & 0xFFFF_FFFF_FFFF_FFFF)
    if isinstance(value, float):
        return bytes((_ANY_DOUBLE,)) + _pack_d(value)
    raise _Slow


class _Encoder:
    def __init__(self) -> None:
        self._attrs: dict[tuple[str, type, Any], bytes] = {}
        self._names: dict[str, bytes] = {}
        self._resources: dict[int, tuple[Any, bytes]] = {}
        self._scopes: dict[int, tuple[Any, bytes]] = {}

    def attribute(self, key: str, value: Any) -> bytes:
        """A span's attribute field (a ``KeyValue``); those of strings and bools are
        remembered (their type too: ``True == 1`` as a dict key)."""
        cacheable = isinstance(value, str | bool)
        if cacheable:
            hit = self._attrs.get((key, type(value), value))
            if hit is not None:
                return hit
        try:
            kv = _text(_KV_KEY, key) + _len(_KV_VALUE, _value(value))
        except _Slow:
            kv = _encode_key_value(key, value).SerializeToString()
        field = _len(_SPAN_ATTR, kv)
        if cacheable:
            self._remember(self._attrs, (key, type(value), value), field)
        return field

    def name(self, name: str) -> bytes:
        hit = self._names.get(name)
        if hit is None:
            hit = self._remember(self._names, name, _text(_SPAN_NAME, name))
        return hit

    @staticmethod
    def _remember(cache: dict[Any, bytes], key: Any, value: bytes) -> bytes:
        if len(cache) >= _CACHE_MAX:
            cache.clear()
        cache[key] = value
        return value

    def span(self, span: ReadableSpan) -> bytes:
        if span.events or span.links:
            return bytes(_encode_span(span).SerializeToString())
        ctx = span.get_span_context()
        assert ctx is not None
        out = [_IDS(_SPAN_TRACE, 16, ctx.trace_id >> 64, ctx.trace_id & _U64, _SPAN_ID, 8,
                    ctx.span_id)]
        if ctx.trace_state:
            out.append(_text(_SPAN_STATE, ",".join(f"{k}={v}" for k, v in ctx.trace_state.items())))
        parent = span.parent
        if parent is not None:
            out.append(_PARENT(_SPAN_PARENT, 8, parent.span_id))
        if span.name:
            out.append(self.name(span.name))
        out.append(_KINDS[span.kind])
        start, end = span.start_time, span.end_time
        if start and end:
            out.append(_TIMES(_SPAN_START, start, _SPAN_END, end))
        else:
            if start:
                out.append(bytes((_SPAN_START,)) + _pack_q(start))
            if end:
                out.append(bytes((_SPAN_END,)) + _pack_q(end))
        attrs = span.attributes
        if attrs:
            for key, value in attrs.items():
                try:
                    out.append(self.attribute(key, value))
                except Exception as exc:  # noqa: BLE001 - one bad value drops itself, as the SDK's
                    log.warning("span attribute %s not encoded: %s", key, exc)
        if span.dropped_attributes:
            out += [bytes((_SPAN_DROPPED_ATTRS,)), _varint(span.dropped_attributes)]
        status = span.status
        if status is not None:
            body = b""
            if status.description:
                body += _text(_STATUS_MESSAGE, status.description)
            if status.status_code.value:
                body += bytes((_STATUS_CODE, status.status_code.value))
            out += [_SPAN_STATUS, _varint(len(body)), body]
        flags = _HAS_IS_REMOTE | (_IS_REMOTE if parent is not None and parent.is_remote else 0)
        out += [_SPAN_FLAGS, _pack_i(flags)]
        return b"".join(out)

    def _once(self, cache: dict[int, tuple[Any, bytes]], thing: Any, encode: Any) -> bytes:
        hit = cache.get(id(thing))
        if hit is None or hit[0] is not thing:
            if len(cache) >= 64:
                cache.clear()
            hit = cache[id(thing)] = (thing, bytes(encode(thing).SerializeToString()))
        return hit[1]

    def request(self, spans: Sequence[ReadableSpan]) -> bytes:
        """An ``ExportTraceServiceRequest``: spans grouped by resource, then by scope."""
        grouped: dict[int, tuple[Any, dict[int, tuple[Any, list[bytes]]]]] = {}
        for span in spans:
            resource, scope = span.resource, span.instrumentation_scope or None
            by_scope = grouped.setdefault(id(resource), (resource, {}))[1]
            by_scope.setdefault(id(scope), (scope, []))[1].append(self.span(span))
        out = []
        for resource, by_scope in grouped.values():
            body = [_len(_RES_RESOURCE, self._once(self._resources, resource, _encode_resource))]
            for scope, encoded in by_scope.values():
                inner = [] if scope is None else [_len(_SCOPE_SCOPE, self._once(
                    self._scopes, scope, _encode_instrumentation_scope))]
                inner += [_len(_SCOPE_SPANS, s) for s in encoded]
                if scope is not None and scope.schema_url:
                    inner.append(_text(_SCOPE_SCHEMA, scope.schema_url))
                body.append(_len(_RES_SCOPES, b"".join(inner)))
            if resource.schema_url:
                body.append(_text(_RES_SCHEMA, resource.schema_url))
            out.append(_len(_REQ_RESOURCE_SPANS, b"".join(body)))
        return b"".join(out)


def encode(spans: Sequence[ReadableSpan], encoder: _Encoder | None = None) -> bytes:
    """The OTLP ``ExportTraceServiceRequest`` of ``spans``, serialized."""
    return (encoder or _Encoder()).request(spans)


class FastOTLPSpanExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP exporter, serializing with :func:`encode` (its transport,
    retries, compression and headers as they are). One batch processor thread calls
    it, so its caches need no lock."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._encoder = _Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("exporter already shut down: a batch of %d spans dropped", len(spans))
            return SpanExportResult.FAILURE
        try:
            data = self._encoder.request(spans)
        except Exception as exc:  # noqa: BLE001 - a batch that cannot be encoded is dropped
            log.error("a batch of %d spans not encoded: %s", len(spans), exc)
            return SpanExportResult.FAILURE
        if 0 < self._max_request_size < len(data):
            log.warning("a batch of %d spans dropped: %d bytes, over the %d-byte limit",
                        len(spans), len(data), self._max_request_size)
            return SpanExportResult.FAILURE
        result = self._client.export(data)
        return SpanExportResult.SUCCESS if result.success else SpanExportResult.FAILURE
