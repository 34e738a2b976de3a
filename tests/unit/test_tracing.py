"""Trace contexts in Kafka headers, tracing off by default, trace ids in JSON log lines."""

from __future__ import annotations

import logging

import orjson
from opentelemetry import trace

from cosmic import tracing
from cosmic.logs import JsonFormatter
from cosmic.settings import Settings


def test_tracing_is_off_unless_a_setting_turns_it_on(tmp_path):
    settings = Settings(state_dir=tmp_path)
    assert settings.tracing.exporter == "none"
    assert tracing.configure(settings, "physics") is None
    assert tracing.tracer("streams.worlds.worker") is None


def test_a_context_survives_the_headers_and_a_delta_carries_one_per_command(memory):
    tracer = tracing.tracer("unit")
    assert tracer is not None
    sent = [tracer.start_span(f"send {i}") for i in range(3)]
    headers: tracing.Headers = [("cosmic.other", b"x")]
    for span in sent:
        tracing.inject(span, headers)
    found = tracing.extract_all(headers)
    assert [trace.get_current_span(c).get_span_context().span_id for c in found] == [
        s.get_span_context().span_id for s in sent]
    # A child made under an extracted context is in the sender's trace, under the sender.
    child = tracer.start_span("process", tracing.extract(headers))
    assert child.get_span_context().trace_id == sent[0].get_span_context().trace_id
    child.end()
    for span in sent:
        span.end()
    (recorded,) = [s for s in memory.exporter.get_finished_spans() if s.name == "process"]
    assert recorded.parent is not None
    assert recorded.parent.span_id == sent[0].get_span_context().span_id


def test_a_tracestate_stays_with_its_traceparent_and_junk_is_skipped():
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    headers = [("traceparent", b"not a context"), ("traceparent", parent.encode()),
               ("tracestate", b"vendor=1"), ("traceparent", "00-" + "0" * 32 + "-" + "1" * 16 + "-01")]
    (ctx,) = tracing.extract_all(headers)
    span_context = trace.get_current_span(ctx).get_span_context()
    assert format(span_context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert span_context.trace_state.get("vendor") == "1" and span_context.is_remote
    assert tracing.extract(None) is None and tracing.extract([]) is None
    assert tracing.extract({"traceparent": parent}) is not None  # a dict of headers too


def test_a_json_line_carries_the_current_trace(memory):
    formatter = JsonFormatter("gateway")
    record = logging.LogRecord("streams.gateway", logging.INFO, __file__, 1, "admitted", (), None)
    assert "trace_id" not in orjson.loads(formatter.format(record))
    tracer = tracing.tracer("unit")
    assert tracer is not None
    with tracer.start_as_current_span("SubmitCommand") as span:
        line = orjson.loads(formatter.format(record))
    ids = span.get_span_context()
    assert (line["trace_id"], line["span_id"]) == (format(ids.trace_id, "032x"),
                                                   format(ids.span_id, "016x"))
    record.trace_id = "given"  # a call that names its trace keeps it
    with tracer.start_as_current_span("other"):
        assert orjson.loads(formatter.format(record))["trace_id"] == "given"


def test_headers_are_what_the_w3c_propagator_writes_and_reads(memory):
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    w3c = TraceContextTextMapPropagator()
    spans = [NonRecordingSpan(SpanContext(0xABC, 0x12, False, TraceFlags(1))),
             NonRecordingSpan(SpanContext(2**128 - 1, 2**64 - 1, False, TraceFlags(0))),
             NonRecordingSpan(SpanContext(7, 9, False, TraceFlags(1),
                                          TraceState([("vendor", "x"), ("b", "2")])))]
    for span in spans:
        carrier: dict[str, str] = {}
        w3c.inject(carrier, trace.set_span_in_context(span))
        headers = tracing.inject(span)
        assert headers == [(k, v.encode()) for k, v in carrier.items()]
        ours = trace.get_current_span(tracing.extract(headers)).get_span_context()
        theirs = trace.get_current_span(w3c.extract(carrier)).get_span_context()
        assert ours == theirs and ours.is_remote and ours.trace_state == theirs.trace_state
    # Not a context: a zero id, upper-case hex, a version the fast path does not read.
    for bad in ("00-" + "0" * 32 + "-" + "1" * 16 + "-01", "00-" + "A" * 32 + "-" + "1" * 16 + "-01"):
        assert tracing.extract([("traceparent", bad.encode())]) is None
    later = "01-" + "a" * 32 + "-" + "1" * 16 + "-01"
    assert tracing.extract([("traceparent", later.encode())]) is not None  # the propagator's
    assert tracing.inject(NonRecordingSpan(SpanContext(0, 0, False))) == []
