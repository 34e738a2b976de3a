"""``cosmic lag-exporter``: every consumer group's lag, in records and seconds, for Prometheus."""

from __future__ import annotations

import click

from cosmic import logs, metrics
from cosmic.runtime import run_services
from cosmic.settings import get_settings


@click.command("lag-exporter")
@click.option("--port", type=int, default=None,
              help="Serve /metrics on this port [default: settings.lag.metrics_port; 0: a free one].")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def lag_exporter(port: int | None, duration: float | None) -> None:
    """Sample every group's committed offsets, the partitions' ends and the next record's
    time; export lag and an OK / WARN / STALLED / STOPPED status per group."""
    from cosmic.lag import LagExporter

    settings = get_settings()
    logs.configure(settings, "lag-exporter")
    chosen = settings.lag.metrics_port if port is None else port
    settings = settings.with_overrides(metrics=settings.metrics.model_copy(update={"port": chosen}))
    endpoint = metrics.serve(settings, "lag-exporter")
    click.echo(f"metrics at {endpoint.url}")
    try:
        run_services([LagExporter(settings)], duration_s=duration, echo=click.echo)
    finally:
        endpoint.close()
