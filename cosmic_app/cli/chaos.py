"""``cosmic chaos``: the exactly-once fault matrix (processors x faults)."""

from __future__ import annotations

from pathlib import Path

import click

from cosmic.settings import get_settings


@click.group()
def chaos() -> None:
    """Kill, restart and rebalance the processors; count what was lost or duplicated."""


@chaos.command()
@click.option("--full", is_flag=True,
              help="Three seeds per cell, 100,000 input records each (hours), "
                   "instead of one seed and 2,000 records.")
@click.option("--only", "only", multiple=True, metavar="ROW|FAULT|ROW/FAULT",
              help="Run only these cells (repeatable), e.g. physics/sigkill or timescale.")
@click.option("--size", type=int, default=None, help="Input records per cell (overrides the plan).")
@click.option("-v", "--verbose", is_flag=True, help="Print every cell's events (faults, phases).")
@click.option("--workdir", type=click.Path(path_type=Path), default=None,
              help="Where the processes' logs go [default: a new temporary folder].")
def run(full: bool, only: tuple[str, ...], size: int | None, verbose: bool,
        workdir: Path | None) -> None:
    """Run the matrix's cells and print the table; exit 1 unless every cell passed."""
    from cosmic_app.chaos import matrix, table

    plan = matrix.Plan.full() if full else matrix.Plan.short()
    if size is not None:
        plan = matrix.Plan(plan.seeds, size, plan.duration_s * size / plan.size, plan.outage_s)
    selected = matrix.cells(plan, only)
    if not selected:
        raise click.UsageError(f"no built cell matches {', '.join(only)}; rows: "
                               f"{', '.join(matrix.ROWS)}")

    def done(o: object) -> None:
        click.echo(table.render([o]).splitlines()[2], err=True)  # type: ignore[list-item]

    outcomes = matrix.run(get_settings(), selected, plan, workdir=workdir, on_done=done)
    click.echo(table.render(outcomes, matrix.NOT_BUILT_ROWS, matrix.NOT_BUILT_FAULTS,
                            matrix.NOT_APPLICABLE, matrix.KNOWN_FAILING))
    for o in outcomes:
        for e in o.events if verbose or not o.passed else ():
            click.echo(f"  {o.cell.row}/{o.cell.fault}/{o.cell.seed}: {e}", err=True)
    if not all(o.passed for o in outcomes):
        raise SystemExit(1)
