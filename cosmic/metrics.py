"""Prometheus metrics: one ``/metrics`` per process, fed by every service in it.

A process (``cosmic up``, a Faust worker, the registry, the lag exporter) may host
several services. Each keeps its own metric objects, built with
``registry=None`` so that two services of one kind in one process (two workers in
a test) never collide, and adds itself to the process's :class:`MetricsHub` while
it runs. The hub merges same-named families at scrape time; each service tells
its series apart by a bounded label of its own (``worker``, ``connector``, ``app``).

:func:`serve` starts the process's exposition once (``settings.metrics.port``; 0
picks a free port) and writes a file_sd target for the local Prometheus
(``<state_dir>/prometheus/targets/<job>-<pid>.json``), removed again on
:meth:`MetricsEndpoint.close`. Targets of processes that died without closing
are removed by the next :func:`serve` in the same folder.

Naming follows Prometheus's conventions: a ``cosmic_<subsystem>_`` prefix, base
units (``_seconds``, ``_bytes``), ``_total`` on counters, and labels with a
bounded set of values (partitions, reasons, protocols; never world or player ids).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from cosmic.settings import Settings

log = logging.getLogger(__name__)

__all__ = ["CONTENT_TYPE_LATEST", "MetricsEndpoint", "MetricsHub", "exposition", "hub",
           "process_registry", "publish_target", "serve", "targets_dir"]


class MetricsHub(Collector):
    """The collectors of the services running in this process, merged by family name."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: list[Collector] = []

    def add(self, source: Collector) -> None:
        with self._lock:
            if source not in self._sources:
                self._sources.append(source)

    def discard(self, source: Collector) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._sources.remove(source)

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            sources = list(self._sources)
        merged: dict[str, Metric] = {}
        for source in sources:
            for family in source.collect():
                into = merged.get(family.name)
                if into is None:
                    into = merged[family.name] = Metric(family.name, family.documentation,
                                                        family.type, family.unit)
                into.samples.extend(family.samples)
        return list(merged.values())


@lru_cache(maxsize=1)
def hub() -> MetricsHub:
    """This process's hub (built on first use, never at import)."""
    return MetricsHub()


@lru_cache(maxsize=1)
def process_registry() -> CollectorRegistry:
    """What this process's ``/metrics`` shows: the process itself and every service's hub."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, hub()):
        registry.register(collector)
    return registry


def exposition(*extra: Collector) -> bytes:
    """The process's metrics, and ``extra``'s, in the Prometheus text format (for a
    server with an HTTP port of its own, such as the registry)."""
    if not extra:
        return generate_latest(process_registry())
    merged = MetricsHub()
    for source in (hub(), *extra):
        merged.add(source)
    registry = CollectorRegistry(auto_describe=False)
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR, merged):
        registry.register(collector)
    return generate_latest(registry)


@contextlib.contextmanager
def registered(source: Collector) -> Iterator[None]:
    """``source`` is part of this process's metrics for the duration of the block."""
    hub().add(source)
    try:
        yield
    finally:
        hub().discard(source)


def targets_dir(settings: Settings) -> Path:
    return settings.metrics.targets_dir or settings.state_dir / "prometheus" / "targets"


class MetricsEndpoint:
    """This process's ``/metrics``: where it listens, and its file_sd target."""

    def __init__(self, job: str, host: str, port: int, target_file: Path | None,
                 server: Any = None) -> None:
        self.job, self.host, self.port = job, host, port
        self.target_file = target_file
        self._server = server

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        global _ENDPOINT
        if self.target_file is not None:
            self.target_file.unlink(missing_ok=True)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        with _LOCK:
            if _ENDPOINT is self:
                _ENDPOINT = None


_LOCK = threading.Lock()
_ENDPOINT: MetricsEndpoint | None = None


def serve(settings: Settings, job: str) -> MetricsEndpoint:
    """Start this process's ``/metrics`` (once per process) and publish it to Prometheus.

    ``job`` names the process kind in Prometheus (``platform``, ``physics``,
    ``registry``...). A second call returns the endpoint the first one started.
    """
    global _ENDPOINT
    with _LOCK:
        if _ENDPOINT is not None:
            return _ENDPOINT
        m = settings.metrics
        server, _thread = start_http_server(m.port, addr=m.host, registry=process_registry())
        port = int(server.server_port)
        target = _write_target(targets_dir(settings), job, m.host, port) if m.publish else None
        _ENDPOINT = MetricsEndpoint(job, m.host, port, target, server)
        log.info("metrics at http://%s:%d/metrics", m.host, port)
        return _ENDPOINT


def publish_target(settings: Settings, job: str, host: str, port: int) -> Path | None:
    """A file_sd target for an exposition this process does not serve itself (a JVM
    child's, such as Flink's reporter); None when publishing is off. The caller
    removes the file when the exposition goes away."""
    if not settings.metrics.publish:
        return None
    return _write_target(targets_dir(settings), job, host, port)


def _write_target(folder: Path, job: str, host: str, port: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.json"):
        pid = stale.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)
    path = folder / f"{job}-{os.getpid()}.json"
    entry = [{"targets": [f"{host}:{port}"], "labels": {"job": job}}]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entry))
    tmp.replace(path)  # Prometheus never reads half a file
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
