"""The analyst guide's data set, and its warehouse facts without Spark.

:func:`scenario` is the history the warehouse tests build (four players over
October 2026); ``runbooks/analyst-guide.md`` shows what its queries return on it.
:func:`facts` gives the rows the Spark job writes into the fact tables for one
day of it, computed in plain Python from the same rules (hourly counts, exact
percentiles with linear interpolation, the seeding commands as ``SpeciesSeeded``,
sessions from :func:`jobs.spark.definitions.split_sessions`), so the ClickHouse
side of a build can run on any engine in seconds. The guide's documented rows,
which the Spark build is checked against, check these facts too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from cosmic import topics
from jobs.spark import definitions
from jobs.spark import testing as t
from schemas.catalog import short_name

GUIDE = Path(__file__).resolve().parents[2] / "runbooks" / "analyst-guide.md"
D0 = date(2026, 10, 1)
D1, D2, D7, D8, D14, D30 = (D0 + timedelta(days=n) for n in (1, 2, 7, 8, 14, 30))
DAYS = t.days(D0, 31)


def scenario() -> dict[str, list[t.Event]]:
    """alice and bob start on D0, carol on D1, dave on D7; bob comes back on D30."""
    cmds = [
        # alice, D0: 10:00 (w2), 10:10 seed, 10:40 (gap of exactly 30 min: same session),
        # 11:20 (40 min: new session), 11:25 -> sessions of 2400 s and 300 s.
        t.command("alice", "w2", t.at(D0, 10, 0)),
        t.seed_species("alice", "w1", t.at(D0, 10, 10), planet=5, species=7, population=100),
        t.command("alice", "w1", t.at(D0, 10, 40)),
        t.command("alice", "w1", t.at(D0, 11, 20)),
        t.command("alice", "w1", t.at(D0, 11, 25)),
        # bob, D0 23:50 -> D1 00:15: one 1500 s session, counted on D0 (it starts there).
        t.command("bob", "w1", t.at(D0, 23, 50)),
        t.command("bob", "w1", t.at(D1, 0, 15)),
        # alice, D1 00:05: 12 h after her last command, a new 0 s session.
        t.command("alice", "w1", t.at(D1, 0, 5)),
        # carol, D1 09:00 (0 s session) and 23:50 -> D2 00:10 -> 00:30 (2400 s, from D1).
        t.command("carol", "w1", t.at(D1, 9, 0)),
        t.command("carol", "w1", t.at(D1, 23, 50)),
        t.command("carol", "w1", t.at(D2, 0, 10)),
        t.command("carol", "w1", t.at(D2, 0, 30)),
        # D7: alice once; dave's first day, 12:00 and 12:20 (1200 s).
        t.command("alice", "w1", t.at(D7, 12, 0)),
        t.command("dave", "w1", t.at(D7, 12, 0)),
        t.command("dave", "w1", t.at(D7, 12, 20)),
        # D30: bob returns.
        t.command("bob", "w1", t.at(D30, 10, 0)),
    ]
    ticks = [t.tick("w1", n, t.at(D0, 10, 0, n), bodies=b, step_us=us)
             for n, b, us in ((1, 3, 100), (2, 3, 200), (3, 4, 300), (4, 5, 400))]
    eco = [
        t.population("w1", 5, t.at(D0, 12), species=7, previous=100, current=300),
        t.emerged("w1", 5, t.at(D0, 13), species=8, parent=7, pop=100),
        t.extinct("w1", 5, t.at(D1, 8), species=8),
    ]
    civ = [
        t.founded("w1", 5, 1, t.at(D0, 14), name="Ur", founder="alice", species=7),
        t.collapsed("w1", 5, 1, t.at(D7, 9)),
    ]
    return {topics.COMMANDS.name: cmds, topics.PHYSICS_TICKS.name: ticks,
            topics.ECOSYSTEM_EVENTS.name: eco, topics.CIVILIZATION_EVENTS.name: civ}


Rows = Iterator[tuple[list[str], list[tuple[Any, ...]]]]
_TYPED = {"SpawnBody": "spawn_body", "ApplyImpulse": "apply_impulse",
          "RemoveBody": "remove_body", "SeedSpecies": "seed_species",
          "FoundCivilization": "found_civilization"}


def _day(ms: int) -> date:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).date()


def _hour(ms: int) -> int:
    return ms // 3_600_000 * 3600


def _percentile(values: list[int], q: float) -> float:
    """Spark's ``percentile``: exact, linear interpolation between closest ranks."""
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _once(columns: list[str], rows: list[tuple[Any, ...]]) -> Rows:
    if rows:
        yield columns, rows


def facts(events: dict[str, list[t.Event]], day: date) -> dict[str, Rows]:
    """The five fact tables' rows of ``day``, in batches as ``write_day`` takes them."""
    cmds = events[topics.COMMANDS.name]
    today = [c for c in cmds if _day(c["received_ts"]) == day]
    return {
        "wh_player_hourly": _player_hourly(today, day),
        "wh_world_ticks_hourly": _ticks_hourly(
            [k for k in events[topics.PHYSICS_TICKS.name] if _day(k["ts"]) == day], day),
        "wh_ecosystem_events": _ecosystem(
            [e for e in events[topics.ECOSYSTEM_EVENTS.name] if _day(e["ts"]) == day], today, day),
        "wh_civilization_events": _civilization(
            [e for e in events[topics.CIVILIZATION_EVENTS.name] if _day(e["ts"]) == day], day),
        "wh_sessions": _sessions(cmds, day),
    }


