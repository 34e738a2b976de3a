"""Distributed tracing with OpenTelemetry: one trace per command, from the gateway and back.

A command's trace has a span per hop, each the child of the one before:

1. ``SubmitCommand`` (gateway, SERVER): the guard admits the command;
2. ``send cosmic.commands.v1`` (gateway, PRODUCER): it is appended; its W3C
   ``traceparent`` travels in the record's headers;
3. ``process cosmic.commands.v1`` (worker, CONSUMER): applied (or rejected) in a tick;
4. ``send cosmic.state.deltas.v1`` (worker, PRODUCER): the tick's delta, ended when its
   transaction commits (or ``send cosmic.commands.rejected.v1`` for a rejected command);
5. ``process cosmic.state.deltas.v1`` (gateway, CONSUMER): one per frame that carries the
   tick to a subscriber.

A tick applies many commands and its delta is one record, so the delta carries one
``traceparent`` header per traced command it applied (Kafka headers may repeat a
key), and the worker opens hop 4 under each command's hop 3. A span link would
have been one span per tick, but each command's trace would then end in the worker;
with a child per command every trace is connected, at a few microseconds per command.

Off by default (``settings.tracing.exporter = "none"``): no provider is built, every
hook sees ``tracer(...) is None`` and does nothing else. ``otlp`` exports in batches
to ``settings.tracing.endpoint`` (protobuf over HTTP; the compose file runs Jaeger);
``memory`` keeps finished spans in the process (tests, benchmarks).

Components take their tracer once, when they are built (:func:`tracer`), and keep it
in an attribute that a benchmark may swap. Only commands that come with a trace
context are traced downstream: the worker continues traces, it never begins one.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from cosmic.settings import Settings

if TYPE_CHECKING:  # the SDK is imported only when tracing is turned on
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

log = logging.getLogger(__name__)

__all__ = ["CONSUMER", "PRODUCER", "SERVER", "Headers", "Tracing", "configure", "current_ids",
           "extract", "extract_all", "failed", "inject", "install", "messaging", "tracer",
           "uninstall"]

PRODUCER, CONSUMER, SERVER = SpanKind.PRODUCER, SpanKind.CONSUMER, SpanKind.SERVER
Headers = list[tuple[str, bytes]]

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
_W3C = TraceContextTextMapPropagator()

# Attribute names of OpenTelemetry's messaging conventions, and the project's own
# (``cosmic.*``) where the conventions have none.
MESSAGING_SYSTEM = "messaging.system"
MESSAGING_OPERATION_TYPE = "messaging.operation.type"
MESSAGING_OPERATION_NAME = "messaging.operation.name"
MESSAGING_DESTINATION = "messaging.destination.name"
MESSAGING_PARTITION = "messaging.destination.partition.id"
MESSAGING_OFFSET = "messaging.kafka.offset"
WORLD = "cosmic.world.id"
TICK = "cosmic.tick"
COMMAND_ID = "cosmic.command.id"
COMMAND_TYPE = "cosmic.command.type"
OUTCOME = "cosmic.command.outcome"
REASON = "cosmic.command.reject_reason"
FACE = "cosmic.gateway.face"
FRAME_BYTES = "cosmic.frame.bytes"


@dataclass
class Tracing:
    """This process's tracer provider, and the in-memory exporter when that is the choice."""

    provider: TracerProvider
    exporter: InMemorySpanExporter | None = None

    def shutdown(self) -> None:
        """Export what is buffered and stop (idempotent)."""
        uninstall(self)
        self.provider.shutdown()


_INSTALLED: Tracing | None = None


def tracer(name: str) -> Tracer | None:
    """The tracer a component named ``name`` records with; None while tracing is off.
    Its spans are :mod:`cosmic.spans`' (the SDK's processors export them)."""
    if _INSTALLED is None:
        return None
    from cosmic.spans import LightTracer

    return LightTracer(_INSTALLED.provider.get_tracer(name))  # type: ignore[arg-type]


def install(tracing: Tracing) -> Tracing:
    """Make ``tracing`` the one components built from now on take their tracer from."""
    global _INSTALLED
    _INSTALLED = tracing
    return tracing


def uninstall(tracing: Tracing | None = None) -> None:
    """Components built from now on trace nothing (those built before keep their tracer)."""
    global _INSTALLED
    if tracing is None or _INSTALLED is tracing:
        _INSTALLED = None


