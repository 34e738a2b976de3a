"""``cosmic schemas``: register the shipped ``.avsc`` files, list what is registered, check compatibility."""

from __future__ import annotations

import click

from cosmic.settings import get_settings
from schemas import catalog
from schemas.errors import SubjectNotFound
from schemas.registry.client import RegistryClient

_url = click.option(
    "--registry-url", "url", default=None, metavar="URL",
    help="schema registry to talk to (default: settings.registry.url)",
)


def _client(url: str | None) -> RegistryClient:
    return RegistryClient.for_url(get_settings(), url)


def _selected(only: tuple[str, ...]) -> dict[str, str]:
    """Subjects to act on (all shipped ones, or those named by subject or schema name)."""
    subjects = catalog.subjects()
    if not only:
        return subjects
    chosen = {s: n for s, n in subjects.items() if s in only or n in only}
    unknown = set(only) - set(chosen) - set(chosen.values())
    if unknown:
        raise click.BadParameter(f"unknown subject or schema: {', '.join(sorted(unknown))}")
    return chosen


@click.group()
def schemas() -> None:
    """Event contracts in the schema registry (the .avsc files in schemas/ are the source)."""


@schemas.command()
@_url
@click.argument("only", nargs=-1, metavar="[SUBJECT|SCHEMA]...")
def register(url: str | None, only: tuple[str, ...]) -> None:
    """Register the shipped schemas (all, or those named) under their subjects.

    Registration is idempotent; a schema that breaks its subject's
    compatibility rule is refused with the reasons, and the command fails.
    """
    with _client(url) as client:
        for subject, name in _selected(only).items():
            schema_id = client.register(subject, catalog.load(name))
            version = client.lookup(subject, catalog.load(name)).version
            click.echo(f"{subject:<40} {name:<20} id {schema_id:<5} version {version}")


@schemas.command("list")
@_url
def list_(url: str | None) -> None:
    """Every registered subject with its latest version, schema id and record name."""
    with _client(url) as client:
        click.echo(f"{'subject':<40} {'version':>7} {'id':>5}  record")
        for subject in client.subjects():
            latest = client.latest(subject)
            tree = latest.schema.tree
            record = tree.get("name", "-") if isinstance(tree, dict) else "-"
            click.echo(f"{subject:<40} {latest.version:>7} {latest.id:>5}  {record}")


@schemas.command()
@_url
@click.argument("only", nargs=-1, metavar="[SUBJECT|SCHEMA]...")
def check(url: str | None, only: tuple[str, ...]) -> None:
    """Would the local .avsc files be accepted by the registry? Exits 1 if any would not."""
    refused = 0
    with _client(url) as client:
        for subject, name in _selected(only).items():
            try:
                result = client.check(subject, catalog.load(name))
            except SubjectNotFound:
                click.echo(f"{subject:<40} new (not registered yet)")
                continue
            if result.is_compatible:
                click.echo(f"{subject:<40} compatible ({client.compatibility(subject)})")
            else:
                refused += 1
                click.secho(f"{subject:<40} INCOMPATIBLE ({client.compatibility(subject)})", fg="red")
                for message in result.messages:
                    click.echo(f"    - {message}")
    if refused:
        raise click.exceptions.Exit(1)
