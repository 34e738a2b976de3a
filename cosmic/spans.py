"""A tracer whose spans cost a third of the SDK's, exported by the SDK's processors.

The SDK's span takes a lock per attribute, validates and copies every value into
bounded containers and keeps a limits object, events list and link list per span:
about 50 us a span here, five spans a command, on the one GIL the gateway's loop
and the worker's ticks share. Ours hold what the project's spans hold (a name,
kind, parent, plain attributes, a status, rarely an event) and, when they end,
hand the processors the SDK's own :class:`~opentelemetry.sdk.trace.ReadableSpan`,
so sampling (the provider's sampler decides each span), ids (its id generator),
batching and export are the SDK's and exporters see no difference.

What is left out: span processors' ``on_start`` (the SDK's batch and simple
processors do nothing there), attribute count and length limits (our attributes
are a fixed, small set of scalars; ``None`` values are dropped as the SDK drops
them) and the SDK's own span-count metrics.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util import types
from opentelemetry.util._decorator import _agnosticcontextmanager

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import Tracer as SdkTracer

__all__ = ["LightSpan", "LightTracer"]

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_DEFAULT = TraceFlags(TraceFlags.DEFAULT)


def _add(into: dict[str, Any], attributes: Mapping[str, Any]) -> None:
    """``attributes`` but those that are None (checked in C first: they rarely are)."""
    if None in attributes.values():
        into.update({k: v for k, v in attributes.items() if v is not None})
    else:
        into.update(attributes)


class LightTracer(trace.Tracer):
    """Spans of ``sdk`` (an SDK tracer: its resource, scope, sampler, ids, processors)."""

    def __init__(self, sdk: SdkTracer) -> None:
        self.sdk = sdk
        self._resource = sdk.resource
        self._scope = getattr(sdk, "_instrumentation_scope", None)
        self._info = sdk.instrumentation_info
        self._sampler = sdk.sampler
        self._ids = sdk.id_generator
        self._processor = sdk.span_processor
        sampler = self._sampler
        self._follows = (isinstance(sampler, ParentBased)
                         and getattr(sampler, "_remote_parent_sampled", None) is ALWAYS_ON
                         and getattr(sampler, "_local_parent_sampled", None) is ALWAYS_ON)

    def start_span(self, name: str, context: Context | None = None,
                   kind: SpanKind = SpanKind.INTERNAL, attributes: types.Attributes = None,
                   links: Sequence[Link] | None = (), start_time: int | None = None,
                   record_exception: bool = True, set_status_on_exception: bool = True
                   ) -> trace.Span:
        parent: SpanContext | None = trace.get_current_span(context).get_span_context()
        if parent is None or not parent.is_valid:
            parent = None
            trace_id = self._ids.generate_trace_id()
        else:
            trace_id = parent.trace_id
        links = links or ()
        attrs: dict[str, Any] = {}
        trace_state: TraceState | None
        if parent is not None and self._follows and parent.trace_flags.sampled:
            # What ParentBased decides for a sampled parent when it delegates to
            # ALWAYS_ON (its default): sampled, the parent's trace state, no attributes.
            flags, trace_state = parent.trace_flags, parent.trace_state
        else:
            sampled = self._sampler.should_sample(context, trace_id, name, kind, attributes,
                                                  links)
            decision, trace_state = sampled.decision, sampled.trace_state
            random = (self._ids.is_trace_id_random() if parent is None
                      else parent.trace_flags.random_trace_id)
            flags = _SAMPLED if decision.is_sampled() else _DEFAULT
            if random:
                flags = TraceFlags(flags | TraceFlags.RANDOM_TRACE_ID)
            if not decision.is_recording():
                return NonRecordingSpan(SpanContext(
                    trace_id, self._ids.generate_span_id(), is_remote=False, trace_flags=flags,
                    trace_state=trace_state))
            if sampled.attributes:
                attrs.update(sampled.attributes)
        span_context = SpanContext(trace_id, self._ids.generate_span_id(), is_remote=False,
                                   trace_flags=flags, trace_state=trace_state)
        if attributes:
            _add(attrs, attributes)
        return LightSpan(self, name, span_context, parent, kind, attrs, list(links),
                         start_time if start_time is not None else time.time_ns())

    @_agnosticcontextmanager  # what the API's Tracer declares (async-safe)
    def start_as_current_span(self, name: str, context: Context | None = None,
                              kind: SpanKind = SpanKind.INTERNAL,
                              attributes: types.Attributes = None,
                              links: Sequence[Link] | None = (), start_time: int | None = None,
                              record_exception: bool = True,
                              set_status_on_exception: bool = True,
                              end_on_exit: bool = True) -> Iterator[trace.Span]:
        span = self.start_span(name, context, kind, attributes, links, start_time)
        with trace.use_span(span, end_on_exit=end_on_exit, record_exception=record_exception,
                            set_status_on_exception=set_status_on_exception) as current:
            yield current


class LightSpan(trace.Span):
    """A recording span; when it ends, the processors get its ``ReadableSpan``."""

    __slots__ = ("_attrs", "_context", "_end", "_events", "_kind", "_links", "_lock", "_name",
                 "_parent", "_start", "_status", "_tracer")

    def __init__(self, tracer: LightTracer, name: str, context: SpanContext,
                 parent: SpanContext | None, kind: SpanKind, attributes: dict[str, Any],
                 links: list[Link], start_time: int) -> None:
        self._tracer, self._name, self._context, self._parent = tracer, name, context, parent
        self._kind, self._attrs, self._links, self._start = kind, attributes, links, start_time
        self._events: list[Any] = []
        self._status = Status(StatusCode.UNSET)
        self._end: int | None = None
        self._lock = threading.Lock()  # end() may race a set_* from another thread

    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return self._end is None

    def set_attribute(self, key: str, value: types.AttributeValue) -> None:
        if self._end is None and value is not None:
            self._attrs[key] = value

    def set_attributes(self, attributes: Mapping[str, types.AttributeValue]) -> None:
        if self._end is None:
            _add(self._attrs, attributes)

    def add_event(self, name: str, attributes: types.Attributes = None,
                  timestamp: int | None = None) -> None:
        if self._end is None:
            self._events.append(Event(name, dict(attributes or {}), timestamp or time.time_ns()))

    def add_link(self, context: SpanContext, attributes: types.Attributes = None) -> None:
        if self._end is None and context.is_valid:
            self._links.append(Link(context, attributes))

    def update_name(self, name: str) -> None:
        if self._end is None:
            self._name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        # As the SDK: OK is final, UNSET changes nothing, a description only with ERROR.
        if self._end is not None or self._status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            new = status
        else:
            new = Status(status, description if status is StatusCode.ERROR else None)
        if new.status_code is not StatusCode.UNSET:
            self._status = new

    def record_exception(self, exception: BaseException, attributes: types.Attributes = None,
                         timestamp: int | None = None, escaped: bool = False) -> None:
        attrs: dict[str, Any] = {
            "exception.type": type(exception).__qualname__,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped)}
        attrs.update(attributes or {})
        self.add_event("exception", attrs, timestamp)

    def end(self, end_time: int | None = None) -> None:
        with self._lock:
            if self._end is not None:
                return
            self._end = end_time if end_time is not None else time.time_ns()
        t = self._tracer
        t._processor.on_end(ReadableSpan(
            self._name, self._context, self._parent, t._resource, self._attrs,
            tuple(self._events), tuple(self._links), self._kind, t._info, self._status,
            self._start, self._end, t._scope))