def build(service: str, exporter: str, endpoint: str = "", sample_ratio: float = 1.0,
          processor: SpanProcessor | None = None) -> Tracing:
    """A provider for ``service`` with the chosen exporter (``otlp`` or ``memory``)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": f"cosmic-{service}",
                                  "service.namespace": "cosmic-garden"}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    memory: InMemorySpanExporter | None = None
    if processor is None:
        if exporter == "memory":
            memory = InMemorySpanExporter()
            processor = SimpleSpanProcessor(memory)
        elif exporter == "otlp":
            from cosmic.otlp import FastOTLPSpanExporter

            processor = BatchSpanProcessor(FastOTLPSpanExporter(endpoint=endpoint))
        else:
            raise ValueError(f"no span exporter {exporter!r} (otlp or memory)")
    provider.add_span_processor(processor)
    return Tracing(provider, memory)


def configure(settings: Settings, service: str) -> Tracing | None:
    """This process's tracing from ``settings.tracing`` (None: off). Every command's main
    calls it once, beside :func:`cosmic.logs.configure`; shut it down on the way out."""
    t = settings.tracing
    if t.exporter == "none":
        return None
    tracing = install(build(service, t.exporter, t.endpoint, t.sample_ratio))
    trace.set_tracer_provider(tracing.provider)  # for any library that traces by the API
    if t.exporter == "otlp":
        log.info("traces to %s", t.endpoint)
    return tracing


# Propagation in Kafka headers.

def inject(span: Span, into: Headers | None = None) -> Headers:
    """``span``'s W3C trace context appended to ``into`` as Kafka headers (written as the
    W3C propagator writes it, without building a context for it)."""
    out = [] if into is None else into
    ctx = span.get_span_context()
    if not ctx.is_valid:
        return out
    out.append((TRACEPARENT, b"00-%032x-%016x-%02x" % (ctx.trace_id, ctx.span_id,
                                                       ctx.trace_flags & 0xFF)))
    if ctx.trace_state:
        out.append((TRACESTATE, ctx.trace_state.to_header().encode()))
    return out


HeadersIn = Sequence[tuple[str, Any]] | Mapping[str, Any] | None


def extract(headers: HeadersIn) -> Context | None:
    """The trace context a record's headers carry (the first one), or None."""
    found = extract_all(headers)
    return found[0] if found else None


def extract_all(headers: HeadersIn) -> tuple[Context, ...]:
    """Every trace context in a record's headers, in order: a ``traceparent`` begins
    one, a ``tracestate`` right after it belongs to it. Malformed ones are skipped."""
    if not headers:
        return ()
    carriers: list[dict[str, str]] = []
    for key, value in (headers.items() if isinstance(headers, Mapping) else headers):
        if key == TRACEPARENT:
            carriers.append({TRACEPARENT: _text(value)})
        elif key == TRACESTATE and carriers:
            carriers[-1][TRACESTATE] = _text(value)
    out = []
    for carrier in carriers:
        ctx = _fast(carrier) or _W3C.extract(carrier)
        if trace.get_current_span(ctx).get_span_context().is_valid:
            out.append(ctx)
    return tuple(out)


_HEX = frozenset("0123456789abcdef")


def _fast(carrier: dict[str, str]) -> Context | None:
    """The context of a version-00 ``traceparent`` with no ``tracestate`` (what this
    project's producers write), parsed without the propagator's regular expression;
    None for anything else, which the propagator then reads."""
    value = carrier[TRACEPARENT]
    if (len(carrier) != 1 or len(value) != 55 or value[:3] != "00-" or value[35] != "-"
            or value[52] != "-" or not _HEX.issuperset(value[3:35] + value[36:52] + value[53:])):
        return None
    trace_id, span_id = int(value[3:35], 16), int(value[36:52], 16)
    if not trace_id or not span_id:
        return None
    span = trace.NonRecordingSpan(trace.SpanContext(
        trace_id, span_id, is_remote=True, trace_flags=trace.TraceFlags(int(value[53:], 16))))
    return trace.set_span_in_context(span)


def _text(value: Any) -> str:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else str(value or "")


def messaging(operation: str, destination: str, **extra: Any) -> dict[str, Any]:
    """A span's attributes for a Kafka ``operation`` (send, process) on ``destination``."""
    attrs: dict[str, Any] = {MESSAGING_SYSTEM: "kafka", MESSAGING_OPERATION_TYPE: operation,
                             MESSAGING_OPERATION_NAME: operation,
                             MESSAGING_DESTINATION: destination}
    attrs.update((k, v) for k, v in extra.items() if v is not None)
    return attrs


def failed(span: Span, why: str) -> None:
    span.set_status(Status(StatusCode.ERROR, why))


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the span current in this context, if any (logs)."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def end_all(spans: Iterable[Span], error: str | None = None) -> None:
    for span in spans:
        if error is not None:
            failed(span, error)
        span.end()
