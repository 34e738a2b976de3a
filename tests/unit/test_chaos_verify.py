"""The matrix verifier's counts on hand-made output: each kind of fault in isolation."""

from __future__ import annotations

import random
import uuid
from collections import Counter

import orjson

from cosmic.settings import Settings
from cosmic_app.chaos import cell, verify
from cosmic_app.chaos.bodies import ScriptedWorld, judge_table, script
from cosmic_app.chaos.living import CivilizationRow


def test_complete_ordered_output_passes():
    t = verify.tally({"a": range(1, 4), "b": range(1, 3)},
                     [("a", 1), ("b", 1), ("a", 2), ("b", 2), ("a", 3)])
    assert t.ok and (t.expected, t.seen) == (5, 5)


def test_each_defect_is_counted():
    t = verify.tally({"a": range(1, 5)}, [("a", 1), ("a", 3), ("a", 2), ("a", 3), ("b", 9)])
    assert t.lost == 1            # a/4
    assert t.duplicated == 1      # a/3 twice
    assert t.unexpected == 1      # b/9
    assert t.out_of_order == 2    # 2 after 3, and 3 again after it
    assert not t.ok


def test_unordered_output_counts_no_disorder():
    t = verify.tally({"a": range(1, 3)}, [("a", 2), ("a", 1)], ordered=False)
    assert t.ok


def test_fault_plans_land_after_a_fifth_and_are_seeded():
    for fault in cell.FAULTS:
        first, actions = cell.plan(fault, 7)
        assert first >= 1 and actions
        assert all(0.2 <= p <= 0.8 for p, _, _ in actions)
        assert [p for p, _, _ in actions] == sorted(p for p, _, _ in actions)
        assert cell.plan(fault, 7) == (first, actions)
        assert cell.plan(fault, 8) != (first, actions)
    assert [k for _, k, _ in cell.plan("sigkill", 1)[1]] == ["kill"] * 3


def _outcome(**tally_changes: int) -> cell.Outcome:
    base = {"expected": 10, "seen": 10, "lost": 0, "duplicated": 0, "unexpected": 0,
            "out_of_order": 0} | tally_changes
    return cell.Outcome(cell.Cell("timescale", "sigkill", 1, 10),
                        cell.Verdict(verify.Tally(**base)), recoveries_s=[1.0, 2.0, 3.0])


def test_table_passes_only_clean_cells_and_names_what_is_not_built():
    from cosmic_app.chaos import table

    clean, lossy = _outcome(), _outcome(lost=1, seen=9)
    proofless = cell.Outcome(cell.Cell("physics", "sigkill", 1, 10),
                             cell.Verdict(verify.Tally(10, 10, 0, 0, 0, 0), aborted=0),
                             proof_needed=True)
    text = table.render([clean, lossy, proofless], ["gateway"], ["broker-restart"])
    lines = text.splitlines()
    assert lines[2].endswith("| PASS |")
    assert "FAIL" in lines[3] and "| 1    |" in lines[3]
    assert "FAIL: no aborted transaction seen" in lines[4]
    assert "not built (rows): gateway" in text
    assert "not built (faults): broker-restart" in text
    assert "1/3 cells passed" in text


def test_a_known_failing_cell_runs_only_when_named_and_the_table_says_why():
    from cosmic_app.chaos import matrix, table

    plan = matrix.Plan.short()
    known = next(iter(matrix.KNOWN_FAILING))
    every = {(c.row, c.fault) for c in matrix.cells(plan)}
    assert known not in every
    assert {(c.row, c.fault) for c in matrix.cells(plan, [known[0]])} == {
        k for k in every if k[0] == known[0]}
    assert [(c.row, c.fault) for c in matrix.cells(plan, ["/".join(known)])] == [known]
    text = table.render([], known_failing=matrix.KNOWN_FAILING)
    assert f"--only {known[0]}/{known[1]}" in text and matrix.KNOWN_FAILING[known] in text


