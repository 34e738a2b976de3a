"""``cosmic physics``: run the physics worker."""

from __future__ import annotations

import logging

import click

from cosmic.runtime import run_services
from cosmic.settings import get_settings


@click.group()
def physics() -> None:
    """The N-body physics worker."""


@physics.command()
@click.option("--worker-id", default="physics-0", show_default=True,
              help="Stable identity: a restarted worker with the same id fences its predecessor.")
@click.option("--group-id", default="cosmic-physics", show_default=True,
              help="Consumer group of the physics workers.")
@click.option("--world-prefix", default="", help="Own only worlds whose id starts with this.")
@click.option("--unpaced", is_flag=True, help="Tick as fast as possible (replays, benchmarks).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--tolerance", type=float, default=1e-3, show_default=True,
              help="Dead-reckoning tolerance of state deltas, in length units.")
def worker(worker_id: str, group_id: str, world_prefix: str, unpaced: bool,
           duration: float | None, tolerance: float) -> None:
    """Consume commands, tick the worlds of the assigned partitions, produce their events."""
    from streams.worlds.worker import WorkerConfig, build_worker

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    config = WorkerConfig(worker_id=worker_id, group_id=group_id, world_prefix=world_prefix,
                          unpaced=unpaced, delta_tolerance=tolerance)
    w = build_worker(get_settings(), config)
    run_services([w], duration_s=duration, echo=click.echo)
