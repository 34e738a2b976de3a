"""The warehouse's definitions, as plain Python: sessions and retention cohorts.

The Spark job computes these with SQL at scale; this module states the same
rules over small in-memory data, so unit tests pin them down and the
single-process benchmark anchor and the integration tests compute expected
numbers from one definition.

A **session** is a player's run of commands (any world) in which no two
consecutive commands are more than :data:`SESSION_GAP` apart; a gap of
exactly 30 minutes still continues the session. Its length is last command
minus first command (a one-command session lasts 0 s). A session belongs to
the UTC day it starts in.

A player's **cohort** is the UTC day of their first command. **Day-N
retention** of a cohort is the share of its players who sent a command on
cohort day + N (exactly that day, not "by" that day).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

from cosmic.timeutil import span_ms

SESSION_GAP = timedelta(minutes=30)
# wh_retention keeps every day 0..30 for each cohort, so any curve can be drawn.
RETENTION_HORIZON = 30


@dataclass(frozen=True, slots=True)
class Session:
    start_ms: int
    end_ms: int
    commands: int

    @property
    def length_s(self) -> float:
        return (self.end_ms - self.start_ms) / 1000.0


def split_sessions(times_ms: Iterable[int], gap: timedelta = SESSION_GAP) -> list[Session]:
    """One player's command times (any order) split into sessions, in time order."""
    gap_ms = span_ms(gap)
    out: list[Session] = []
    start = last = count = None
    for t in sorted(times_ms):
        if last is not None and t - last <= gap_ms:
            last, count = t, (count or 0) + 1
            continue
        if start is not None and last is not None and count is not None:
            out.append(Session(start, last, count))
        start, last, count = t, t, 1
    if start is not None and last is not None and count is not None:
        out.append(Session(start, last, count))
    return out


def cohorts(active_days: Mapping[str, Iterable[date]]) -> dict[date, set[str]]:
    """Players by cohort (their first active day)."""
    out: dict[date, set[str]] = {}
    for player, days in active_days.items():
        first = min(days, default=None)
        if first is not None:
            out.setdefault(first, set()).add(player)
    return out


def retained(active_days: Mapping[str, Iterable[date]], cohort: date, n: int) -> tuple[int, int]:
    """(cohort size, players of the cohort active exactly ``n`` days after it)."""
    sets = {p: set(d) for p, d in active_days.items()}
    members = cohorts(sets).get(cohort, set())
    day = cohort + timedelta(days=n)
    return len(members), sum(1 for p in members if day in sets[p])


def active_users(active_days: Mapping[str, Iterable[date]], day: date) -> tuple[int, int, int]:
    """(DAU, WAU, MAU) for ``day``: distinct players active on it, in the 7 and the 30
    days ending with it."""
    def within(n: int) -> int:
        lo = day - timedelta(days=n - 1)
        return sum(1 for days in active_days.values() if any(lo <= d <= day for d in days))
    return within(1), within(7), within(30)
