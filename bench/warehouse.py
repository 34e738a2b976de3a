"""Warehouse build throughput: a day of N events through Spark into ClickHouse, beside pandas.

Workload: a private lake holds a history of small days (:data:`HISTORY` days
before day D, :data:`HISTORY_EVENTS` events each, from overlapping pools of
players, so that players return, cohorts differ and the 7- and 30-day windows
hold more than D) and, for each ``--events`` size N, day D itself: 80%
commands (five kinds, from N/50 players drawn out of a pool of N/25), 15%
ticks of 8 worlds, 5% ecosystem and civilization events. Days are generated
hour by hour, so memory holds one hour of events whatever N is.

Each side builds the history days once (untimed), then day D for every size
(timed), into its own private ClickHouse database made by the same migrations:

- **ours**: ``spark-submit jobs/spark/warehouse.py --date D`` as ``cosmic jobs
  run warehouse`` runs it (``--master``, default local[2]): Spark reads D's
  lake files, computes the facts and inserts them, then ClickHouse computes
  the marts from the facts (:mod:`jobs.spark.marts`). Reported end to end
  (JVM start included) and as the build alone (what the job prints).
- **anchor**: one Python process: fastavro reads the same lake files, pandas
  computes the same facts and every mart (DAU/WAU/MAU over their windows,
  retention by cohort, session statistics, world growth, species diversity)
  from D's facts and the history facts it reads back from its own database,
  and clickhouse-driver (the connectors' client) inserts all of them.

Then the two databases are compared for every built day: the row count and
key figures of each fact table and every row of each mart. Per size it prints
events/s of each side and the ratio; then how each side's time per event
scaled against the smallest size, and the size at which Spark's time meets
the anchor's (interpolated between the measured sizes, or said not reached).

Run: ``.venv/bin/python bench/warehouse.py [--events 50000 1000000] [--with-10m]``
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pandas as pd
from report import result

from connectors import clickhouse, stores
from connectors.lake import read_manifest, topic_dir
from cosmic import topics
from cosmic.settings import Settings, child_env, get_settings
from cosmic.timeutil import span_ms
from jobs.spark import submit
from jobs.spark import testing as t
from jobs.spark.definitions import RETENTION_HORIZON, SESSION_GAP
from jobs.spark.warehouse import FACTS
from schemas.catalog import full_name, short_name

DAY = date(2026, 9, 1)
WORLDS = 8
# Days before D that hold history: the eight before it, so that the 7-day window holds six of
# them and the 30-day window two more, and the eve's files are read by D's build too. One
# run of days: one spark-submit (each costs minutes of JVM and session on a loaded machine).
HISTORY = (8, 7, 6, 5, 4, 3, 2, 1)
HISTORY_EVENTS = 5_000
PARTITIONS = 3
TEN_M = 10_000_000
MS_DAY = 86_400_000
MS_HOUR = 3_600_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ONE_MS = timedelta(milliseconds=1)
# Command kinds and their shares; the bodies are what each kind's schema needs.
MIX = (("ApplyImpulse", 0.85), ("SpawnBody", 0.07), ("RemoveBody", 0.04),
       ("SeedSpecies", 0.03), ("FoundCivilization", 0.01))
_V = {"x": 0.0, "y": 0.0, "z": 0.0}
CMD, TICK = topics.COMMANDS.name, topics.PHYSICS_TICKS.name
ECO, CIV = topics.ECOSYSTEM_EVENTS.name, topics.CIVILIZATION_EVENTS.name


# -- the workload -------------------------------------------------------------------------------


def _id(n: int) -> str:
    return str(uuid.UUID(int=n))


def _body(kind: str, i: int, rng: np.random.Generator) -> dict[str, Any]:
    if kind == "ApplyImpulse":
        return {"body_id": i % 100, "dv": _V}
    if kind == "SpawnBody":
        return {"body_id": i, "kind": "PLANET", "mass": 1.0, "radius": 1.0, "position": _V,
                "velocity": _V}
    if kind == "RemoveBody":
        return {"body_id": i % 100}
    if kind == "SeedSpecies":
        return {"planet_id": int(rng.integers(1, 4)), "species_id": int(rng.integers(1, 40)),
                "traits": t.TRAITS, "initial_population": int(rng.integers(10, 1000))}
    return {"planet_id": 1, "civilization_id": i, "name": "Ur"}


def synthetic_day(day: date, n_events: int, players: np.ndarray,
                  seed: int) -> Iterator[dict[str, list[t.Event]]]:
    """About ``n_events`` events of ``day`` by ``players`` (ids), as one chunk per hour."""
    rng = np.random.default_rng(seed)
    n_cmd, n_tick = int(n_events * 0.80), int(n_events * 0.15)
    n_living = n_events - n_cmd - n_tick
    base = int(seed) << 40  # ids (commands, events, civilizations) unique across days
    day0 = int((datetime(day.year, day.month, day.day, tzinfo=UTC) - EPOCH) / ONE_MS)
    # Players play in bursts: a few sittings each, commands seconds to minutes apart.
    who = rng.integers(0, len(players), n_cmd)
    sitting = rng.integers(0, 4, n_cmd)
    start = rng.integers(0, 20 * MS_HOUR, (len(players), 4))
    offset = rng.exponential(20 * 60_000, n_cmd).astype(np.int64)
    times = np.minimum(start[who, sitting] + offset, MS_DAY - 1)
    order = np.argsort(times, kind="stable")
    who, times = players[who[order]], times[order] + day0
    kinds = rng.choice(len(MIX), n_cmd, p=[p for _, p in MIX])
    tick_times = np.sort(rng.integers(0, MS_DAY, n_tick)) + day0
    living_times = np.sort(rng.integers(0, MS_DAY, n_living)) + day0
    living_worlds = rng.integers(0, WORLDS, n_living)
    first_tick = (day - DAY).days * 1_000_000_000 + 1_000_000_000_000
    for h in range(24):
        lo, hi = day0 + h * MS_HOUR, day0 + (h + 1) * MS_HOUR
        chunk: dict[str, list[t.Event]] = {CMD: [], TICK: [], ECO: [], CIV: []}
        a, b = np.searchsorted(times, [lo, hi])
        for i, p, ms, k in zip(range(a, b), who[a:b].tolist(), times[a:b].tolist(),
                               kinds[a:b].tolist(), strict=True):
            name = MIX[k][0]
            chunk[CMD].append({
                "command_id": _id(base + i), "player_id": f"p{p}", "world_id": f"w{p % WORLDS}",
                "client_ts": ms, "received_ts": ms,
                "command": (full_name(name), _body(name, base + i, rng))})
        a, b = np.searchsorted(tick_times, [lo, hi])
        steps = rng.integers(50, 550, b - a).tolist()
        for i, ms, us in zip(range(a, b), tick_times[a:b].tolist(), steps, strict=True):
            ev = t.tick(f"w{i % WORLDS}", first_tick + i // WORLDS, t.at(day), bodies=10 + i // 1000,
                        step_us=us, applied=i % 7)
            ev["ts"] = ms
            chunk[TICK].append(ev)
        a, b = np.searchsorted(living_times, [lo, hi])
        for i, ms in zip(range(a, b), living_times[a:b].tolist(), strict=True):
            w, planet, species = f"w{living_worlds[i]}", 1 + i % 3, int(rng.integers(1, 40))
            eid = _id(base + (1 << 32) + i)
            if i % 10 == 9:
                # A civilization lives in one world; every third event ends one founded before.
                civ = base + i - (30 if i % 30 == 29 else 0)
                w = f"w{civ % WORLDS}"
                body: dict[str, Any] = (
                    {"reason": "famine", "peak_population": 1000} if i % 30 == 29 else
                    {"name": "Ur", "founder_player_id": f"p{players[i % len(players)]}",
                     "species_id": species})
                kind = "CivilizationCollapsed" if i % 30 == 29 else "CivilizationFounded"
                chunk[CIV].append({"event_id": eid, "world_id": w, "planet_id": planet,
                                   "civilization_id": civ, "tick": i, "ts": ms,
                                   "event": (full_name(kind), body)})
            elif i % 25 == 24:
                chunk[ECO].append({"event_id": eid, "world_id": w, "planet_id": planet, "tick": i,
                                   "ts": ms, "event": (full_name("SpeciesExtinct"),
                                                       {"species_id": species, "cause": "cold"})})
            else:
                chunk[ECO].append({"event_id": eid, "world_id": w, "planet_id": planet, "tick": i,
                                   "ts": ms, "event": (full_name("PopulationChanged"), {
                                       "species_id": species, "previous": 100,
                                       "current": int(rng.integers(1, 5000))})})
        yield chunk


def history_players(index: int) -> np.ndarray:
    """History day ``index`` (0 = earliest): 200 players, half of them new that day."""
    return np.arange(index * 100, index * 100 + 200)


def write_day(lake: Path, day: date, n_events: int, players: np.ndarray, seed: int,
              settings: Settings) -> int:
    """One synthetic day into ``lake`` (replacing what the lake held for that day)."""
    for name in (CMD, TICK, ECO, CIV):
        shutil.rmtree(topic_dir(lake, name) / f"date={day.isoformat()}", ignore_errors=True)
    writer = t.LakeWriter(lake, (CMD, TICK, ECO, CIV), partitions=PARTITIONS, settings=settings)
    for chunk in synthetic_day(day, n_events, players, seed):
        for name, events in chunk.items():
            writer.write(name, events)
    return writer.close()


def history_days() -> list[list[date]]:
    """The days both sides build before D, as runs of consecutive days (one submit each)."""
    days = sorted(DAY - timedelta(days=k) for k in HISTORY)
    runs: list[list[date]] = [[days[0]]]
    for d in days[1:]:
        if d - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(d)
        else:
            runs.append([d])
    return runs


# -- the anchor: one process, fastavro + pandas + clickhouse-driver ------------------------------


def _lake_files(lake: Path, topic: str, day: date) -> list[Path]:
    out: list[Path] = []
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        for manifest in sorted(topic_dir(lake, topic).glob(f"date={d}/hour=*/part-*.json")):
            out.append(manifest.with_name(read_manifest(manifest).file))
    return out


def _records(lake: Path, topic: str, day: date) -> Iterator[dict[str, Any]]:
    for path in _lake_files(lake, topic, day):
        with path.open("rb") as fh:
            records: Any = fastavro.reader(fh, return_record_name=True)
            yield from records


def _ms(ts: datetime) -> int:
    return (ts - EPOCH) // ONE_MS


def _hour_s(ts_ms: pd.Series) -> pd.Series:
    return (ts_ms // MS_HOUR) * 3600


def _commands(lake: Path, day: date) -> pd.DataFrame:
    cols: dict[str, list[Any]] = {k: [] for k in ("command_id", "player_id", "world_id", "ts_ms",
                                                  "type", "planet_id", "species_id", "population",
                                                  "diet")}
    for r in _records(lake, CMD, day):
        name, body = r["command"]
        kind = short_name(name)
        cols["command_id"].append(r["command_id"])
        cols["player_id"].append(r["player_id"])
        cols["world_id"].append(r["world_id"])
        cols["ts_ms"].append(_ms(r["received_ts"]))
        cols["type"].append(kind)
        seeded = kind == "SeedSpecies"
        cols["planet_id"].append(body["planet_id"] if seeded else None)
        cols["species_id"].append(body["species_id"] if seeded else None)
        cols["population"].append(body["initial_population"] if seeded else None)
        cols["diet"].append(body["traits"]["diet"] if seeded else None)
    return pd.DataFrame(cols)


def _ticks(lake: Path, day: date) -> pd.DataFrame:
    keep = ("world_id", "tick", "n_applied", "n_rejected", "body_count", "total_energy",
            "step_duration_us")
    cols: dict[str, list[Any]] = {k: [] for k in (*keep, "ts_ms")}
    for r in _records(lake, TICK, day):
        for k in keep:
            cols[k].append(r[k])
        cols["ts_ms"].append(_ms(r["ts"]))
    return pd.DataFrame(cols)


_ECO_COLS = ("species_id", "parent_species_id", "population", "previous_population", "diet",
             "cause")


def _eco_fields(kind: str, b: dict[str, Any]) -> tuple[Any, ...]:
    traits = b.get("traits")
    return (b.get("species_id"), b.get("parent_species_id"),
            b.get("current", b.get("population")), b.get("previous"),
            traits["diet"] if traits else None, b.get("cause"))


def _living(lake: Path, day: date, topic: str, extra: Sequence[str]) -> pd.DataFrame:
    keys = ("world_id", "planet_id", "tick", *(("civilization_id",) if topic == CIV else ()))
    cols: dict[str, list[Any]] = {k: [] for k in ("event_id", *keys, "ts_ms", "event_type",
                                                  *extra)}
    for r in _records(lake, topic, day):
        name, body = r["event"]
        kind = short_name(name)
        for k in keys:
            cols[k].append(r[k])
        cols["event_id"].append(str(r["event_id"]))
        cols["ts_ms"].append(_ms(r["ts"]))
        cols["event_type"].append(kind)
        if topic == ECO:
            values = _eco_fields(kind, body)
        else:
            values = (body.get("name"), body.get("founder_player_id"), body.get("species_id"),
                      body.get("tech"), body.get("level"), body.get("resource"),
                      body.get("amount"), body.get("remaining"), body.get("reason"),
                      body.get("peak_population"))
        for k, v in zip(extra, values, strict=True):
            cols[k].append(v)
    return pd.DataFrame(cols)


_CIV_COLS = ("name", "founder_player_id", "species_id", "tech", "level", "resource", "amount",
             "remaining", "reason", "peak_population")
_COUNTED = {"SpawnBody": "spawn_body", "ApplyImpulse": "apply_impulse",
            "RemoveBody": "remove_body", "SeedSpecies": "seed_species",
            "FoundCivilization": "found_civilization"}


def anchor_facts(lake: Path, day: date) -> dict[str, pd.DataFrame]:
    """Day ``day``'s facts, by table, with the job's columns and rules."""
    lo = int((datetime(day.year, day.month, day.day, tzinfo=UTC) - EPOCH) / ONE_MS)
    hi = lo + MS_DAY
    cmd = _commands(lake, day)
    cmd["command_id"] = cmd["command_id"].map(str)
    in_day = cmd[(cmd.ts_ms >= lo) & (cmd.ts_ms < hi)]
    out: dict[str, pd.DataFrame] = {}

    ph = in_day.assign(hour=_hour_s(in_day.ts_ms))
    for kind, column in _COUNTED.items():
        ph[column] = (ph.type == kind).astype("uint64")
    ph["other_commands"] = (~ph.type.isin(list(_COUNTED))).astype("uint64")
    hourly = ph.groupby(["hour", "world_id", "player_id"], sort=False).agg(
        commands=("ts_ms", "size"), **{c: (c, "sum") for c in (*_COUNTED.values(), "other_commands")},
        first_ms=("ts_ms", "min"), last_ms=("ts_ms", "max")).reset_index()
    hourly.insert(0, "date", day)
    out["wh_player_hourly"] = hourly

    ticks = _ticks(lake, day)
    ticks = ticks[(ticks.ts_ms >= lo) & (ticks.ts_ms < hi)].sort_values("tick")
    ticks["hour"] = _hour_s(ticks.ts_ms)
    g = ticks.groupby(["world_id", "hour"], sort=False)
    th = g.agg(ticks=("tick", "size"), first_tick=("tick", "min"), last_tick=("tick", "max"),
               bodies_last=("body_count", "last"), bodies_max=("body_count", "max"),
               commands_applied=("n_applied", "sum"), commands_rejected=("n_rejected", "sum"),
               energy_last=("total_energy", "last"), step_us_max=("step_duration_us", "max"))
    q = g.step_duration_us.quantile([0.5, 0.9, 0.99]).unstack()
    q.columns = ["step_us_p50", "step_us_p90", "step_us_p99"]
    th = th.join(q).reset_index()
    th.insert(0, "date", day)
    out["wh_world_ticks_hourly"] = th

    eco = _living(lake, day, ECO, _ECO_COLS)
    eco = eco[(eco.ts_ms >= lo) & (eco.ts_ms < hi)].assign(player_id=None)
    seeds = in_day[in_day.type == "SeedSpecies"]
    seeded = pd.DataFrame({
        "event_id": seeds.command_id, "world_id": seeds.world_id, "planet_id": seeds.planet_id,
        "tick": -1, "ts_ms": seeds.ts_ms, "event_type": "SpeciesSeeded",
        "species_id": seeds.species_id, "parent_species_id": None,
        "population": seeds.population, "previous_population": None, "diet": seeds.diet,
        "cause": None, "player_id": seeds.player_id})
    with warnings.catch_warnings():
        # Columns that are all None on one side (no emerged species today): object either way.
        warnings.simplefilter("ignore", FutureWarning)
        eco = pd.concat([eco, seeded], ignore_index=True)
    eco.insert(0, "date", day)
    eco["ts"] = eco.ts_ms // 1000
    out["wh_ecosystem_events"] = eco

    civ = _living(lake, day, CIV, _CIV_COLS)
    civ = civ[(civ.ts_ms >= lo) & (civ.ts_ms < hi)].copy()
    civ.insert(0, "date", day)
    civ["ts"] = civ.ts_ms // 1000
    out["wh_civilization_events"] = civ

    # Sessions (jobs.spark.definitions): a gap over SESSION_GAP starts one; the window looks
    # one gap back and a day ahead, and a session belongs to the day it starts in.
    gap = span_ms(SESSION_GAP)
    win = cmd[(cmd.ts_ms >= lo - gap) & (cmd.ts_ms < hi + MS_DAY)]
    win = win.sort_values(["player_id", "ts_ms"], kind="stable")
    starts = (win.player_id != win.player_id.shift()) | (win.ts_ms.diff() > gap)
    s = win.assign(sid=starts.cumsum()).groupby("sid", sort=False).agg(
        player_id=("player_id", "first"), start_ms=("ts_ms", "min"), end_ms=("ts_ms", "max"),
        commands=("ts_ms", "size"), worlds=("world_id", "nunique"))
    s = s[(s.start_ms >= lo) & (s.start_ms < hi)].reset_index(drop=True)
    s.insert(0, "date", day)
    s["session_start"] = s.start_ms // 1000
    s["session_end"] = s.end_ms // 1000
    s["length_s"] = (s.end_ms - s.start_ms) / 1000.0
    out["wh_sessions"] = s
    return out


def _history(cl: Any, query: str, day: date, columns: Sequence[str]) -> pd.DataFrame:
    rows = stores.clickhouse_execute(cl, query, {"d": day})
    return pd.DataFrame(rows, columns=list(columns))


def _stack(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """History and day D as one frame (an empty side left out: it would only blur dtypes)."""
    kept = [f for f in frames if not f.empty]
    return pd.concat(kept, ignore_index=True) if kept else frames[-1]


def _quantile_exact(values: np.ndarray, level: float) -> float:
    """ClickHouse's quantileExact: the element at floor(level * n) of the sorted values."""
    v = np.sort(values)
    return float(v[min(int(level * len(v)), len(v) - 1)])


