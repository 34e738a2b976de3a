"""`cosmic up`'s status: a live table on a terminal, plain progress lines elsewhere."""

from __future__ import annotations

import io

from rich.console import Console

from cosmic.runtime import ThreadService, run_services
from cosmic_app.cli.status import LiveTable, choose


class Counting(ThreadService):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.count = 0

    def run(self) -> None:
        while not self._stop.wait(0.05):
            self.count += 1

    def progress(self) -> str:
        return f"{self.count} steps"


def test_live_table_has_a_row_per_service_redrawn_in_place():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    services = [Counting("alpha"), Counting("beta")]
    with LiveTable(console) as table:
        run_services(services, duration_s=1.0, echo=table.echo, render=table.render,
                     interval_s=0.25)
    text = out.getvalue()
    assert "started alpha" in text and "stopped beta" in text
    assert text.count("cosmic up ·") >= 3  # redrawn each interval
    # Redrawn in place: the cursor goes back up over the previous table.
    assert "\x1b[1A" in text or "\x1b[A" in text or "\x1b[2K" in text
    last = text[text.rindex("cosmic up ·"):]
    for name in ("alpha", "beta"):
        row = next(line for line in last.splitlines() if name in line)
        assert "running" in row and "steps" in row


def test_plain_mode_prints_one_progress_line_per_interval():
    lines: list[str] = []
    run_services([Counting("alpha")], duration_s=1.0, echo=lines.append, interval_s=0.25)
    progress = [line for line in lines if "alpha:" in line]
    assert len(progress) >= 3 and all("steps" in line for line in progress)


def test_auto_is_live_only_on_a_terminal():
    assert choose("auto", isatty=lambda: True) == "live"
    assert choose("auto", isatty=lambda: False) == "plain"
    assert choose("plain", isatty=lambda: True) == "plain"
