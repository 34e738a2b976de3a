"""Warehouse build throughput: one day through Spark into ClickHouse, beside pandas.

For each ``--events`` size it writes one synthetic day into a private lake
(commands from ``events/50`` players in 8 worlds, one tick per world per
~second of play, ecosystem and civilization events), then measures in the
same run:

- **ours**: ``spark-submit jobs/spark/warehouse.py`` for that day, as
  ``cosmic jobs run warehouse`` runs it (local[2]): reading the Avro lake,
  the facts, sessions, the ClickHouse inserts and the marts. Reported both
  end to end (JVM start included) and as the build alone (what the job
  prints, the figure a long-running cluster would see).
- **anchor**: one Python process: fastavro reads the same files, pandas
  computes the same facts and marts (player-hours, tick percentiles,
  sessions, DAU/WAU/MAU, retention, session stats, world growth,
  diversity) in memory, writing nothing.

It prints events/s of each and the ratio ours / anchor, checks that both
agree on DAU, sessions and average session length, and notes how each
scales: Spark pays a fixed ~15-20 s (JVM, session, ClickHouse round trips
per table) and then runs on every core, and on a cluster on every node;
pandas starts at once but decodes Avro and groups on one core, in one
process's memory, so its time grows linearly and it stops where memory does.

Run: ``.venv/bin/python bench/warehouse.py [--events 50000 200000]``
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pandas as pd

from connectors import stores
from connectors.lake import read_manifest, topic_dir
from cosmic import topics
from cosmic.settings import Settings, child_env, get_settings
from cosmic.timeutil import to_ms
from jobs.spark import submit
from jobs.spark import testing as t
from jobs.spark.definitions import SESSION_GAP
from schemas.catalog import short_name

DAY = date(2026, 9, 1)
WORLDS = 8


def synthetic_day(n_events: int, seed: int = 7) -> dict[str, list[t.Event]]:
    """About ``n_events`` events of one day: 80% commands, 15% ticks, 5% living events."""
    rng = np.random.default_rng(seed)
    n_cmd = int(n_events * 0.80)
    n_tick = int(n_events * 0.15)
    n_eco = n_events - n_cmd - n_tick
    players = max(1, n_events // 50)
    day0 = to_ms(t.at(DAY))
    # Players play in bursts: a few sittings each, commands seconds to minutes apart.
    who = rng.integers(0, players, n_cmd)
    sitting = rng.integers(0, 4, n_cmd)
    start = rng.integers(0, 20 * 3600_000, (players, 4))
    offset = rng.exponential(20 * 60_000, n_cmd).astype(np.int64)
    times = np.minimum(start[who, sitting] + offset, 86_400_000 - 1) + day0
    cmds = [t.command(f"p{p}", f"w{p % WORLDS}", _dt(ms_), seed=i)
            for i, (p, ms_) in enumerate(zip(who.tolist(), times.tolist(), strict=True))]
    tick_times = np.sort(rng.integers(0, 86_400_000, n_tick)) + day0
    ticks = [t.tick(f"w{i % WORLDS}", i // WORLDS, _dt(ms_), bodies=10 + i // 1000,
                    step_us=int(50 + rng.integers(0, 500)))
             for i, ms_ in enumerate(tick_times.tolist())]
    eco: list[t.Event] = []
    civ: list[t.Event] = []
    eco_times = np.sort(rng.integers(0, 86_400_000, n_eco)) + day0
    for i, ms_ in enumerate(eco_times.tolist()):
        w, species = f"w{i % WORLDS}", int(rng.integers(1, 40))
        if i % 10 == 9:
            civ.append(t.founded(w, 1, i, _dt(ms_), founder=f"p{i % players}"))
        elif i % 25 == 24:
            eco.append(t.extinct(w, 1, _dt(ms_), species))
        else:
            eco.append(t.population(w, 1, _dt(ms_), species, 100, int(rng.integers(1, 5000))))
    return {topics.COMMANDS.name: cmds, topics.PHYSICS_TICKS.name: ticks,
            topics.ECOSYSTEM_EVENTS.name: eco, topics.CIVILIZATION_EVENTS.name: civ}


def _dt(ms_: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms_ / 1000, tz=UTC)


# -- the anchor: one process, fastavro + pandas ------------------------------------------------


def _read(lake: Path, topic: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for d in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)):
        for manifest in sorted(topic_dir(lake, topic).glob(f"date={d}/hour=*/part-*.json")):
            with manifest.with_name(read_manifest(manifest).file).open("rb") as fh:
                out.extend(fastavro.reader(fh, return_record_name=True))
    return out


def _kind(value: tuple[str, dict[str, Any]]) -> str:
    return short_name(value[0])


def anchor(lake: Path) -> dict[str, Any]:
    """The day's facts and marts in pandas; the figures compared with ours."""
    lo = pd.Timestamp(DAY, tz="UTC")
    hi = lo + pd.Timedelta(days=1)
    cmd_raw = _read(lake, topics.COMMANDS.name)
    cmd = pd.DataFrame({
        "player_id": [r["player_id"] for r in cmd_raw],
        "world_id": [r["world_id"] for r in cmd_raw],
        "ts": pd.to_datetime([r["received_ts"] for r in cmd_raw], utc=True),
        "type": [_kind(r["command"]) for r in cmd_raw]})
    cmd["ts_ms"] = cmd["ts"].astype("int64") // 1_000_000
    day_cmd = cmd[(cmd.ts >= lo) & (cmd.ts < hi)].copy()
    day_cmd["hour"] = day_cmd.ts.dt.floor("h")
    hourly = day_cmd.groupby(["hour", "world_id", "player_id"]).agg(
        commands=("type", "size"), first_ms=("ts_ms", "min"), last_ms=("ts_ms", "max"))
    by_type = pd.crosstab([day_cmd.hour, day_cmd.world_id, day_cmd.player_id], day_cmd.type)
    hourly = hourly.join(by_type)

    tick_raw = _read(lake, topics.PHYSICS_TICKS.name)
    ticks = pd.DataFrame(tick_raw)
    ticks["ts"] = pd.to_datetime(ticks["ts"], utc=True)
    ticks = ticks[(ticks.ts >= lo) & (ticks.ts < hi)].sort_values("tick")
    ticks["hour"] = ticks.ts.dt.floor("h")
    tick_groups = ticks.groupby(["world_id", "hour"])
    ticks_hourly = tick_groups.agg(ticks=("tick", "size"), first_tick=("tick", "min"),
                                   last_tick=("tick", "max"), bodies_last=("body_count", "last"),
                                   bodies_max=("body_count", "max"),
                                   step_us_max=("step_duration_us", "max"))
    quantiles = tick_groups.step_duration_us.quantile([0.5, 0.9, 0.99]).unstack()
    ticks_hourly = ticks_hourly.join(quantiles)

    eco_raw = _read(lake, topics.ECOSYSTEM_EVENTS.name)
    eco = pd.DataFrame({
        "world_id": [r["world_id"] for r in eco_raw],
        "planet_id": [r["planet_id"] for r in eco_raw],
        "ts_ms": [r["ts"].timestamp() * 1000 for r in eco_raw],
        "type": [_kind(r["event"]) for r in eco_raw],
        "species_id": [r["event"][1].get("species_id") for r in eco_raw],
        "population": [r["event"][1].get("current") for r in eco_raw]})
    civ = pd.DataFrame([{"world_id": r["world_id"], "civilization_id": r["civilization_id"],
                         "type": _kind(r["event"])}
                        for r in _read(lake, topics.CIVILIZATION_EVENTS.name)])

    # Sessions: the rule of jobs.spark.definitions, vectorised.
    gap_ms = int(SESSION_GAP.total_seconds() * 1000)
    win = cmd[(cmd.ts_ms >= int(lo.timestamp() * 1000) - gap_ms) & (cmd.ts < hi + pd.Timedelta(days=1))]
    win = win.sort_values(["player_id", "ts_ms"])
    starts = (win.player_id != win.player_id.shift()) | (win.ts_ms.diff() > gap_ms)
    win = win.assign(sid=starts.cumsum())
    sessions = win.groupby("sid").agg(player_id=("player_id", "first"), start_ms=("ts_ms", "min"),
                                      end_ms=("ts_ms", "max"), commands=("ts_ms", "size"),
                                      worlds=("world_id", "nunique"))
    sessions = sessions[(sessions.start_ms >= lo.timestamp() * 1000)
                        & (sessions.start_ms < hi.timestamp() * 1000)]
    length = (sessions.end_ms - sessions.start_ms) / 1000.0

    # Marts (the lake holds one day, so the windows and cohorts hold just it).
    players = day_cmd.player_id.unique()
    dau = len(players)
    alive = eco.groupby(["world_id", "species_id", "planet_id"]).agg(
        gone=("type", lambda s: (s == "SpeciesExtinct").any()),
        pop=("population", "last"))
    living = alive[~alive.gone].groupby(["world_id", "species_id"]).pop.sum()
    living = living[living > 0]
    shares = living / living.groupby(level=0).transform("sum")
    diversity = pd.DataFrame({
        "species": living.groupby(level=0).size(),
        "shannon": -(shares * np.log(shares)).groupby(level=0).sum(),
        "simpson": 1 - (shares ** 2).groupby(level=0).sum()})
    growth = pd.DataFrame({
        "bodies": ticks.groupby("world_id").body_count.last(),
        "ticks": ticks.groupby("world_id").size(),
        "species_seen": alive.reset_index().groupby("world_id").species_id.nunique(),
        "civilizations": civ.groupby("world_id").civilization_id.nunique(),
        "players": day_cmd.groupby("world_id").player_id.nunique()})
    return {"dau": dau, "wau": dau, "mau": dau, "retention_day0": (dau, dau),
            "sessions": len(sessions), "avg_length_s": float(length.mean()),
            "p90_length_s": float(np.quantile(length, 0.9, method="higher")),
            "rows": (len(hourly), len(ticks_hourly), len(diversity), len(growth))}