def test_civilization_script_is_the_cells_size_and_progresses_every_status():
    """The runner feeds exactly the cell's size, and progress is counted in civilization
    events: the script must give about one per status, and refusals per planet."""
    for size in (2_000, 2_003):
        row = CivilizationRow.__new__(CivilizationRow)
        base = Settings()
        row.settings = base.model_copy(update={"living": base.living.model_copy(
            update={"topic_prefix": "chaos.unit."})})
        row.cell = cell.Cell("civilization", "sigkill", 1, size)
        row.input, row.expected_ids = [], {}
        row.script(random.Random(1))
        assert len(row.input) == size
        assert row.expected > 0.95 * size
        kinds = Counter(k.rsplit("/", 1)[-1] for k in row.expected_ids)
        assert kinds["refused"] == 3 * 4  # each world: a planet too small, two duplicates
        # Each planet's statuses are in tick order, whatever the seeded interleaving.
        last: dict[str, int] = {}
        for _, key, status in row.input:
            assert status["tick"] > last.get(key, 0)
            last[key] = status["tick"]


def test_bodies_script_gives_every_delta_a_mark_the_table_keeps():
    """The bodies row's table holds one row per body, so the script must make each delta
    visible: the body it creates, the move of an older one, the removal of another."""
    world = ScriptedWorld("w")
    script(world, 120, random.Random(3))
    assert [s.tick for s in world.steps] == list(range(1, 121))
    for step in world.steps:
        assert step.tick in step.changed  # every delta creates its own body
        state = world.state_at(step.tick)
        assert state[step.tick].changed == step.tick
        assert not set(step.removed) & set(state)
    final = world.state_at(120)
    # Bodies older than their lifetime survive only on multiples of ten.
    assert {i for i in final if i <= 120 - 30} == {i for i in range(10, 91, 10)}
    # Snapshots every 25 ticks mark what they held; later bodies have no snapshot.
    assert final[100].snapped == 100 and final[110].snapped == 0 and final[10].snapped == 100
    assert [s.tick for s in world.steps if s.snapshot] == [25, 50, 75, 100]


def test_bodies_verifier_finds_each_kind_of_wrong_table():
    """What the connector must leave is the script's final state; each way of missing it
    is counted: a body lost, a removed one back, a stale tick, a body moved or unowned."""
    world = ScriptedWorld("w")
    script(world, 60, random.Random(5))
    final = world.state_at(60)
    good = [("w", i, *b.pos, f"p{i % 3}" if b.snapped else None, max(b.changed, b.snapped))
            for i, b in final.items()]
    clean = judge_table({"w": world}, good)
    assert clean.tally.ok and clean.tally.seen == len(final) and clean.failures == []

    lost = judge_table({"w": world}, good[1:])
    assert lost.tally.lost == 1
    removed = next(i for s in world.steps for i in s.removed)
    back = judge_table({"w": world}, [*good, ("w", removed, 0.0, 0.0, 0.0, None, 40)])
    assert back.tally.unexpected == 1
    stale = [(*r[:6], r[6] - 1) if r[1] == 59 else r for r in good]
    assert judge_table({"w": world}, stale).tally.lost == 1
    moved = [(r[0], r[1], r[2] + 1.0, *r[3:]) if r[1] == 58 else r for r in good]
    assert judge_table({"w": world}, moved).failures
    unowned = [(*r[:5], None, r[6]) if r[1] == 10 else r for r in good]
    assert judge_table({"w": world}, unowned).failures


# The gateway row's verifier: commands sent through gateways, against the log and ticks.

def _sent(n: int) -> list:
    from cosmic_app.chaos.gateway import Command

    return [Command("w", k, uuid.UUID(int=k), {}) for k in range(1, n + 1)]


def _ticks(*taken: tuple[int, bool]) -> list[dict]:
    """One lockstep tick per (offset, applied), numbered from 1."""
    return [{"tick": n, "first_command_offset": o, "last_command_offset": o,
             "n_applied": int(applied)} for n, (o, applied) in enumerate(taken, 1)]


