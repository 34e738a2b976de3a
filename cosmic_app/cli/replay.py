"""``cosmic replay``: rebuild a world at any past tick or moment, verify it, fork or restore it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from cosmic.settings import get_settings
from cosmic_app.cli.progress import ProgressBar

EXIT_DIVERGED = 3  # the log does not prove the state: divergence, missing or unreadable tick
EXIT_EXISTS = 4  # --fork into a world id that is taken


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        raise click.BadParameter("give a time zone, e.g. 2026-11-29T10:00:00Z or +00:00")
    return moment.astimezone(UTC)


@click.command()
@click.option("--world", "world_id", help="World to rebuild (or to restore into).")
@click.option("--at-tick", type=int, help="Rebuild the state right after this tick.")
@click.option("--at-time", help="Rebuild the state at the last tick at or before this ISO 8601 time.")
@click.option("--from-tick", type=int,
              help="Start from the snapshot at or before this tick (0: audit the whole history) "
                   "instead of the nearest one.")
@click.option("--verify", is_flag=True,
              help="Check every replayed tick's hash, and the target tick's, against the log; "
                   "fail on missing or undecodable ticks and snapshots.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the rebuilt state to this snapshot file (Avro container).")
@click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Start from a snapshot file instead of the log.")
@click.option("--fork", "fork_into", help="Start a new world with this id from the rebuilt state.")
@click.option("--force", is_flag=True,
              help="Fork even into a world id that already has ticks or commands.")
@click.option("--restore", is_flag=True,
              help="Make --world continue from the rebuilt state (recorded in the log).")
@click.option("--log-dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Read an exported log (cosmic log export) instead of Kafka.")
@click.option("--reason", default="", help="Why (recorded with a fork or restore).")
def replay(world_id: str | None, at_tick: int | None, at_time: str | None,
           from_tick: int | None, verify: bool,
           out_file: Path | None, from_file: Path | None, fork_into: str | None, force: bool,
           restore: bool, log_dir: Path | None, reason: str) -> None:
    """Rebuild WORLD at a past tick or time from its nearest snapshot and the log.

    \b
    Examples:
      cosmic replay --world garden-demo --at-tick 500 --verify
      cosmic replay --world garden-demo --from-tick 0 --verify      # audit everything
      cosmic replay --world garden-demo --at-time 2026-11-29T10:00:00Z --out w.avro
      cosmic replay --from-file w.avro --fork garden-demo-fork
      cosmic replay --world garden-demo --at-tick 500 --verify --restore --reason "bad deploy"
    """
    from schemas.registry.client import RegistryClient
    from streams.security import signing
    from streams.worlds.eventlog import ExportedLog, KafkaLog, LogSource
    from streams.worlds.pointintime import (
        UnreadableLog,
        adopt,
        read_snapshot_file,
        rebuild,
        world_exists,
        write_snapshot_file,
    )
    from streams.worlds.recovery import BackendMismatch, ReplayDivergence, TickGap

    if fork_into and restore:
        raise click.UsageError("choose --fork or --restore, not both")
    if at_tick is not None and at_time is not None:
        raise click.UsageError("choose --at-tick or --at-time, not both")
    if from_file is None and not world_id:
        raise click.UsageError("--world is required (or --from-file)")
    if restore and not world_id:
        raise click.UsageError("--restore needs --world: the world to restore")
    if force and not fork_into:
        raise click.UsageError("--force only applies to --fork")
    moment = _parse_time(at_time) if at_time else None

    settings = get_settings()
    registry = RegistryClient.from_settings(settings)
    try:
        # Checked before the (possibly long) replay: adopting a state into a world that
        # already runs would replace it, which is what --restore is for, not a fork.
        if fork_into and not force and world_exists(settings, fork_into):
            click.secho(f"refusing to fork into {fork_into}: that world already exists (it has "
                        "ticks or commands in its home partition); choose a new id, use "
                        "--restore to reset a world, or --force to adopt the state anyway",
                        fg="red", err=True)
            sys.exit(EXIT_EXISTS)
        if from_file is not None:
            state, record = read_snapshot_file(from_file)
            source_world, source_tick = state.world_id, int(record["tick"])
            click.echo(f"loaded {from_file}: world {state.world_id} tick {source_tick}, "
                       f"{len(state.world)} bodies, hash {state.state_hash()} (verified)")
        else:
            assert world_id is not None
            source: LogSource = (ExportedLog(log_dir, registry) if log_dir
                                 else KafkaLog(settings, registry))
            bar = ProgressBar(f"replaying {world_id}", "ticks")
            try:
                rebuilt = rebuild(source, world_id, at_tick=at_tick, at_time=moment,
                                  authenticate=signing.authenticator(settings),
                                  from_tick=from_tick, verify=verify, progress=bar)
            except (ReplayDivergence, TickGap) as exc:
                bar.close()
                click.secho(f"DIVERGED at tick {exc.tick}: {exc}", fg="red", err=True)
                sys.exit(EXIT_DIVERGED)
            except (UnreadableLog, BackendMismatch) as exc:
                bar.close()
                click.secho(f"UNVERIFIABLE: {exc}", fg="red", err=True)
                sys.exit(EXIT_DIVERGED)
            bar.close()
            state = rebuilt.state
            source_world, source_tick = world_id, rebuilt.target_tick
            rate = rebuilt.ticks_replayed / max(rebuilt.seconds, 1e-9)
            click.echo(
                f"world {world_id} (partition {rebuilt.partition}) at tick {rebuilt.target_tick}: "
                f"snapshot of tick {rebuilt.from_snapshot_tick} + {rebuilt.ticks_replayed} ticks "
                f"replayed in {rebuilt.seconds:.2f}s ({rate:.0f} ticks/s)")
            click.echo(f"  bodies {len(state.world)}, energy {state.world.total_energy():.9g}, "
                       f"hash {state.state_hash()}")
            skipped = rebuilt.skipped
            if skipped.ticks or skipped.snapshots:
                click.secho(f"  warning: skipped {skipped.ticks + skipped.snapshots} undecodable "
                            f"records ({skipped.ticks} ticks, {skipped.snapshots} snapshots); "
                            "--verify refuses such a log", fg="yellow")
            if skipped.commands:
                click.echo(f"  skipped {skipped.commands} undecodable commands (dead-lettered "
                           "live, never applied)")
            if verify:
                click.echo(f"  verified: all {rebuilt.ticks_replayed} replayed ticks match the "
                           f"recorded state hashes, tick {rebuilt.target_tick} included")
        if out_file is not None:
            write_snapshot_file(state, out_file)
            click.echo(f"wrote {out_file}")
        if fork_into or restore:
            target = fork_into or world_id
            assert target is not None
            why = reason or (f"fork of {source_world} at tick {source_tick}" if fork_into
                             else f"restore of {source_world} to tick {source_tick}")
            done = adopt(settings, registry, state, into_world=target, source_world=source_world,
                         source_tick=source_tick, reason=why)
            click.echo(f"{'forked into' if fork_into else 'restoring'} world {target}: snapshot in "
                       f"history partition {done.history_partition} offset {done.history_offset}, "
                       f"AdoptSnapshot command {done.command_id} sent; the physics worker applies "
                       "it at the world's next tick")
    finally:
        registry.close()
