"""``cosmic security``: the cheat detector, and the flags it raised."""

from __future__ import annotations

import logging

import click

from cosmic.runtime import run_services
from cosmic.settings import get_settings


@click.group()
def security() -> None:
    """Cheat and anomaly detection over players' commands."""


@security.command()
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--from-start", is_flag=True,
              help="A new detector group judges the whole command history, not only from now.")
def detect(duration: float | None, from_start: bool) -> None:
    """Watch commands and refusals; write flags to cosmic.security.flags.v1 (until Ctrl-C)."""
    from streams.security.detector import CheatDetector

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    service = CheatDetector(get_settings(), start="earliest" if from_start else "latest")
    run_services([service], duration_s=duration, echo=click.echo)


@security.command()
@click.option("--player", default=None, help="Only this player's flags.")
@click.option("--limit", type=int, default=50, show_default=True, help="Newest this many.")
def flags(player: str | None, limit: int) -> None:
    """The flags raised so far, newest last: player, world, rule, score, evidence."""
    import orjson

    from cosmic import topics
    from schemas.registry.client import RegistryClient
    from streams.worlds.eventlog import KafkaLog

    settings = get_settings()
    with RegistryClient.from_settings(settings) as registry:
        source = KafkaLog(settings, registry)
        found = [rec for p in source.partitions(topics.SECURITY_FLAGS.name)
                 for _, _, rec in source.read(topics.SECURITY_FLAGS.name, p)
                 if isinstance(rec, dict) and (player is None or rec["player_id"] == player)]
    found.sort(key=lambda r: r["ts"])
    # Delivered at least once: the same finding may be there twice, under one id.
    unique = list({r["flag_id"]: r for r in found}.values())
    for r in unique[-limit:]:
        evidence = orjson.loads(r["evidence"])
        evidence.pop("examples", None)
        click.echo(f"{r['window_start']:%Y-%m-%d %H:%M:%S} {r['player_id']} in {r['world_id']}: "
                   f"{r['kind']} x{r['score']:.1f} {orjson.dumps(evidence).decode()}")
    if not unique:
        click.echo("no flags")