def _player_hourly(today: list[t.Event], day: date) -> Rows:
    groups: dict[tuple[int, str, str], list[t.Event]] = {}
    for c in today:
        groups.setdefault((_hour(c["received_ts"]), c["world_id"], c["player_id"]), []).append(c)
    rows = []
    for (hour, world, player), cs in sorted(groups.items()):
        kinds = [short_name(c["command"][0]) for c in cs]
        times = [c["received_ts"] for c in cs]
        rows.append((day, hour, world, player, len(cs), *(kinds.count(k) for k in _TYPED),
                     sum(1 for k in kinds if k not in _TYPED), min(times), max(times)))
    return _once(["date", "hour", "world_id", "player_id", "commands", *_TYPED.values(),
                  "other_commands", "first_ms", "last_ms"], rows)


def _ticks_hourly(ticks: list[t.Event], day: date) -> Rows:
    groups: dict[tuple[int, str], list[t.Event]] = {}
    for k in ticks:
        groups.setdefault((_hour(k["ts"]), k["world_id"]), []).append(k)
    rows = []
    for (hour, world), ks in sorted(groups.items()):
        last = max(ks, key=lambda k: k["tick"])
        steps = [k["step_duration_us"] for k in ks]
        rows.append((day, hour, world, len(ks), min(k["tick"] for k in ks), last["tick"],
                     last["body_count"], max(k["body_count"] for k in ks),
                     sum(k["n_applied"] for k in ks), sum(k["n_rejected"] for k in ks),
                     last["total_energy"], _percentile(steps, 0.5), _percentile(steps, 0.9),
                     _percentile(steps, 0.99), max(steps)))
    return _once(["date", "hour", "world_id", "ticks", "first_tick", "last_tick", "bodies_last",
                  "bodies_max", "commands_applied", "commands_rejected", "energy_last",
                  "step_us_p50", "step_us_p90", "step_us_p99", "step_us_max"], rows)


def _ecosystem(eco: list[t.Event], today: list[t.Event], day: date) -> Rows:
    rows = []
    for e in eco:
        kind, body = short_name(e["event"][0]), e["event"][1]
        rows.append((day, e["ts"] // 1000, e["ts"], e["world_id"], e["planet_id"], e["tick"],
                     kind, body.get("species_id"), body.get("parent_species_id"),
                     body.get("current", body.get("population")), body.get("previous"),
                     (body.get("traits") or {}).get("diet") if kind == "SpeciesEmerged" else None,
                     body.get("cause"), None, e["event_id"]))
    for c in today:
        kind, body = short_name(c["command"][0]), c["command"][1]
        if kind == "SeedSpecies":
            rows.append((day, c["received_ts"] // 1000, c["received_ts"], c["world_id"],
                         body["planet_id"], -1, "SpeciesSeeded", body["species_id"], None,
                         body["initial_population"], None, body["traits"]["diet"], None,
                         c["player_id"], c["command_id"]))
    return _once(["date", "ts", "ts_ms", "world_id", "planet_id", "tick", "event_type",
                  "species_id", "parent_species_id", "population", "previous_population",
                  "diet", "cause", "player_id", "event_id"], rows)


def _civilization(civ: list[t.Event], day: date) -> Rows:
    rows = []
    for e in civ:
        kind, body = short_name(e["event"][0]), e["event"][1]
        rows.append((day, e["ts"] // 1000, e["ts"], e["world_id"], e["planet_id"],
                     e["civilization_id"], e["tick"], kind,
                     *(body.get(k) for k in ("name", "founder_player_id", "species_id", "tech",
                                             "level", "resource", "amount", "remaining",
                                             "reason", "peak_population")),
                     e["event_id"]))
    return _once(["date", "ts", "ts_ms", "world_id", "planet_id", "civilization_id", "tick",
                  "event_type", "name", "founder_player_id", "species_id", "tech", "level",
                  "resource", "amount", "remaining", "reason", "peak_population", "event_id"],
                 rows)


def _sessions(cmds: list[t.Event], day: date) -> Rows:
    by_player: dict[str, list[t.Event]] = {}
    for c in cmds:
        by_player.setdefault(c["player_id"], []).append(c)
    rows = []
    for player, cs in sorted(by_player.items()):
        for s in definitions.split_sessions(c["received_ts"] for c in cs):
            if _day(s.start_ms) != day:
                continue
            worlds = {c["world_id"] for c in cs if s.start_ms <= c["received_ts"] <= s.end_ms}
            rows.append((day, player, s.start_ms // 1000, s.end_ms // 1000, s.start_ms,
                         s.end_ms, s.length_s, s.commands, len(worlds)))
    return _once(["date", "player_id", "session_start", "session_end", "start_ms", "end_ms",
                  "length_s", "commands", "worlds"], rows)


def guide_examples() -> list[tuple[str, str, list[tuple[str, ...]]]]:
    """(title, SQL, expected rows as text) for every example in the analyst guide."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.findall(r"^### ([^\n]+)\n\n```sql\n(.*?)```\n\n```text\n(.*?)```",
                       text, flags=re.S | re.M)
    return [(title, sql, [tuple(line.split("\t")) for line in rows.strip("\n").split("\n")
                          if line]) for title, sql, rows in found]


def fmt(value: object) -> str:
    """A value as the guide prints it (clickhouse-client's tab-separated text)."""
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)
