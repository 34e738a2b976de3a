"""A Faust app's Prometheus metrics, read from its monitor when scraped.

Faust's :class:`~faust.sensors.Monitor` already counts what the app does
(messages in, by topic; events through the agents; sends; commit and send
latency; rebalances). :class:`FaustMetrics` turns those into Prometheus
families labelled by the app's id, and the app's partitions into a gauge, so a
revoked partition's series disappears with the assignment.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


class FaustMetrics(Collector):
    def __init__(self, app: Any) -> None:
        self.app = app
        self.app_id = str(app.conf.id)

    def collect(self) -> Iterable[Metric]:
        m = self.app.monitor
        a = [self.app_id]
        received = CounterMetricFamily("cosmic_faust_messages_received",
                                       "Messages the app's consumer received, by topic.",
                                       labels=["app", "topic"])
        for topic, n in sorted(dict(m.messages_received_by_topic).items()):
            received.add_metric([*a, str(topic)], n)
        events = CounterMetricFamily("cosmic_faust_events", "Events processed by the agents.",
                                     labels=["app"])
        events.add_metric(a, m.events_total)
        sent = CounterMetricFamily("cosmic_faust_messages_sent", "Messages the app produced.",
                                   labels=["app"])
        sent.add_metric(a, m.messages_sent)
        rebalances = CounterMetricFamily("cosmic_faust_rebalances", "Rebalances the app went "
                                         "through.", labels=["app"])
        rebalances.add_metric(a, m.rebalances)
        active = GaugeMetricFamily("cosmic_faust_events_active", "Events being processed now.",
                                   labels=["app"])
        active.add_metric(a, m.events_active)
        runtime = GaugeMetricFamily("cosmic_faust_event_runtime_seconds",
                                    "Average time an agent took per event (recent events).",
                                    labels=["app"])
        runtime.add_metric(a, float(m.events_runtime_avg))
        commit = GaugeMetricFamily("cosmic_faust_commit_latency_seconds",
                                   "Latest offset-commit latency.", labels=["app"])
        commit.add_metric(a, float(m.commit_latency[-1]) if m.commit_latency else 0.0)
        partitions = GaugeMetricFamily("cosmic_faust_assigned_partitions",
                                       "Partitions assigned to the app, by topic.",
                                       labels=["app", "topic"])
        per_topic: dict[str, int] = {}
        for tp in self._assignment():
            per_topic[tp.topic] = per_topic.get(tp.topic, 0) + 1
        for topic, n in sorted(per_topic.items()):
            partitions.add_metric([*a, topic], n)
        return [received, events, sent, rebalances, active, runtime, commit, partitions]

    def _assignment(self) -> set[Any]:
        consumer = getattr(self.app, "_consumer", None)  # never built by a scrape
        if consumer is None:
            return set()
        try:
            return set(consumer.assignment())
        except Exception:  # noqa: BLE001 - not started yet, or stopping: nothing assigned
            return set()
