"""``cosmic db``: the stores' schemas (versioned migrations under infra/sql/)."""

from __future__ import annotations

import click

from cosmic.settings import get_settings


@click.group()
def db() -> None:
    """PostgreSQL/TimescaleDB and ClickHouse schemas."""


@db.command()
@click.option("--store", type=click.Choice(["all", "timescale", "clickhouse", "bodies"]), default="all",
              show_default=True, help="Which store to migrate.")
def migrate(store: str) -> None:
    """Apply the migrations not yet applied (recorded in each store's schema_migrations)."""
    from connectors import bodies, clickhouse, timescale

    settings = get_settings()
    if store in ("all", "timescale"):
        variant, done = timescale.migrate(settings)
        click.echo(f"timescale: {timescale.DESCRIPTIONS[variant]}")
        for line in done or ["up to date"]:
            click.echo(f"timescale: {line}")
    if store in ("all", "clickhouse"):
        for line in clickhouse.migrate(settings) or ["up to date"]:
            click.echo(f"clickhouse: {line}")
    if store in ("all", "bodies"):
        for line in bodies.migrate(settings) or ["up to date"]:
            click.echo(f"bodies: {line}")
