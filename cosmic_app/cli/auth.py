"""``cosmic auth`` and ``cosmic audit``: tokens, bans, and the audit trail's proof."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import click

from cosmic.settings import get_settings


@click.group()
def auth() -> None:
    """Development tokens, token keys, bans and revocations."""


@auth.command()
@click.option("--player", required=True, help="The player id (the token's sub).")
@click.option("--role", type=click.Choice(["player", "operator"]), default="player",
              show_default=True)
@click.option("--ttl", type=float, default=None,
              help="Seconds the token is valid [default: security.token_lifetime_s].")
@click.option("--hs256", is_flag=True,
              help="An HS256 token (needs security.allow_dev_hs256; development only).")
def token(player: str, role: str, ttl: float | None, hs256: bool) -> None:
    """Print a development token signed with the local stack's key."""
    from schemas.models import Role
    from streams.security import tokens

    settings = get_settings()
    limit = settings.security.token_lifetime_s
    if ttl is not None and not 0 < ttl <= limit:
        raise click.BadParameter(f"--ttl must be within (0, {limit}] (security.token_lifetime_s)")
    keys = tokens.TokenKeys.for_settings(settings)
    click.echo(tokens.mint(keys, settings.security, player, Role(role), ttl_s=ttl,
                           algorithm="HS256" if hs256 else "EdDSA"))


@auth.command()
def keys() -> None:
    """Make the token keys if missing; print where they are and the key ids."""
    from streams.security import tokens

    settings = get_settings()
    k = tokens.TokenKeys.for_settings(settings)
    click.echo(f"signing key: {tokens.signing_key_file(settings)} (kid {k.signing_kid})")
    click.echo(f"key set:     {tokens.jwks_file(settings)} ({', '.join(sorted(k.public))})")


@auth.command()
@click.option("--player", required=True, help="The player to ban (every token of theirs).")
@click.option("--reason", default="", help="Why, for the log.")
@click.option("--for", "for_s", type=float, default=None, help="Seconds [default: for good].")
@click.option("--lift", is_flag=True, help="Lift the ban instead.")
def ban(player: str, reason: str, for_s: float | None, lift: bool) -> None:
    """Ban a player at every gateway (within a second), or lift the ban."""
    _revoke("player", player, reason, for_s, lift)


@auth.command()
@click.option("--token-id", required=True, help="The token's jti.")
@click.option("--reason", default="")
def revoke(token_id: str, reason: str) -> None:
    """Revoke one token at every gateway."""
    _revoke("token", token_id, reason, None, False)


def _revoke(kind: str, subject: str, reason: str, for_s: float | None, lift: bool) -> None:
    from schemas.registry.client import RegistryClient
    from streams.security import revocations

    settings = get_settings()
    registry = RegistryClient.from_settings(settings)
    try:
        until = None if for_s is None else time.time() + for_s
        revocations.publish(settings, registry, kind, subject, reason=reason,  # type: ignore[arg-type]
                            issued_by="cosmic auth", until_s=until, lift=lift)
    finally:
        registry.close()
    click.echo(f"{kind} {subject}: {'lifted' if lift else 'revoked'}")


@click.group()
def audit() -> None:
    """The gateways' hash-chained audit trail (cosmic.audit.v1)."""


@audit.command()
@click.option("--gateway", default=None, help="Check this gateway instance's chain only.")
@click.option("--topic", default=None, help="Read this Kafka topic [default: cosmic.audit.v1].")
def verify(gateway: str | None, topic: str | None) -> None:
    """Read the whole topic and check every chain; exit 3 naming the first bad sequence."""
    from cosmic import topics
    from schemas.registry.client import RegistryClient
    from streams.security import audit as trail
    from streams.worlds.eventlog import KafkaLog

    settings = get_settings()
    registry = RegistryClient.from_settings(settings)
    name = topic or topics.AUDIT.name
    try:
        log = KafkaLog(settings, registry)

        def records() -> Iterator[dict[str, Any]]:
            for partition in log.partitions(name):
                for _, _, record in log.read(name, partition):
                    yield record

        chains, problems = trail.verify(records(), gateway)
    finally:
        registry.close()
    for gid, state in sorted(chains.items()):
        mark = "ok" if state.problem is None else "BROKEN"
        click.echo(f"{gid}: {state.records} records, {mark}")
    if gateway is not None and gateway not in chains:
        click.secho(f"no records of gateway {gateway} on {name}", fg="red", err=True)
        sys.exit(3)
    for problem in problems:
        click.secho(f"audit chain broken: {problem}", fg="red", err=True)
    if problems:
        sys.exit(3)
