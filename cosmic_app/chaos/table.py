"""The matrix as a table: one line per cell, then the cells that are not built."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .cell import FAULTS, Outcome

RECOVERY_GOAL_S = 30.0  # the goal; reported, not a cell's pass condition
_HEAD = ("row", "fault", "seed", "input", "lost", "dup", "order", "aborted", "recovery max",
         "time", "result")


def _line(o: Outcome) -> tuple[str, ...]:
    v = o.verdict
    t = v.tally if v else None
    rec = f"{max(o.recoveries_s):.1f}s" if o.recoveries_s else "-"
    aborted = "n/a" if v is None or v.aborted is None else str(v.aborted)
    if o.passed:
        result = "PASS"
    elif o.error:
        result = f"FAIL: {o.error}"
    elif v and v.failures:
        result = f"FAIL: {v.failures[0]}"
    elif o.proof_needed and v and not v.aborted:
        result = "FAIL: no aborted transaction seen (the kills landed between transactions)"
    else:
        result = "FAIL"
    return (o.cell.row, o.cell.fault, str(o.cell.seed), str(o.cell.size),
            str(t.lost) if t else "?", str(t.duplicated + t.unexpected) if t else "?",
            str(t.out_of_order) if t else "?", aborted, rec, f"{o.elapsed_s:.0f}s", result)


def render(outcomes: Sequence[Outcome], not_built_rows: Sequence[str] = (),
           not_built_faults: Sequence[str] = (),
           not_applicable: Mapping[str, Sequence[str]] | None = None,
           known_failing: Mapping[tuple[str, str], str] | None = None) -> str:
    rows = [_HEAD, *(_line(o) for o in outcomes)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(_HEAD) - 1)]
    out = []
    for n, r in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=False))
                   + f" | {r[-1]} |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
    if not_built_rows:
        out.append(f"\nnot built (rows): {', '.join(not_built_rows)} — every fault")
    if not_built_faults:
        out.append(f"not built (faults): {', '.join(not_built_faults)} — every row "
                   f"(built: {', '.join(FAULTS)})")
    for row, faults in (not_applicable or {}).items():
        out.append(f"not applicable: {row} x {', '.join(faults)}")
    for (row, fault), why in (known_failing or {}).items():
        out.append(f"held back, run only when named (--only {row}/{fault}): {why}")
    recs = sorted(r for o in outcomes for r in o.recoveries_s)
    if recs:
        p99 = recs[min(len(recs) - 1, int(0.99 * len(recs)))]
        goal = "met" if p99 <= RECOVERY_GOAL_S else "missed"
        out.append(f"recovery over {len(recs)} faults: p50 {recs[len(recs) // 2]:.1f}s, "
                   f"p99 {p99:.1f}s, max {recs[-1]:.1f}s (goal p99 <= {RECOVERY_GOAL_S:.0f}s: "
                   f"{goal})")
    passed = sum(o.passed for o in outcomes)
    out.append(f"{passed}/{len(outcomes)} cells passed")
    return "\n".join(out)
