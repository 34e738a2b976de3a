"""Counters every connector keeps, shown by ``progress()`` and as Prometheus text.

Plain integers updated by the connector's one loop thread; readers on other
threads see a consistent-enough snapshot for monitoring, so no lock is taken.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_COUNTERS = (
    ("rows_written", "Rows (or archived records) the store accepted."),
    ("batches", "Batches written to the store and committed."),
    ("retries", "Store writes retried after the store failed."),
    ("dead_letters", "Records sent to the dead-letter topic."),
    ("skipped", "Records skipped because the store already held them."),
    ("commits", "Offset commits to Kafka."),
)


@dataclass
class ConnectorMetrics:
    connector: str
    rows_written: int = 0
    batches: int = 0
    retries: int = 0
    dead_letters: int = 0
    skipped: int = 0
    commits: int = 0
    # (topic, partition) -> records between the consumer's position and the high watermark
    lag: dict[tuple[str, int], int] = field(default_factory=dict)

    @property
    def total_lag(self) -> int:
        return sum(self.lag.values())

    def summary(self) -> str:
        return (f"{self.rows_written} rows in {self.batches} batches, lag {self.total_lag}, "
                f"{self.retries} retries, {self.dead_letters} dead letters")

    def prometheus_text(self) -> str:
        """The counters in the Prometheus text exposition format (version 0.0.4)."""
        label = f'connector="{_escape(self.connector)}"'
        lines: list[str] = []
        for name, doc in _COUNTERS:
            metric = f"cosmic_connector_{name}_total"
            lines += [f"# HELP {metric} {doc}", f"# TYPE {metric} counter",
                      f"{metric}{{{label}}} {getattr(self, name)}"]
        lines += ["# HELP cosmic_connector_lag Records not yet consumed, per partition.",
                  "# TYPE cosmic_connector_lag gauge"]
        for (topic, partition), lag in sorted(self.lag.items()):
            lines.append(f'cosmic_connector_lag{{{label},topic="{_escape(topic)}",'
                         f'partition="{partition}"}} {lag}')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsServer:
    """``GET /metrics`` on loopback: the Prometheus text of the given connectors."""

    def __init__(self, texts: Callable[[], str], port: int = 0, host: str = "127.0.0.1") -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = texts().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None  # scrapes every few seconds would flood the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="connector-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
