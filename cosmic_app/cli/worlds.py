"""``cosmic world``: create, list, show and retire worlds."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING

import click

from cosmic.settings import get_settings

if TYPE_CHECKING:
    from schemas.registry.client import RegistryClient


@click.group()
def world() -> None:
    """Worlds and their lifecycle (active, hibernating, quarantined, retired)."""


def _registry() -> RegistryClient:
    from schemas.registry.client import RegistryClient

    return RegistryClient.from_settings(get_settings())


@world.command()
@click.argument("world_id")
@click.option("--preset", type=click.Choice(["star-system", "empty"]), default="star-system",
              show_default=True)
@click.option("--asteroids", type=int, default=200, show_default=True)
@click.option("--tick-rate", type=float, default=30.0, show_default=True)
@click.option("--snapshot-every", type=int, default=100, show_default=True)
def create(world_id: str, preset: str, asteroids: int, tick_rate: float, snapshot_every: int) -> None:
    """Start WORLD_ID from a preset (its opening commands go through the log)."""
    from streams.worlds.lifecycle import create_world

    n = create_world(get_settings(), _registry(), world_id, preset=preset, asteroids=asteroids,
                     tick_rate_hz=tick_rate, snapshot_every=snapshot_every)
    click.echo(f"world {world_id}: {n} opening commands sent; the physics worker creates it "
               "at its next tick")


@world.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per world.")
def list_(as_json: bool) -> None:
    """Every world with its status, and its tick, bodies, partition and backend as of its
    latest status (written at each lifecycle change and with every snapshot)."""
    from streams.worlds.lifecycle import list_worlds

    worlds = list_worlds(get_settings(), _registry())
    if as_json:
        for w in worlds:
            click.echo(json.dumps(asdict(w), default=str))
        return
    click.echo(f"{'world':<36}{'status':<13}{'tick':>9}{'bodies':>8}{'part':>5}  {'backend':<8}"
               "reason")
    for w in worlds:
        click.echo(f"{w.world_id:<36}{w.status:<13}{w.tick:>9}{w.body_count:>8}{w.partition:>5}  "
                   f"{w.backend:<8}{w.reason}")
    click.echo(f"{len(worlds)} worlds")


@world.command()
@click.argument("world_id")
def show(world_id: str) -> None:
    """One world's latest status."""
    from streams.worlds.lifecycle import show_world

    w = show_world(get_settings(), _registry(), world_id)
    for key, value in asdict(w).items():
        click.echo(f"{key:<12}{value}")


@world.command()
@click.argument("world_id")
@click.option("--reason", default="", help="Why (recorded with the world's final status).")
def retire(world_id: str, reason: str) -> None:
    """End WORLD_ID for good: a final snapshot, then later commands are rejected."""
    from streams.worlds.lifecycle import retire_world

    retire_world(get_settings(), _registry(), world_id, reason)
    click.echo(f"world {world_id}: RetireWorld sent; the worker retires it at its next tick")
