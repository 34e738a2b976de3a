"""``cosmic up``'s status: a live table refreshed in place, or plain lines for logs and CI.

The table has one row per service: its state, its own progress line (rates,
counts), and, for services that consume as a group, the lag exporter's view of
that group (records, seconds, OK / WARN / STALLED / STOPPED). Plain mode prints
the same progress as one line every interval, which is what logs, CI and the
tests read.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from cosmic.lag import LagExporter
from cosmic.runtime import PlatformService


def group_of(svc: PlatformService) -> str | None:
    """The consumer group a service reads as, where it has one."""
    config = getattr(svc, "config", None)
    group = getattr(svc, "group_id", None) or getattr(config, "group", None)
    if group is None and hasattr(svc, "module"):  # a Faust app: its group is its id
        living = svc.settings.living  # type: ignore[attr-defined]
        group = {"ecosystem": living.ecosystem_app_id,
                 "civilization": living.civilization_app_id}.get(svc.name)
    return group if isinstance(group, str) else None


def rows(services: Sequence[PlatformService]) -> list[tuple[str, str, str, str]]:
    """(service, state, lag, progress) per service."""
    lag = next((s for s in services if isinstance(s, LagExporter)), None)
    out = []
    for svc in services:
        failed = svc.failure()
        state = "failed" if failed is not None else "running"
        group = group_of(svc)
        seen = lag.groups.get(group) if lag is not None and group else None
        lag_text = (f"{seen.status} {seen.records} / {seen.seconds:.1f}s" if seen is not None
                    else "-")
        out.append((svc.name, state, lag_text, str(failed) if failed else svc.progress()))
    return out


class LiveTable:
    """A rich table redrawn in place; lines echoed meanwhile scroll above it."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self._live = Live(console=self.console, auto_refresh=False, transient=False)

    def __enter__(self) -> LiveTable:
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.__exit__(*exc)

    def echo(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    def render(self, elapsed: float, services: Sequence[PlatformService]) -> None:
        from rich.table import Table

        table = Table(title=f"cosmic up · {elapsed:.0f}s", title_justify="left", expand=True)
        for column, style in (("service", "bold"), ("state", ""), ("lag", ""),
                              ("progress", "")):
            table.add_column(column, style=style, overflow="fold",
                             ratio=4 if column == "progress" else None)
        for name, state, lag_text, progress in rows(services):
            colour = "red" if state == "failed" else "green"
            warn = "yellow" if any(s in lag_text for s in ("WARN", "STALLED", "STOPPED")) else ""
            table.add_row(name, f"[{colour}]{state}[/]",
                          f"[{warn}]{lag_text}[/]" if warn else lag_text, progress)
        self._live.update(table, refresh=True)


def choose(mode: str, isatty: Callable[[], bool] = sys.stdout.isatty) -> str:
    """``auto`` is the live table on a terminal and plain lines anywhere else."""
    if mode == "auto":
        return "live" if isatty() else "plain"
    return mode
