"""Window math of the live-metrics job, free of Flink so it can be tested and reused.

The job (:mod:`jobs.flink.live_metrics`) keeps each world's events in Flink
keyed state and calls :func:`window_metrics` whenever a window fires; the
benchmark's plain-Python consumer calls the same function, so both compute the
same numbers by construction and the comparison measures only the engine.

Events are small named tuples, one type per source record, each starting with
``(world_id, ts_ms)``. Rates are per second of window; percentiles are
nearest-rank (always an observed value, so they are exact and reproducible).
Gauges (population, living civilizations) carry over from window to window:
the value a window reports is the state after every event before its end.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple


class Tick(NamedTuple):
    world_id: str
    ts_ms: int
    step_us: int
    n_applied: int
    n_rejected: int


class Command(NamedTuple):
    world_id: str
    ts_ms: int
    command_type: str  # the body's record name: SpawnBody, ApplyImpulse, ...
    player_id: str


class Rejection(NamedTuple):
    world_id: str
    ts_ms: int
    reason: str


class Population(NamedTuple):
    """A species' population on a planet is now ``population``; species None: the planet died."""

    world_id: str
    ts_ms: int
    tick: int
    planet_id: int
    species_id: int | None
    population: int


class Civilization(NamedTuple):
    world_id: str
    ts_ms: int
    tick: int
    civilization_id: int
    alive: bool  # founded: True; collapsed: False


Event = Tick | Command | Rejection | Population | Civilization


class MetricRow(NamedTuple):
    """One value of one metric for one world over one window; the table's primary key is
    (name, world_id, label, window_start_ms)."""

    name: str
    world_id: str
    label: str
    window_start_ms: int
    window_end_ms: int
    value: float


def window_start(ts_ms: int, size_ms: int) -> int:
    """Start of the tumbling window holding ``ts_ms`` (epoch-aligned, like Flink's)."""
    return ts_ms - ts_ms % size_ms


def is_too_late(ts_ms: int, watermark_ms: int, size_ms: int, lateness_ms: int) -> bool:
    """Flink's rule: dropped once the watermark reached the window's last millisecond
    plus the allowed lateness (the window's state is gone by then)."""
    last = window_start(ts_ms, size_ms) + size_ms - 1
    return last + lateness_ms <= watermark_ms


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (p in (0, 100])."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return float(sorted_values[rank - 1])


def _order(ev: Event) -> tuple[int, int]:
    # Gauge events are applied in event-time order, ties broken by tick.
    return (ev.ts_ms, getattr(ev, "tick", 0))


@dataclass
class Gauges:
    """A world's population per (planet, species) and its living civilizations."""

    populations: dict[tuple[int, int], int] = field(default_factory=dict)
    civilizations: set[int] = field(default_factory=set)
    seen_ecosystem: bool = False
    seen_civilization: bool = False

    def copy(self) -> Gauges:
        return Gauges(dict(self.populations), set(self.civilizations),
                      self.seen_ecosystem, self.seen_civilization)

    def apply(self, events: Iterable[Event]) -> None:
        for ev in sorted((e for e in events if isinstance(e, Population | Civilization)),
                         key=_order):
            if isinstance(ev, Population):
                self.seen_ecosystem = True
                if ev.species_id is None:
                    for key in [k for k in self.populations if k[0] == ev.planet_id]:
                        del self.populations[key]
                else:
                    self.populations[(ev.planet_id, ev.species_id)] = ev.population
            else:
                self.seen_civilization = True
                if ev.alive:
                    self.civilizations.add(ev.civilization_id)
                else:
                    self.civilizations.discard(ev.civilization_id)

    @property
    def total_population(self) -> int:
        return sum(self.populations.values())


def window_metrics(world_id: str, start_ms: int, size_ms: int, events: Sequence[Event],
                   gauges: Gauges | None = None) -> list[MetricRow]:
    """Every metric of one world's window. ``gauges`` is the state after every event
    before the window's end (None: no gauge rows)."""
    end = start_ms + size_ms
    per_s = 1000.0 / size_ms
    rows: list[MetricRow] = []

    def add(name: str, value: float, label: str = "") -> None:
        rows.append(MetricRow(name, world_id, label, start_ms, end, float(value)))

    ticks = [e for e in events if isinstance(e, Tick)]
    commands = [e for e in events if isinstance(e, Command)]
    rejections = [e for e in events if isinstance(e, Rejection)]

    add("physics.ticks_per_s", len(ticks) * per_s)
    if ticks:
        steps = sorted(t.step_us for t in ticks)
        for p in (50, 95, 99):
            add(f"physics.step_duration_us.p{p}", percentile(steps, p))
        considered = sum(t.n_applied + t.n_rejected for t in ticks)
        if considered:
            # From the ticks, not from counting two topics: numerator and denominator
            # are the same commands, whichever window their rejections land in.
            add("commands.rejected_ratio", sum(t.n_rejected for t in ticks) / considered)
    add("commands.per_s", len(commands) * per_s, "all")
    by_type: dict[str, int] = {}
    for c in commands:
        by_type[c.command_type] = by_type.get(c.command_type, 0) + 1
    for kind, n in sorted(by_type.items()):
        add("commands.per_s", n * per_s, kind)
    add("players.active", len({c.player_id for c in commands}))
    by_reason: dict[str, int] = {}
    for r in rejections:
        by_reason[r.reason] = by_reason.get(r.reason, 0) + 1
    for reason, n in sorted(by_reason.items()):
        add("commands.rejections_per_s", n * per_s, reason)
    if gauges is not None:
        if gauges.seen_ecosystem:
            add("ecosystem.population", gauges.total_population)
        if gauges.seen_civilization:
            add("civilization.count", len(gauges.civilizations))
    return rows


def compute_all(events: Iterable[Event], size_ms: int) -> list[MetricRow]:
    """Every window of every world over a complete, finite event list (no lateness):
    the reference the tests and the benchmark compare the job with."""
    by_world: dict[str, dict[int, list[Event]]] = {}
    for ev in events:
        by_world.setdefault(ev.world_id, {}).setdefault(window_start(ev.ts_ms, size_ms),
                                                         []).append(ev)
    rows: list[MetricRow] = []
    for world, windows in sorted(by_world.items()):
        gauges = Gauges()
        for start in sorted(windows):
            gauges.apply(windows[start])
            rows.extend(window_metrics(world, start, size_ms, windows[start], gauges))
    return rows
