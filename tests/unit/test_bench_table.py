"""The README's performance table: bench results (JSONL) rendered between its markers."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _module(name: str) -> ModuleType:
    # bench/ is a folder of scripts, not a package: load the two modules by path.
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


table = _module("table")
report = _module("report")

README = f"""# Project

Intro that must survive.

## Performance

Words before.

{table.BEGIN}
| old | table |
{table.END}

## Tests

Words after.
"""


def _results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
             capsys: pytest.CaptureFixture[str]) -> list[dict]:
    path = tmp_path / "r.jsonl"
    monkeypatch.setenv(report.ENV, str(path))
    report.result("serde", "encode events/s", "PlayerCommand, best of 3", 81234.5,
                  "raw fastavro", 90000.0, 0.9026, goal=">= 0.9x", met=True, unit="events/s",
                  line="PlayerCommand encode: ours = 0.90 x raw fastavro")
    report.result("serde", "decode events/s", "PlayerCommand | big", 40000.0,
                  "confluent-kafka", 25000.0, 1.6, goal=">= 2x", met=False, unit="events/s")
    report.not_run("nbody_gpu", "no GPU (cupy: no CUDA device)")
    assert capsys.readouterr().out == "PlayerCommand encode: ours = 0.90 x raw fastavro\n"
    records = table.load(path.read_text().splitlines())
    records.append({"run": "serde", "command": "python bench/serde.py --seconds 0.3",
                    "started": "2026-12-02T08:00:00+00:00", "elapsed_s": 12.4, "rc": 0,
                    "load_start": [1.5, 1.2, 1.0], "load_end": [2.0, 1.4, 1.1], "nproc": 2,
                    "session": "scripts/bench-table"})
    return records


def test_results_render_between_the_markers_and_the_rest_is_untouched(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    records = _results(tmp_path, monkeypatch, capsys)
    out = table.replace_section(README, table.render(records, ["serde", "nbody_gpu", "worker"]))

    before, rest = out.split(table.BEGIN)
    body, after = rest.split(table.END)
    assert before == README.split(table.BEGIN)[0]
    assert after == README.split(table.END)[1]
    assert "| old | table |" not in body
    rows = [ln for ln in body.splitlines() if ln.startswith("| serde |") and "`" not in ln]
    assert rows == [
        "| serde | encode events/s | PlayerCommand, best of 3 | 81,234 events/s | "
        "raw fastavro: 90,000 events/s | 0.90x | >= 0.9x | yes |",
        # A pipe inside a cell must not split the row.
        "| serde | decode events/s | PlayerCommand \\| big | 40,000 events/s | "
        "confluent-kafka: 25,000 events/s | 1.60x | >= 2x | **no** |",
    ]
    # A bench that could not measure, and one with no line at all, still have a row.
    assert "| nbody_gpu | not run (no GPU (cupy: no CUDA device)) |" in body
    assert "| worker | not run (no result in this file) |" in body
    # The machine, the load and the command are stated.
    assert "Measured on 2 cores" in body
    assert ("| serde | `python bench/serde.py --seconds 0.3` | 2026-12-02T08:00:00 | 12 s | "
            "1.50, 1.20, 1.00 | 2.00, 1.40, 1.10 | 0 |") in body
    assert "Regenerated with `scripts/bench-table`." in body
    # Rendering again from the same results gives the same README.
    again = table.replace_section(out, table.render(records, ["serde", "nbody_gpu", "worker"]))
    assert again == out


def test_a_run_of_one_bench_replaces_only_its_results() -> None:
    old = [{"bench": "serde", "measure": "old"}, {"run": "serde"},
           {"bench": "worker", "measure": "kept"}, {"run": "worker"}]
    new = [{"bench": "serde", "measure": "new"}, {"run": "serde"}]
    assert table.merge(old, new) == [{"bench": "worker", "measure": "kept"}, {"run": "worker"},
                                     *new]


def test_without_the_variable_nothing_is_written(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(report.ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    report.result("serde", "x", "y", 1.0, "a", 1.0, 1.0)
    assert list(tmp_path.iterdir()) == []


def test_a_readme_without_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="bench-table"):
        table.replace_section("# no markers\n", "body")


def test_every_bench_has_quick_flags() -> None:
    # report and gateway_ws are modules the benches import, not benches; table is the runner.
    scripts = {p.stem for p in BENCH.glob("*.py")} - {"report", "table", "gateway_ws"}
    assert set(table.QUICK) == scripts
    assert json.dumps(table.QUICK)  # the flags are plain strings, as the table prints them
