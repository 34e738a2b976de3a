"""``cosmic connectors``: run the Kafka -> store connectors in the foreground."""

from __future__ import annotations

import logging

import click

from cosmic import topics
from cosmic.runtime import PlatformService, run_services
from cosmic.settings import get_settings


@click.group()
def connectors() -> None:
    """Sinks from Kafka into TimescaleDB, ClickHouse and the archive lake."""


@connectors.command()
@click.argument("which", type=click.Choice(["timescale", "clickhouse", "archive", "all"]),
                default="all")
@click.option("--route", "routes", multiple=True, metavar="TOPIC=REGISTERED_TOPIC",
              help="Read TOPIC as the registered topic's events (default: the connector's own "
                   "topics). Repeatable.")
@click.option("--group-id", default=None, help="Consumer group (default: one per connector).")
@click.option("--instance-id", default=None,
              help="Stable identity in the group (static membership): a restart resumes at once.")
@click.option("--dlq-topic", default=None, help="Dead-letter topic (default: cosmic.dlq.v1).")
@click.option("--roll-bytes", type=int, default=None, help="Archive: close files at this size.")
@click.option("--roll-seconds", type=float, default=None, help="Archive: close files this old.")
@click.option("--metrics-port", type=int, default=None,
              help="Serve Prometheus metrics at http://127.0.0.1:PORT/metrics "
                   "[default: settings.metrics.port; 0 picks a free port].")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
def run(which: str, routes: tuple[str, ...], group_id: str | None, instance_id: str | None,
        dlq_topic: str | None,
        roll_bytes: int | None, roll_seconds: float | None, metrics_port: int | None,
        duration: float | None) -> None:
    """Consume, write in batches, commit after the store has them; Ctrl-C stops cleanly."""
    import connectors as sinks
    from connectors.base import Connector
    from connectors.lake import RolloverPolicy
    from cosmic import logs, metrics

    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = get_settings()
    logs.configure(settings, "connectors")
    if metrics_port is not None:
        settings = settings.with_overrides(
            metrics=settings.metrics.model_copy(update={"port": metrics_port}))
    names = sinks.NAMES if which == "all" else (which,)
    built: list[Connector] = []
    for name in names:
        options: dict[str, object] = {"routes": topics.parse_routes(routes) or None}
        if group_id:
            options["group_id"] = group_id if len(names) == 1 else f"{group_id}-{name}"
        if instance_id:
            options["instance_id"] = f"{instance_id}-{name}"
        if dlq_topic:
            options["dlq_topic"] = topics.Topic(dlq_topic, key="original key",
                                                value="original bytes", doc="dead letters")
        if name == "archive" and (roll_bytes or roll_seconds):
            default = RolloverPolicy()
            options["policy"] = RolloverPolicy(roll_bytes or default.max_bytes,
                                               roll_seconds or default.max_age_s)
        built.append(sinks.build(name, settings, **options))
    endpoint = metrics.serve(settings, "connectors")
    click.echo(f"metrics at {endpoint.url}")
    services: list[PlatformService] = list(built)
    try:
        run_services(services, duration_s=duration, echo=click.echo)
    finally:
        endpoint.close()