def anchor_marts(cl: Any, day: date, facts: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Day ``day``'s marts from its facts and the earlier days' facts in ClickHouse."""
    hourly = facts["wh_player_hourly"]
    active = _stack([
        _history(cl, "SELECT date, player_id, world_id FROM wh_player_hourly WHERE date < %(d)s",
                 day, ("date", "player_id", "world_id")),
        hourly[["date", "player_id", "world_id"]]])
    by_day = active[["date", "player_id"]].drop_duplicates()
    out: dict[str, pd.DataFrame] = {}

    def within(n: int) -> int:
        return by_day[by_day.date >= day - timedelta(days=n - 1)].player_id.nunique()
    out["wh_active_users"] = pd.DataFrame({"date": [day], "dau": [within(1)], "wau": [within(7)],
                                           "mau": [within(30)]})

    first = by_day.groupby("player_id").date.min()
    today = set(by_day[by_day.date == day].player_id)
    cohorts = pd.DataFrame({"cohort_date": first, "active": first.index.isin(list(today))})
    cohorts = cohorts[cohorts.cohort_date >= day - timedelta(days=RETENTION_HORIZON)]
    ret = cohorts.groupby("cohort_date").agg(cohort_size=("active", "size"),
                                             retained=("active", "sum")).reset_index()
    ret.insert(0, "date", day)
    ret.insert(2, "day_n", [(day - c).days for c in ret.cohort_date])
    out["wh_retention"] = ret

    s = facts["wh_sessions"]
    n = len(s)
    lengths = s.length_s.to_numpy()
    players = s.player_id.nunique()
    out["wh_sessions_daily"] = pd.DataFrame([{
        "date": day, "sessions": n, "players": players,
        "sessions_per_player": n / players if n else 0.0,
        "avg_length_s": float(lengths.mean()) if n else 0.0,
        "median_length_s": _quantile_exact(lengths, 0.5) if n else 0.0,
        "p90_length_s": _quantile_exact(lengths, 0.9) if n else 0.0,
        "max_length_s": float(lengths.max()) if n else 0.0,
        "commands": int(s.commands.sum())}])

    eco = _stack([
        _history(cl, "SELECT date, world_id, species_id, planet_id, event_type, ts_ms, population "
                 "FROM wh_ecosystem_events WHERE date < %(d)s AND isNotNull(species_id)", day,
                 ("date", "world_id", "species_id", "planet_id", "event_type", "ts_ms",
                  "population")),
        facts["wh_ecosystem_events"].loc[facts["wh_ecosystem_events"].species_id.notna(),
                                         ["date", "world_id", "species_id", "planet_id",
                                          "event_type", "ts_ms", "population"]]])
    eco["gone"] = eco.event_type == "SpeciesExtinct"
    eco["gone_today"] = eco.gone & (eco.date == day)
    planets = eco.groupby(["world_id", "species_id", "planet_id"]).agg(
        gone=("gone", "max"), gone_today=("gone_today", "max"))
    with_pop = eco[eco.population.notna()].sort_values("ts_ms", kind="stable")
    planets["pop"] = with_pop.groupby(["world_id", "species_id", "planet_id"]).population.last()
    species = planets.groupby(level=[0, 1]).agg(all_gone=("gone", "min"),
                                                gone_today=("gone_today", "max"))

    civ = _stack([
        _history(cl, "SELECT date, world_id, civilization_id, event_type "
                 "FROM wh_civilization_events WHERE date < %(d)s", day,
                 ("date", "world_id", "civilization_id", "event_type")),
        facts["wh_civilization_events"][["date", "world_id", "civilization_id", "event_type"]]])
    civ["collapsed"] = civ.event_type == "CivilizationCollapsed"
    civ["founded_today"] = (civ.event_type == "CivilizationFounded") & (civ.date == day)
    civs = civ.groupby(["world_id", "civilization_id"]).agg(
        collapsed=("collapsed", "max"), founded_today=("founded_today", "max"))

    th = _stack([
        _history(cl, "SELECT world_id, toUInt32(hour), bodies_last FROM wh_world_ticks_hourly "
                 "WHERE date < %(d)s", day, ("world_id", "hour", "bodies_last")).assign(ticks=0),
        facts["wh_world_ticks_hourly"][["world_id", "hour", "bodies_last", "ticks"]]]
    ).sort_values("hour", kind="stable")
    sp = species.reset_index().assign(alive=lambda f: (~f.all_gone.astype(bool)).astype(int),
                                      gone_today=lambda f: f.gone_today.astype(int))
    cv = civs.reset_index().assign(alive=lambda f: (~f.collapsed.astype(bool)).astype(int),
                                   founded_today=lambda f: f.founded_today.astype(int))
    growth = pd.concat([
        th.groupby("world_id").agg(bodies=("bodies_last", "last"), ticks=("ticks", "sum")),
        sp.groupby("world_id").agg(species_seen=("species_id", "size"),
                                   species_alive=("alive", "sum"),
                                   extinctions=("gone_today", "sum")),
        cv.groupby("world_id").agg(civilizations_founded=("founded_today", "sum"),
                                   civilizations_alive=("alive", "sum")),
        hourly.groupby("world_id").agg(active_players=("player_id", "nunique"))],
        axis=1).fillna(0).astype("int64").reset_index(names="world_id")
    growth.insert(0, "date", day)
    out["wh_world_growth"] = growth

    alive = planets.loc[~planets.gone.astype(bool), "pop"].fillna(0).groupby(level=[0, 1]).sum()
    alive = alive[alive > 0].astype("float64")
    g2 = alive.groupby(level=0)
    total = g2.sum()
    div = pd.DataFrame({
        "species": g2.size(), "population": total.astype("int64"),
        "shannon": np.log(total) - g2.apply(lambda v: float((v * np.log(v)).sum())) / total,
        "simpson": 1 - g2.apply(lambda v: float((v * v).sum())) / (total * total)}
    ).reset_index(names="world_id")
    div.insert(0, "date", day)
    out["wh_species_diversity"] = div
    return out


def _columns(cl: Any, table: str) -> list[tuple[str, str]]:
    """(name, type) of each column of ``table``."""
    return [(name, ch_type) for name, ch_type, *_ in
            stores.clickhouse_execute(cl, f"DESCRIBE TABLE {table}")]


def _values(col: pd.Series, ch_type: str) -> list[Any]:
    """A column as the driver takes it for ``ch_type``: None for a missing value, ints for
    integer columns (pandas holds a nullable integer column as floats)."""
    inner = ch_type.removeprefix("Nullable(").removesuffix(")")
    integer = inner.startswith(("Int", "UInt", "DateTime"))
    if col.dtype != object and not col.hasnans and (integer == (col.dtype.kind in "iub")):
        return col.tolist()
    cast = int if integer else float if inner.startswith("Float") else None
    return [None if v is None or (isinstance(v, float) and math.isnan(v))
            else cast(v) if cast else v for v in col.tolist()]


def _insert(cl: Any, table: str, day: date, frame: pd.DataFrame) -> None:
    stores.clickhouse_execute(cl, f"ALTER TABLE {table} DROP PARTITION {day:%Y%m%d}")
    if frame.empty:
        return
    columns = _columns(cl, table)
    data = [_values(frame[name], ch_type) for name, ch_type in columns]
    stores.clickhouse_execute(
        cl, f"INSERT INTO {table} ({', '.join(name for name, _ in columns)}) VALUES", data,
        columnar=True)


def anchor_build(cl: Any, lake: Path, day: date) -> None:
    """Build ``day`` as the job does: its facts, then its marts, each replacing the day."""
    facts = anchor_facts(lake, day)
    for table, frame in facts.items():
        _insert(cl, table, day, frame)
    for table, frame in anchor_marts(cl, day, facts).items():
        _insert(cl, table, day, frame)


# -- ours: spark-submit -------------------------------------------------------------------------


def spark_build(settings: Settings, first: date, last: date,
                driver_memory: str | None) -> tuple[float, float]:
    """(end-to-end seconds, build seconds the job prints, summed over the days)."""
    cmd = submit.command(settings, "warehouse",
                         submit.warehouse_args(first.isoformat(), last.isoformat()),
                         driver_memory=driver_memory)
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env(settings))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"warehouse build failed:\n{r.stderr[-3000:]}")
    built = [float(x) for x in re.findall(r"built in ([0-9.]+)s", r.stdout)]
    return wall, sum(built) if built else wall


# -- both databases compared --------------------------------------------------------------------

# Key figures per fact table and day (floats rounded: Spark and pandas sum in other orders).
FACT_FIGURES = {
    "wh_player_hourly": "count(), uniqExact(player_id), sum(commands), sum(apply_impulse), "
                        "sum(spawn_body), sum(remove_body), sum(seed_species), "
                        "sum(found_civilization), sum(other_commands), sum(first_ms), sum(last_ms)",
    "wh_world_ticks_hourly": "count(), sum(ticks), sum(first_tick), sum(last_tick), "
                             "sum(bodies_last), sum(bodies_max), sum(commands_applied), "
                             "round(sum(step_us_p50), 3), round(sum(step_us_p90), 3), "
                             "round(sum(step_us_p99), 3), sum(step_us_max)",
    "wh_ecosystem_events": "count(), uniqExact(event_id), countIf(event_type = 'SpeciesSeeded'), "
                           "countIf(event_type = 'SpeciesExtinct'), sum(population), "
                           "sum(species_id), sum(ts_ms), countIf(isNotNull(player_id))",
    "wh_civilization_events": "count(), uniqExact(civilization_id), "
                              "countIf(event_type = 'CivilizationCollapsed'), sum(ts_ms), "
                              "countIf(isNotNull(founder_player_id))",
    "wh_sessions": "count(), uniqExact(player_id), sum(commands), sum(end_ms - start_ms), "
                   "sum(worlds), sum(start_ms)",
}


def _rows(cl: Any, table: str) -> list[tuple[Any, ...]]:
    if table in FACT_FIGURES:
        query = f"SELECT date, {FACT_FIGURES[table]} FROM {table} GROUP BY date ORDER BY date"
    else:
        cols = [name for name, _ in _columns(cl, table)]
        query = f"SELECT {', '.join(cols)} FROM {table} ORDER BY {', '.join(cols)}"
    return [tuple(round(v, 6) if isinstance(v, float) else v for v in row)
            for row in stores.clickhouse_execute(cl, query)]


def compare(ours_cl: Any, theirs_cl: Any) -> tuple[dict[str, int], list[str]]:
    """(rows per table on day D, the tables whose figures differ between the databases)."""
    differ = []
    rows = {}
    for table in (*FACTS, "wh_active_users", "wh_retention", "wh_sessions_daily",
                  "wh_world_growth", "wh_species_diversity"):
        a, b = _rows(ours_cl, table), _rows(theirs_cl, table)
        if a != b:
            differ.append(table)
        rows[table] = stores.clickhouse_execute(
            ours_cl, f"SELECT count() FROM {table} WHERE date = %(d)s", {"d": DAY})[0][0]
    return rows, differ


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Result:
    events: int
    lake_events: int  # what D's build reads: the files of D and of its eve
    spark_wall: float
    spark_build: float
    anchor: float
    same: bool


def crossover(sizes: Sequence[int], spark: Sequence[float], anchor: Sequence[float]) -> str:
    """Where Spark's time meets the anchor's, linear in N between measured sizes."""
    d = [s - a for s, a in zip(spark, anchor, strict=True)]
    if d[0] <= 0:
        return f"Spark already ahead at the smallest size ({sizes[0]:,} events)"
    for i in range(len(d) - 1):
        if d[i] > 0 >= d[i + 1]:
            n = sizes[i] + (sizes[i + 1] - sizes[i]) * d[i] / (d[i] - d[i + 1])
            return f"~{n:,.0f} events (between {sizes[i]:,} and {sizes[i + 1]:,})"
    if len(sizes) >= 2:
        # Extrapolated from the two largest: each side's time as a + b*N.
        n0, n1 = sizes[-2], sizes[-1]
        bs = (spark[-1] - spark[-2]) / (n1 - n0)
        ba = (anchor[-1] - anchor[-2]) / (n1 - n0)
        if ba > bs:
            n = n1 + d[-1] / (ba - bs)
            return (f"not reached up to {n1:,} events; the two largest sizes' slopes "
                    f"extrapolate it to ~{n:,.0f}")
        return f"not reached up to {n1:,} events, nor approaching (Spark's slope is steeper)"
    return f"not reached at {sizes[0]:,} events (one size: no slope to extrapolate)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, nargs="+", default=[50_000, 1_000_000])
    parser.add_argument("--with-10m", action="store_true",
                        help=f"add a day of {TEN_M:,} events (generated on the fly)")
    parser.add_argument("--master", default=None, help="spark master (default: settings')")
    parser.add_argument("--driver-memory", default=None,
                        help="spark driver memory (default: settings')")
    parser.add_argument("--keep", action="store_true",
                        help="keep both databases (to look at a difference), printing their names")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.events + ([TEN_M] if args.with_10m else [])))
    base = get_settings()
    if args.master:
        base = base.model_copy(update={"spark": base.spark.model_copy(
            update={"master": args.master})})
    admin = stores.clickhouse_client(base)
    submit.jars(base)  # resolved once, outside the timings
    tag = uuid.uuid4().hex[:8]
    dbs = {side: f"cosmic_bench_{side}_{tag}" for side in ("spark", "pandas")}
    lake = Path(tempfile.mkdtemp(prefix="cosmic-bench-wh-"))
    private = {side: base.model_copy(update={
        "lake_dir": lake, "clickhouse": base.clickhouse.model_copy(update={"database": db})})
        for side, db in dbs.items()}
    clients: dict[str, Any] = {}
    results: list[Result] = []
    try:
        for db in dbs.values():
            admin.execute(f"CREATE DATABASE {db}")
        clickhouse.migrate(private["pandas"])  # the job migrates its own database
        clients = {side: stores.clickhouse_client(s) for side, s in private.items()}
        runs = history_days()
        written = 0
        for i, d in enumerate(sorted(DAY - timedelta(days=k) for k in HISTORY)):
            written += write_day(lake, d, HISTORY_EVENTS, history_players(i), seed=1000 + i,
                                 settings=base)
        print(f"workload: {WORLDS} worlds; history of {written:,} events on days "
              f"D-{', D-'.join(str(k) for k in HISTORY)} ({HISTORY_EVENTS:,} each, 200 players "
              f"a day, 100 of them new); day D = {DAY}: 80% commands "
              f"({', '.join(f'{k} {p:.0%}' for k, p in MIX)}) from N/50 of N/25 players, "
              f"15% ticks, 5% ecosystem/civilization events; {PARTITIONS} partitions; "
              f"spark master {base.spark.master}, driver memory "
              f"{args.driver_memory or base.spark.driver_memory}; "
              f"CPUs {os.cpu_count()}", flush=True)
        t0 = time.perf_counter()
        for run in runs:
            spark_build(private["spark"], run[0], run[-1], args.driver_memory)
        t1 = time.perf_counter()
        for run in runs:
            for d in run:
                anchor_build(clients["pandas"], lake, d)
        print(f"history built (untimed): {sum(len(r) for r in runs)} days, spark-submit "
              f"{t1 - t0:.1f}s, pandas {time.perf_counter() - t1:.1f}s", flush=True)
        for n in sizes:
            players = np.random.default_rng(n).choice(max(2, n // 25), max(1, n // 50),
                                                      replace=False)
            tg = time.perf_counter()
            write_day(lake, DAY, n, players, seed=n, settings=base)
            lake_events = _count(lake)
            gen = time.perf_counter() - tg
            wall, build = spark_build(private["spark"], DAY, DAY, args.driver_memory)
            ta = time.perf_counter()
            anchor_build(clients["pandas"], lake, DAY)
            pandas_s = time.perf_counter() - ta
            rows, differ = compare(clients["spark"], clients["pandas"])
            results.append(Result(n, lake_events, wall, build, pandas_s, not differ))
            au = stores.clickhouse_execute(
                clients["spark"], "SELECT dau, wau, mau FROM wh_active_users WHERE date = %(d)s",
                {"d": DAY})[0]
            print(f"N={n:,}: generated and written in {gen:.1f}s; D's build reads "
                  f"{lake_events:,} events; spark-submit {wall:.1f}s (build {build:.1f}s), "
                  f"pandas {pandas_s:.1f}s; DAU/WAU/MAU {au[0]}/{au[1]}/{au[2]}; rows on D: "
                  + ", ".join(f"{k.removeprefix('wh_')}={v}" for k, v in rows.items())
                  + f"; same tables: {'yes' if not differ else 'NO: ' + ', '.join(differ)}",
                  flush=True)
    finally:
        for cl in clients.values():
            cl.disconnect()
        for db in dbs.values():
            if args.keep:
                print(f"kept database {db}")
            else:
                admin.execute(f"DROP DATABASE IF EXISTS {db}")
        admin.disconnect()
        shutil.rmtree(lake, ignore_errors=True)
    report(results)


def _count(lake: Path) -> int:
    """Events in the files D's build reads (D's folders and its neighbours')."""
    n = 0
    for topic in (CMD, TICK, ECO, CIV):
        for path in _lake_files(lake, topic, DAY):
            with path.open("rb") as fh:
                n += sum(block.num_records for block in fastavro.block_reader(fh))
    return n


def report(results: list[Result]) -> None:
    print()
    print(f"{'events':>11} {'spark e2e ev/s':>15} {'spark build ev/s':>17} {'pandas ev/s':>12} "
          f"{'ratio e2e':>10} {'ratio build':>12}")
    for r in results:
        print(f"{r.events:>11,} {r.events / r.spark_wall:>15,.0f} "
              f"{r.events / r.spark_build:>17,.0f} {r.events / r.anchor:>12,.0f} "
              f"{r.anchor / r.spark_wall:>10.2f} {r.anchor / r.spark_build:>12.2f}")
        big = r.events >= TEN_M
        for what, spark_s in (("end to end", r.spark_wall), ("build only", r.spark_build)):
            result("warehouse", f"day build events/s, {what} (pandas time / Spark time)",
                   f"{r.events:,} events on day D, {'same' if r.same else 'DIFFERENT'} tables",
                   r.events / spark_s, "pandas + fastavro, one process", r.events / r.anchor,
                   r.anchor / spark_s, goal=">= 1x at 10M (issue 19)" if big else None,
                   met=r.anchor / spark_s >= 1 if big else None, unit="events/s")
    print("(ratio: pandas time / Spark time, i.e. Spark's events/s as a multiple of pandas')")
    if not results:
        return
    r0 = results[0]
    print(f"\nscaling: time per event as a multiple of the one at {r0.events:,} events")
    print(f"{'events':>11} {'x events':>9} {'spark e2e':>10} {'spark build':>12} {'pandas':>8}")
    for r in results:
        def per(s: float, s0: float, r: Result = r) -> float:
            return (s / r.events) / (s0 / r0.events)
        print(f"{r.events:>11,} {r.events / r0.events:>9,.0f} {per(r.spark_wall, r0.spark_wall):>10.3f} "
              f"{per(r.spark_build, r0.spark_build):>12.3f} {per(r.anchor, r0.anchor):>8.3f}")
    sizes = [r.events for r in results]
    print("\ncrossover (Spark's time = pandas'):")
    print("  end to end: " + crossover(sizes, [r.spark_wall for r in results],
                                       [r.anchor for r in results]))
    print("  build only: " + crossover(sizes, [r.spark_build for r in results],
                                       [r.anchor for r in results]))
    print("same tables on both sides at every size: "
          + ("yes" if all(r.same for r in results) else "NO"))


if __name__ == "__main__":
    main()
