"""``cosmic physics``: run the physics worker."""

from __future__ import annotations

import click

from cosmic import logs, metrics, tracing
from cosmic.runtime import run_services
from cosmic.settings import get_settings


@click.group()
def physics() -> None:
    """The N-body physics worker."""


@physics.command()
@click.option("--worker-id", help="Stable identity: a restarted worker with the same id fences its "
                                  "predecessor. [default: settings.physics.worker_id]")
@click.option("--shard", help='Own only the worlds "SHARD:..." (its own consumer group); without it, '
                              "the worlds whose id has no shard. [default: settings.physics.shard]")
@click.option("--unpaced", is_flag=True, help="Tick as fast as possible (replays, benchmarks).")
@click.option("--lockstep", is_flag=True,
              help="Tick a world once per command, and only then (turn-based worlds, tests).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--tolerance", type=float,
              help="Dead-reckoning tolerance of state deltas, in length units.")
@click.option("--hibernate-after", type=float,
              help="Seconds without a command before a world hibernates (0: never).")
@click.option("--max-worlds", type=int, help="Most worlds this worker ticks at once.")
def worker(worker_id: str | None, shard: str | None, unpaced: bool, lockstep: bool, duration: float | None,
           tolerance: float | None, hibernate_after: float | None, max_worlds: int | None) -> None:
    """Consume commands, tick the worlds of the assigned partitions, produce their events.

    Defaults come from the settings' ``physics`` section (COSMIC_PHYSICS__*).
    """
    from streams.worlds.worker import WorkerConfig, build_worker

    settings = get_settings()
    logs.configure(settings, "physics")
    traces = tracing.configure(settings, "physics")
    config = WorkerConfig.from_settings(
        settings, worker_id=worker_id, shard=shard, unpaced=unpaced or None, lockstep=lockstep or None,
        delta_tolerance=tolerance, hibernate_after_s=hibernate_after, max_worlds=max_worlds)
    w = build_worker(settings, config)
    endpoint = metrics.serve(settings, "physics")
    try:
        run_services([w], duration_s=duration, echo=click.echo)
    finally:
        endpoint.close()
        if traces is not None:
            traces.shutdown()
