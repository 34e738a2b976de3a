"""Sinks between Kafka and the stores: TimescaleDB, ClickHouse, the archive lake.

Reading guide: start with :mod:`connectors.base` (the shared consume -> decode
-> batch -> write -> commit loop and how a crash stays duplicate-free), then
one sink: :mod:`connectors.timescale` (COPY, positions in the same
transaction), :mod:`connectors.bodies` (each world's bodies now, PostGIS), :mod:`connectors.clickhouse` (columnar inserts, ``_offset``
columns), :mod:`connectors.archive` with :mod:`connectors.lake` (Avro files,
manifests, and :func:`~connectors.lake.read_topic` for replay and Spark).
:mod:`connectors.migrate` applies the SQL under ``infra/sql/``;
:mod:`connectors.stores` holds the store clients (ClickHouse, PostgreSQL) the
sinks and the jobs share, with the driver errors translated once.

Each sink module has ``build(settings, routes=None, group_id=...)`` returning
a :class:`~connectors.base.Connector`, a platform service (start/stop/
progress/failure) with ``metrics_text()`` for Prometheus.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from connectors.base import Connector
    from cosmic.settings import Settings

NAMES = ("timescale", "clickhouse", "archive", "bodies")


def build(name: str, settings: Settings, **options: object) -> Connector:
    """The connector called ``name`` (one of :data:`NAMES`), with its default topics."""
    if name not in NAMES:
        from cosmic.errors import ConfigError

        raise ConfigError(f"unknown connector {name!r}; connectors: {', '.join(NAMES)}")
    connector: Connector = import_module(f"connectors.{name}").build(settings, **options)
    return connector


__all__ = ["NAMES", "build"]
