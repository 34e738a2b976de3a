"""``cosmic topics``: create (idempotently, reconciling) and list the platform's topics,
and bring the cluster's ACLs in line with cosmic/acls.py."""

from __future__ import annotations

import click

from cosmic import acls, admin, security
from cosmic.settings import get_settings


@click.group()
def topics() -> None:
    """The platform's Kafka topics, as declared in cosmic.topics."""


@topics.command()
def create() -> None:
    """Create missing topics and fix configs of existing ones, then the ACLs.

    A keyed topic whose partition count differs from the declared one is left
    as it is and the command fails: changing the count would move every world
    to another partition, away from its history (runbooks/partitions.md).
    """
    settings = get_settings()
    try:
        changes = admin.reconcile_topics(settings)
    except admin.PartitionCountMismatch as exc:
        for change in exc.done:
            click.echo(change)
        raise click.ClickException(str(exc)) from None
    for change in changes:
        click.echo(change)
    if settings.kafka.secured:
        # The ACLs come from the same code as the topics, so both change together.
        for change in security.reconcile_acls(settings):
            click.echo(f"acls: {change}")


@topics.command("acls")
def acls_() -> None:
    """Who may do what: the identities of cosmic/acls.py and their grants (Markdown)."""
    click.echo(acls.markdown(get_settings()))


@topics.command("list")
def list_() -> None:
    """Every declared topic with partitions, policy, retention and message count."""
    rows = admin.describe_topics(get_settings())
    click.echo(f"{'topic':<32}{'parts':>6}  {'cleanup':<15}{'retention':>12}{'messages':>12}")
    for r in rows:
        parts = "-" if r.partitions is None else str(r.partitions)
        msgs = "-" if r.messages is None else str(r.messages)
        click.echo(f"{r.name:<32}{parts:>6}  {r.cleanup_policy:<15}{r.retention:>12}{msgs:>12}")
