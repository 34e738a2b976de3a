"""The gateway's Prometheus metrics (exposed through :mod:`cosmic.metrics`).

The faces and the core call a few hooks (:meth:`GatewayMetrics.opened`,
:meth:`~GatewayMetrics.closed`, :meth:`~GatewayMetrics.stream`,
:meth:`~GatewayMetrics.sent`); what the core already knows (subscriptions,
worlds) is read when scraped. No label carries a world, player or session:
protocols are the only label, a fixed set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cosmic.timeutil import now_ms

PROTOCOLS = ("grpc", "websocket")
# From the worker's tick timestamp to the frame handed to the face: tens of ms when
# all is well, seconds when the deltas reader or a client falls behind.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class GatewayMetrics(Collector):
    def __init__(self, subscriptions: Callable[[], int], worlds: Callable[[], int]) -> None:
        self._subscriptions = subscriptions
        self._worlds = worlds
        self.connections = Gauge("cosmic_gateway_connections",
                                 "Open client connections, by protocol (a gRPC connection is "
                                 "a Subscribe stream).", ["protocol"], registry=None)
        self.frames = Counter("cosmic_gateway_frames_sent", "Frames handed to clients.",
                              registry=None)
        self.bytes = Counter("cosmic_gateway_sent_bytes",
                             "Bytes of frames handed to clients (serialized protobuf).",
                             registry=None)
        self.deferrals = Counter("cosmic_gateway_budget_deferrals",
                                 "Frames that left body updates for later to stay within the "
                                 "client's byte budget.", registry=None)
        self.deferred_updates = Counter("cosmic_gateway_deferred_updates",
                                        "Body updates left for a later frame by the budget.",
                                        registry=None)
        self.latency = Histogram("cosmic_gateway_tick_to_send_seconds",
                                 "From a tick's production in the worker to its frame being "
                                 "handed to a client.", registry=None, buckets=LATENCY_BUCKETS)
        self.requests = Counter("cosmic_gateway_requests",
                                "Requests the guard decided, by face, action and outcome "
                                "(ADMITTED, UNAUTHENTICATED, DENIED, RATE_LIMITED, REJECTED, "
                                "FAILED).", ["face", "action", "outcome"], registry=None)
        for protocol in PROTOCOLS:
            self.connections.labels(protocol)
        self._decided: dict[tuple[str, str, str], Any] = {}

    def decided(self, face: str, action: str, outcome: str) -> None:
        # Once per request: the labelled child is looked up once per label set (``labels``
        # takes a lock and builds a tuple each call).
        child = self._decided.get((face, action, outcome))
        if child is None:
            child = self._decided[(face, action, outcome)] = self.requests.labels(
                face, action, outcome)
        child.inc()

    def opened(self, protocol: str) -> None:
        self.connections.labels(protocol).inc()

    def closed(self, protocol: str) -> None:
        self.connections.labels(protocol).dec()

    async def stream(self, protocol: str, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """``frames``, counted as one open connection of ``protocol`` while it runs."""
        self.opened(protocol)
        try:
            async for frame in frames:
                yield frame
        finally:
            self.closed(protocol)

    def sent(self, size: int, produced_ms: int, deferred: int) -> None:
        self.frames.inc()
        self.bytes.inc(size)
        if deferred > 0:
            self.deferrals.inc()
            self.deferred_updates.inc(deferred)
        self.latency.observe(max(0, now_ms() - produced_ms) / 1000)

    def collect(self) -> Iterable[Metric]:
        subs = GaugeMetricFamily("cosmic_gateway_subscriptions",
                                 "Subscriptions sending frames (one per watching player).",
                                 value=self._subscriptions())
        worlds = GaugeMetricFamily("cosmic_gateway_worlds", "Worlds the gateway follows.",
                                   value=self._worlds())
        out: list[Metric] = [subs, worlds]
        for metric in (self.connections, self.frames, self.bytes, self.deferrals,
                       self.deferred_updates, self.latency, self.requests):
            out.extend(metric.collect())
        return out