def _told(ticks: list[dict], log: dict[int, uuid.UUID], duplicate_of: set[int] = frozenset()
          ) -> dict:
    """What honest gateways answered: each command at its first tick, or DUPLICATE_COMMAND
    where its answer came from the copy at an offset in ``duplicate_of``."""
    from cosmic_app.chaos.gateway import DUPLICATE, Answer

    told: dict = {}
    for t in ticks:
        cid = log[t["first_command_offset"]]
        if t["first_command_offset"] in duplicate_of:
            told[cid] = Answer(False, t["tick"], DUPLICATE)
        elif cid not in told:
            told[cid] = Answer(bool(t["n_applied"]), t["tick"], "" if t["n_applied"] else "X")
    return told


def test_gateway_judge_passes_a_retry_refused_as_duplicate():
    from cosmic_app.chaos.gateway import judge

    sent = _sent(3)
    # Command 2 reached the log twice (its gateway died before answering): the second copy
    # is refused. Command 3 was a command the world refuses anyway.
    log = {10: sent[0].command_id, 11: sent[1].command_id, 12: sent[1].command_id,
           13: sent[2].command_id}
    ticks = _ticks((10, True), (11, True), (12, False), (13, False))
    verdict = judge(sent, _told(ticks, log, {12}), {"w": log}, {"w": ticks})
    assert verdict.tally.ok and verdict.failures == []
    assert (verdict.tally.expected, verdict.tally.seen) == (3, 3)


def test_gateway_judge_counts_a_second_application_and_a_lost_command():
    from cosmic_app.chaos.gateway import judge

    sent = _sent(3)
    log = {10: sent[0].command_id, 11: sent[1].command_id, 12: sent[1].command_id}
    ticks = _ticks((10, True), (11, True), (12, True))  # the copy applied again
    verdict = judge(sent, _told(ticks, log), {"w": log}, {"w": ticks})
    t = verdict.tally
    assert (t.lost, t.duplicated, t.unexpected) == (1, 1, 0)  # command 3 never reached it
    assert verdict.failures == ["1 commands never answered"]


def test_gateway_judge_finds_disorder_gaps_strangers_and_untrue_answers():
    from cosmic_app.chaos.gateway import Answer, judge

    sent = _sent(2)
    stranger = uuid.UUID(int=99)
    log = {10: sent[1].command_id, 11: sent[0].command_id, 12: stranger}
    ticks = _ticks((10, True), (11, True), (12, True))
    told = {sent[0].command_id: Answer(True, 2, ""),
            sent[1].command_id: Answer(False, 1, "UNKNOWN_BODY")}  # it was applied at 1
    verdict = judge(sent, told, {"w": log}, {"w": ticks})
    assert verdict.tally.out_of_order == 1  # command 2 decided before command 1
    assert verdict.tally.unexpected == 1  # a record nobody sent
    assert verdict.failures[0].startswith("1 answers not what the log holds")
    # A tick lost from the committed output: the ticks do not take the log one by one.
    gap = judge(sent, told, {"w": log}, {"w": [ticks[0], ticks[2]]})
    assert any("not 1..3 in order" in f for f in gap.failures)
    assert gap.tally.lost == 1


def test_gateway_row_input_is_what_the_gateway_takes():
    from pydantic import TypeAdapter

    from cosmic_app.chaos.gateway import frontend_input
    from schemas import models

    commands = frontend_input(["s:a", "s:b"], 1, 300)
    assert len(commands) == 300 and len({c.command_id for c in commands}) == 300
    for world in ("s:a", "s:b"):
        seqs = [c.seq for c in commands if c.world == world]
        assert seqs == list(range(1, len(seqs) + 1))
    parsed = [TypeAdapter(models.Command).validate_python(orjson.loads(orjson.dumps(c.body)))
              for c in commands]
    assert isinstance(parsed[0], models.SetWorldParams | models.SpawnBody)
    assert frontend_input(["s:a", "s:b"], 1, 300) == commands  # seeded
