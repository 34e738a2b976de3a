"""The fast OTLP encoder writes what the SDK's encoder writes, for the spans we make and
for those the fast path hands back to the SDK (events, links, sequences)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.trace import Link, Status, StatusCode

from cosmic import otlp, tracing


def parsed(data: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    request.ParseFromString(data)
    return request


def spans_of_every_shape() -> list[Any]:
    traces = tracing.build("unit", "memory")
    assert traces.exporter is not None
    a, b = traces.provider.get_tracer("a"), traces.provider.get_tracer("b", "1.2")
    with a.start_as_current_span("root", kind=tracing.SERVER,
                                 attributes={"s": "x", "t": True, "f": False, "i": 7,
                                             "neg": -3, "d": 0.5, "empty": ""}):
        send = b.start_span("send", kind=tracing.PRODUCER,
                            attributes=tracing.messaging("send", "topic", **{"p": "0"}))
        headers = tracing.inject(send)
        send.set_attribute(tracing.MESSAGING_OFFSET, 2**40)
        tracing.failed(send, "the broker said no")
        send.end()
    remote = tracing.extract(headers)
    a.start_span("process", remote, tracing.CONSUMER, {"seq": [1, 2], "big": 2**62}).end()
    with a.start_as_current_span("evented") as span:
        span.add_event("e", {"k": "v"})
    a.start_span("linked", links=[Link(send.get_span_context(), {"l": 1})]).end()
    ok = a.start_span("ok")
    ok.set_status(Status(StatusCode.OK))
    ok.end()
    spans = list(traces.exporter.get_finished_spans())
    traces.shutdown()
    return spans


def test_the_fast_encoding_parses_to_the_sdk_encoding():
    spans = spans_of_every_shape()
    assert len(spans) == 6
    expected = encode_spans(spans)
    assert parsed(otlp.encode(spans)) == expected
    # The caches warm: a second batch from the same encoder is still the same request.
    encoder = otlp._Encoder()
    assert parsed(encoder.request(spans)) == expected
    assert parsed(encoder.request(spans[::-1])) == encode_spans(spans[::-1])
    assert otlp.encode([]) == encode_spans([]).SerializeToString() == b""


def test_the_exporter_posts_the_batch_to_an_otlp_endpoint():
    got: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        traces = tracing.build("unit", "otlp", f"http://127.0.0.1:{server.server_port}/v1/traces")
        tracer = traces.provider.get_tracer("t")
        with tracer.start_as_current_span("one"):
            trace.get_current_span().set_attribute("k", "v")
        traces.shutdown()
    finally:
        server.shutdown()
        server.server_close()
    (request,) = [parsed(g) for g in got]
    (span,) = request.resource_spans[0].scope_spans[0].spans
    assert span.name == "one" and span.attributes[0].key == "k"
    assert span.attributes[0].value.string_value == "v"
    service = {kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes}
    assert service["service.name"] == "cosmic-unit"
