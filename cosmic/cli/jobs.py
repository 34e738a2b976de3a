"""``cosmic jobs``: run the platform's batch and stream-processing jobs.

``cosmic jobs run <job> ...``: each job is one subcommand of :data:`run`, with
its own options; add a job by adding one ``@run.command``.
"""

from __future__ import annotations

import sys
from datetime import date

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
@click.option("--master", default="local[2]", show_default=True,
              help="Spark master (local[N], spark://..., yarn, k8s://...).")
@click.option("--driver-memory", default="1g", show_default=True)
@click.option("--conf", "conf", multiple=True, metavar="KEY=VALUE",
              help="Extra Spark configuration. Repeatable.")
@click.option("--print-command", is_flag=True, help="Print the spark-submit line, run nothing.")
def warehouse(day: str, end_day: str | None, source: str, master: str, driver_memory: str,
              conf: tuple[str, ...], print_command: bool) -> None:
    """Build the ClickHouse warehouse for a day (or days) with spark-submit.

    Re-running a day replaces exactly that day's rows in every warehouse table.
    """
    from jobs.spark import submit

    settings = get_settings()
    cmd = submit.command(settings, "warehouse",
                         submit.warehouse_args(settings, day, end_day, source),
                         master=master, driver_memory=driver_memory, conf=conf)
    if print_command:
        click.echo(" ".join(cmd))
        return
    rc = submit.run(cmd)
    if rc != 0:
        sys.exit(rc)
