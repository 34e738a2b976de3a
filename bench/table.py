"""The README's performance table, regenerated from the benches' own results.

Runs the chosen benches one at a time (never in parallel: they share the
cores they measure) in a quick mode each, with ``COSMIC_BENCH_RESULTS`` set so
each appends its headline results (``bench/report.py``) to one JSONL file,
then rewrites the README between :data:`BEGIN` and :data:`END` from that file.

    scripts/bench-table                         # every bench, quick flags
    scripts/bench-table --only serde --only nbody
    scripts/bench-table --from bench/results.jsonl   # render only, run nothing

The JSONL file (``--results``, default ``bench/results.jsonl``) keeps what a run
measured: a run of some benches (``--only``) replaces those benches' lines and
keeps the others', so the table always shows every bench, each with the run
that measured it. A bench with no line in the file is shown as not run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BEGIN = "<!-- bench-table:begin -->"
END = "<!-- bench-table:end -->"
ENV = "COSMIC_BENCH_RESULTS"  # the same name as report.ENV; bench/ is not a package

# Each bench's own flags for a short run, cheapest first. The figures are ratios
# to an anchor measured in the same run, so a short run shifts them less than it
# shifts absolute rates; the workload column says what each one ran.
QUICK: dict[str, list[str]] = {
    "serde": ["--seconds", "0.5", "--repeats", "3"],
    "gateway": ["--ticks", "20", "--websocket", "1000"],  # ~30 s with the sockets
    "auth": ["--tokens", "1000", "--commands", "2000", "--rounds", "3"],
    "nbody": ["--quick", "--no-memory"],
    "nbody_gpu": [],
    "worlds": ["--worlds", "100", "1000", "--seconds", "5"],
    "sinks": ["--rows", "20000", "--repeats", "2"],
    "worker": ["--seconds", "10"],
    "replay": ["--sizes", "1000,10000", "--ticks", "90"],
    "agents": ["--worlds", "3", "--ticks", "600"],
    "scale": ["--commands", "20000"],  # shorter backlogs drain in ~1 s: too short a window
    "observability": ["--windows", "6", "--window-seconds", "2"],  # ~70 s: 2 cores shared
    "flink_metrics": ["--events", "50000"],
    "viewer": ["--bodies", "1000", "5000", "--frames", "20"],
    "warehouse": ["--events", "50000", "200000"],
}


# ---------------------------------------------------------------- rendering (pure)

def load(lines: Iterable[str]) -> list[dict[str, Any]]:
    """The records of a results file; blank lines skipped."""
    return [json.loads(ln) for ln in lines if ln.strip()]


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}" if a >= 0.1 or a == 0 else f"{x:.2g}"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _met(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "**no**")


def render(records: list[dict[str, Any]], benches: Iterable[str]) -> str:
    """The markdown between the markers: the table, then how and where it was measured.

    Every bench in ``benches`` gets at least one row: its results, or "not run"
    with the reason the file gives (or that it has no line for it at all).
    """
    results: dict[str, list[dict[str, Any]]] = {}
    missing: dict[str, str] = {}
    runs: dict[str, dict[str, Any]] = {}
    for r in records:
        if "run" in r:
            runs[r["run"]] = r
        elif "not_run" in r:
            missing[r["bench"]] = r["not_run"]
        elif "bench" in r:
            results.setdefault(r["bench"], []).append(r)
    out = ["| bench | what | workload | ours | anchor (name: figure) | ratio | goal | met? |",
           "|---|---|---|---|---|---|---|---|"]
    for name in benches:
        rows = results.get(name)
        if not rows:
            reason = missing.get(name) or "no result in this file"
            out.append(f"| {name} | not run ({_cell(reason)}) | | | | | | |")
            continue
        for r in rows:
            unit = f" {r['unit']}" if r.get("unit") else ""
            anchor = (f"{_cell(r['anchor_name'])}: {_num(r['anchor'])}{unit}"
                      if r.get("anchor") is not None else f"{_cell(r['anchor_name'])}: -")
            ratio = "-" if r.get("ratio") is None else f"{_num(r['ratio'])}x"
            out.append(f"| {name} | {_cell(r['measure'])} | {_cell(r['workload'])} | "
                       f"{_num(r['ours'])}{unit} | {anchor} | {ratio} | "
                       f"{_cell(r.get('goal') or '-')} | {_met(r.get('met'))} |")
    out.append("")
    if runs:
        nprocs = sorted({str(r["nproc"]) for r in runs.values()})
        days = sorted({r["started"][:10] for r in runs.values()})
        out.append(f"Measured on {' / '.join(nprocs)} cores (`nproc`), shared with other work, "
                   f"on {', '.join(days)}; each bench run alone, one after another. "
                   "Load average (1, 5, 15 min) at each bench's start and end:")
        out.append("")
        out.append("| bench | command | started (UTC) | took | load at start | load at end | exit |")
        out.append("|---|---|---|---|---|---|---|")
        for name in benches:
            run = runs.get(name)
            if run is None:
                continue
            load0 = ", ".join(f"{x:.2f}" for x in run["load_start"])
            load1 = ", ".join(f"{x:.2f}" for x in run["load_end"])
            out.append(f"| {name} | `{_cell(run['command'])}` | {run['started'][:19]} | "
                       f"{run['elapsed_s']:.0f} s | {load0} | {load1} | {run['rc']} |")
        out.append("")
    sessions = sorted({r["session"] for r in runs.values() if r.get("session")})
    for s in sessions:
        out.append(f"Regenerated with `{s}`.")
    if sessions:
        out.append("")
    return "\n".join(out)


def replace_section(readme: str, body: str) -> str:
    """``readme`` with the text between the markers replaced by ``body``; the rest untouched."""
    start = readme.find(BEGIN)
    end = readme.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README has no {BEGIN} ... {END} section")
    return readme[:start + len(BEGIN)] + "\n" + body.rstrip("\n") + "\n" + readme[end:]


# ---------------------------------------------------------------- running

def run_one(name: str, argv: list[str], results: Path, python: str, timeout: float, session: str) -> None:
    """One bench, its results appended to ``results``; a failure is recorded as not run."""
    script = ROOT / "bench" / f"{name}.py"
    cmd = [python, str(script.relative_to(ROOT)), *argv]
    before = results.read_text().count("\n") if results.exists() else 0
    load0 = os.getloadavg()
    started = datetime.now(UTC)
    t0 = time.monotonic()
    print(f"== {name}: {shlex.join(cmd)}", flush=True)
    tail = ""
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, ENV: str(results)},
                              timeout=timeout, capture_output=True, text=True)
        rc = proc.returncode
        sys.stdout.write(proc.stdout)
        sys.stdout.write(proc.stderr[-3000:])
        tail = (proc.stderr.strip().splitlines() or [""])[-1][:160]
    except subprocess.TimeoutExpired:
        rc = -1
        tail = f"timed out after {timeout:.0f} s"
    elapsed = time.monotonic() - t0
    with results.open("a", encoding="utf-8") as f:
        new = load(results.read_text().splitlines()[before:])
        if not any(r.get("bench") == name for r in new):
            reason = tail if rc == -1 else f"exit {rc}: {tail or 'no result printed'}"
            f.write(json.dumps({"bench": name, "not_run": reason}) + "\n")
        f.write(json.dumps({
            "run": name, "command": shlex.join(["python", f"bench/{name}.py", *argv]),
            "started": started.isoformat(), "elapsed_s": elapsed, "rc": rc,
            "load_start": list(load0), "load_end": list(os.getloadavg()),
            "nproc": os.cpu_count(), "session": session}) + "\n")
    print(f"== {name}: {elapsed:.0f} s, exit {rc}", flush=True)


def merge(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``old`` without the benches ``new`` measured, then ``new``."""
    rerun = {r.get("run") or r.get("bench") for r in new}
    return [r for r in old if (r.get("run") or r.get("bench")) not in rerun] + new


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", choices=sorted(QUICK), metavar="NAME",
                    help="run only this bench (repeatable); the others keep their results")
    ap.add_argument("--from", dest="source", type=Path,
                    help="render the table from this JSONL file, running nothing")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "results.jsonl",
                    help="the results file a run updates (default bench/results.jsonl)")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per bench")
    args = ap.parse_args(argv)
    if args.source is not None:
        records = load(args.source.read_text().splitlines())
    else:
        session = "scripts/bench-table" + "".join(f" --only {n}" for n in args.only or [])
        fresh = args.results.with_suffix(".run.jsonl")
        fresh.unlink(missing_ok=True)
        for name in args.only or list(QUICK):
            run_one(name, QUICK[name], fresh, sys.executable, args.timeout, session)
        old = load(args.results.read_text().splitlines()) if args.results.exists() else []
        records = merge(old, load(fresh.read_text().splitlines()))
        args.results.write_text("".join(json.dumps(r) + "\n" for r in records))
        fresh.unlink()
    args.readme.write_text(replace_section(args.readme.read_text(), render(records, QUICK)))
    print(f"{args.readme}: performance table rewritten from {len(records)} records")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