# -- ours: spark-submit -------------------------------------------------------------------------


def ours(settings: Settings, lake: Path, database: str) -> tuple[float, float, dict[str, Any]]:
    """(end-to-end seconds, build seconds as the job reports, figures from ClickHouse)."""
    private = settings.model_copy(update={
        "lake_dir": lake, "clickhouse": settings.clickhouse.model_copy(update={"database": database})})
    cmd = submit.command(private, "warehouse", submit.warehouse_args(DAY.isoformat()))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env(private))
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"warehouse build failed:\n{r.stderr[-3000:]}")
    built = re.search(r"built in ([0-9.]+)s", r.stdout)
    cl = stores.clickhouse_client(private)
    try:
        dau, wau, mau = cl.execute("SELECT dau, wau, mau FROM wh_active_users WHERE date = %(d)s",
                                   {"d": DAY})[0]
        sessions, avg, p90 = cl.execute(
            "SELECT sessions, avg_length_s, p90_length_s FROM wh_sessions_daily "
            "WHERE date = %(d)s", {"d": DAY})[0]
    finally:
        cl.disconnect()
    return wall, float(built.group(1)) if built else wall, {
        "dau": dau, "wau": wau, "mau": mau, "sessions": sessions, "avg_length_s": avg,
        "p90_length_s": p90}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, nargs="+", default=[50_000, 200_000])
    args = parser.parse_args(argv)
    settings = get_settings()
    admin = stores.clickhouse_client(settings)
    submit.jars(settings)  # resolve once, outside the timings
    results = []
    try:
        for n in args.events:
            with tempfile.TemporaryDirectory(prefix="cosmic-bench-wh-") as tmp:
                lake = Path(tmp)
                written = t.write_lake(lake, synthetic_day(n), partitions=3, settings=settings)
                database = f"cosmic_bench_{uuid.uuid4().hex[:8]}"
                admin.execute(f"CREATE DATABASE {database}")
                try:
                    wall, build, mine = ours(settings, lake, database)
                finally:
                    admin.execute(f"DROP DATABASE IF EXISTS {database}")
                t0 = time.perf_counter()
                theirs = anchor(lake)
                pandas_s = time.perf_counter() - t0
            same = (mine["dau"] == theirs["dau"] and mine["sessions"] == theirs["sessions"]
                    and abs(mine["avg_length_s"] - theirs["avg_length_s"]) < 1e-6
                    and mine["p90_length_s"] == theirs["p90_length_s"])
            results.append((written, wall, build, pandas_s, same))
            print(f"{written:,} events: spark-submit {wall:.1f}s (build {build:.1f}s), "
                  f"pandas {pandas_s:.1f}s; DAU {mine['dau']}, sessions {mine['sessions']}; "
                  f"same marts: {'yes' if same else 'NO'}", flush=True)
    finally:
        admin.disconnect()
    print()
    print(f"{'events':>9} {'ours e2e ev/s':>14} {'ours build ev/s':>16} {'pandas ev/s':>12} "
          f"{'ratio e2e':>10} {'ratio build':>12}")
    for written, wall, build, pandas_s, _ in results:
        print(f"{written:>9,} {written / wall:>14,.0f} {written / build:>16,.0f} "
              f"{written / pandas_s:>12,.0f} {pandas_s / wall:>10.2f} {pandas_s / build:>12.2f}")
    if len(results) >= 2:
        (n0, w0, b0, p0, _), (n1, w1, b1, p1, _) = results[0], results[-1]
        print(f"\nscaling {n0:,} -> {n1:,} events (x{n1 / n0:.1f}): spark-submit x{w1 / w0:.2f}, "
              f"build x{b1 / b0:.2f}, pandas x{p1 / p0:.2f}")
    print("Spark's cost is mostly fixed (JVM, session, one ClickHouse round trip per table) and "
          "its work spreads over every core (a cluster: every node); pandas grows linearly on "
          "one core and holds the whole day in one process's memory.")


if __name__ == "__main__":
    main()
