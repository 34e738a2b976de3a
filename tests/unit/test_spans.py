"""The light spans components record are what the SDK's own would have exported."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from cosmic import tracing
from cosmic.spans import LightSpan


def test_a_light_span_exports_as_the_sdks_does(memory):
    light = tracing.tracer("unit")
    sdk = memory.provider.get_tracer("unit")
    spans = []
    for tracer in (light, sdk):
        assert tracer is not None
        with tracer.start_as_current_span("root", kind=SpanKind.SERVER, attributes={"a": "x"}):
            trace.get_current_span().set_attributes({"b": 2})
            child = tracer.start_span("send", kind=SpanKind.PRODUCER, start_time=5,
                                      attributes=tracing.messaging("send", "t", p=None))
            headers = tracing.inject(child)
            child.set_attribute("offset", 7)
            child.end(end_time=9)
            child.set_attribute("late", 1)  # after its end: not recorded
            child.end()  # a second end exports nothing
        remote = tracer.start_span("process", tracing.extract(headers), SpanKind.CONSUMER)
        remote.end()
        got = memory.exporter.get_finished_spans()
        memory.exporter.clear()
        spans.append(got)
    ours, theirs = spans
    assert isinstance(tracing.tracer("unit").start_span("x"), LightSpan)  # type: ignore[union-attr]
    assert [(s.name, s.kind, dict(s.attributes or {}), s.status.status_code) for s in ours] == [
        (s.name, s.kind, dict(s.attributes or {}), s.status.status_code) for s in theirs]
    send, root, process = ours
    assert (send.start_time, send.end_time) == (5, 9)
    assert send.parent is not None and send.parent.span_id == root.context.span_id
    assert root.parent is None and root.context.trace_id == process.context.trace_id
    assert process.parent is not None and process.parent.is_remote
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_flags.sampled and root.resource is memory.provider.resource
    assert ours[0].instrumentation_scope == theirs[0].instrumentation_scope


def test_an_exception_is_an_error_with_its_event_and_sampling_is_the_providers():
    traces = tracing.install(tracing.build("unit", "memory", sample_ratio=0.0))
    try:
        tracer = tracing.tracer("unit")
        assert tracer is not None
        assert not tracer.start_span("dropped").is_recording()  # a root the ratio refuses
        sampled = trace.NonRecordingSpan(trace.SpanContext(  # sampled by the sender
            0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(1)))
        # A sampled parent's child is recorded, whatever the ratio (ParentBased).
        child = tracer.start_span("child", trace.set_span_in_context(sampled))
        assert child.is_recording()
        child.end()
        with pytest.raises(ValueError), tracer.start_as_current_span("fails"):
            raise ValueError("bad input")
        assert [s.name for s in traces.exporter.get_finished_spans()] == ["child"]  # type: ignore[union-attr]
        ok = tracer.start_span("ok", trace.set_span_in_context(sampled))
        ok.set_status(StatusCode.OK)
        ok.set_status(StatusCode.ERROR, "too late")  # OK is final
        ok.end()
        with pytest.raises(ValueError), tracer.start_as_current_span(
                "fails", trace.set_span_in_context(sampled)):
            raise ValueError("bad input")
        _, okay, failed = traces.exporter.get_finished_spans()  # type: ignore[union-attr]
        assert okay.status.status_code is StatusCode.OK
        assert failed.status.status_code is StatusCode.ERROR
        assert failed.status.description == "ValueError: bad input"
        (event,) = failed.events
        assert event.name == "exception"
        assert (event.attributes or {})["exception.message"] == "bad input"
    finally:
        traces.shutdown()
