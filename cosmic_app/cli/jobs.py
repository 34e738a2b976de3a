"""``cosmic jobs``: run the platform's batch and stream-processing jobs.

``cosmic jobs run <job> ...``: each job is one subcommand of :data:`run`, with
its own options; add a job by adding one ``@run.command``.
"""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import click

from cosmic.settings import get_settings


@click.group()
def jobs() -> None:
    """Batch (Spark) and streaming (Flink) jobs."""


@jobs.group()
def run() -> None:
    """Run one job in the foreground."""


def _day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date YYYY-MM-DD") from None


@run.command("warehouse")
@click.option("--date", "day", required=True, callback=_day, help="UTC day to build, YYYY-MM-DD.")
@click.option("--end-date", "end_day", callback=_day, default=None,
              help="Build every day from --date to this one, in order.")
@click.option("--source", type=click.Choice(["lake", "kafka"]), default="lake",
              show_default=True, help="Read the archive lake, or the Kafka topics directly.")
@click.option("--master", default=None,
              help="Spark master (local[N], spark://..., yarn, k8s://...) "
                   "[default: settings.spark.master, local[2]].")
@click.option("--driver-memory", default=None, help="[default: settings.spark.driver_memory, 1g]")
@click.option("--conf", "conf", multiple=True, metavar="KEY=VALUE",
              help="Extra Spark configuration. Repeatable.")
@click.option("--route", "routes", multiple=True, metavar="TOPIC=REGISTERED_TOPIC",
              help="With --source kafka: read Kafka topic TOPIC as the registered topic's "
                   "records. Repeatable.")
@click.option("--print-command", is_flag=True, help="Print the spark-submit line, run nothing.")
def warehouse(day: str, end_day: str | None, source: str, master: str | None,
              driver_memory: str | None,
              conf: tuple[str, ...], routes: tuple[str, ...], print_command: bool) -> None:
    """Build the ClickHouse warehouse for a day (or days) with spark-submit.

    Re-running a day replaces exactly that day's rows in every warehouse table.
    """
    from jobs.spark import submit

    settings = get_settings()
    cmd = submit.command(settings, "warehouse",
                         submit.warehouse_args(day, end_day, source, routes),
                         master=master or settings.spark.master,
                         driver_memory=driver_memory or settings.spark.driver_memory, conf=conf)
    if print_command:
        click.echo(" ".join(cmd))
        return
    rc = submit.run(cmd, settings)
    if rc != 0:
        sys.exit(rc)


@run.command("live-metrics")
@click.option("--route", "routes", multiple=True, metavar="TOPIC=REGISTERED_TOPIC",
              help="Read TOPIC as the registered topic's events (default: the five event "
                   "topics). Repeatable.")
@click.option("--group-id", default=None, help="Kafka consumer group (default from settings).")
@click.option("--checkpoint-dir", type=click.Path(path_type=Path), default=None,
              help="Checkpoint folder (default: <state dir>/flink/live-metrics/checkpoints).")
@click.option("--no-restore", is_flag=True, help="Start afresh, not from the newest checkpoint.")
def live_metrics(routes: tuple[str, ...], group_id: str | None, checkpoint_dir: Path | None,
                 no_restore: bool) -> None:
    """PyFlink: per-world windowed metrics from the event topics into TimescaleDB.

    Runs in PyFlink's local mini-cluster until stopped; resumes from its newest
    checkpoint. The same module runs on a cluster with `flink run -py`.
    """
    from jobs.flink import live_metrics as job

    args = [a for r in routes for a in ("--route", r)]
    if group_id:
        args += ["--group-id", group_id]
    if checkpoint_dir:
        args += ["--checkpoint-dir", str(checkpoint_dir)]
    if no_restore:
        args.append("--no-restore")
    job.main(args)
