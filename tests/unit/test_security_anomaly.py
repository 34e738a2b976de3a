"""The cheat rules on their own: each fires on what it is meant to, with evidence, and a
normal synthetic player raises nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from cosmic.settings import SecuritySettings
from schemas import models
from schemas.typed import to_model
from streams.security.anomaly import Detector, FlagKind, Rules
from streams.worlds import scenario

NOW = datetime(2026, 12, 2, tzinfo=UTC)
RULES = Rules.from_settings(SecuritySettings())  # 10 s windows
T0 = 1_800_000_000_000  # a window boundary (divisible by 10 s)


def _nudge(player: str, dv: float, body_id: int = 5) -> models.PlayerCommand:
    return models.PlayerCommand(
        command_id=uuid.uuid4(), player_id=player, world_id="w", client_ts=NOW,
        received_ts=NOW, command=models.ApplyImpulse(body_id=body_id,
                                                     dv=models.Vec3(x=dv, y=0, z=0)))


def _refused(player: str, reason: models.RejectReason) -> models.CommandRejected:
    return models.CommandRejected(command_id=uuid.uuid4(), world_id="w", player_id=player,
                                  reason=reason, message="no", ts=NOW)


def _closed(d: Detector, until_ms: int) -> list:
    d.advance(until_ms + d.lateness_ms)
    return d.close()


def test_an_impossible_nudge_is_flagged_with_the_largest_value_and_examples():
    d = Detector(RULES)
    big = _nudge("mallory", 40.0)
    d.command(_nudge("mallory", 0.01), T0 + 1)
    d.command(big, T0 + 2)
    d.command(_nudge("mallory", -3.0), T0 + 3)
    (flag,) = _closed(d, T0 + 10_000)
    assert (flag.player_id, flag.kind, flag.window_start_ms, flag.window_end_ms) == (
        "mallory", FlagKind.IMPOSSIBLE_IMPULSE, T0, T0 + 10_000)
    assert flag.evidence["impulses_over_cap"] == 2 and flag.evidence["largest_impulse"] == 40.0
    assert flag.score == 40.0 and str(big.command_id) in flag.evidence["examples"]


def test_a_flood_is_more_commands_a_second_than_allowed_over_a_window():
    d = Detector(RULES)
    limit = int(RULES.flood_per_window)
    for k in range(limit):
        d.command(_nudge("steady", 0.01), T0 + k)
    for k in range(limit + 1):
        d.command(_nudge("flood", 0.01), T0 + k)
    flags = _closed(d, T0 + 10_000)
    assert [(f.player_id, f.kind) for f in flags] == [("flood", FlagKind.FLOOD)]
    assert flags[0].evidence["commands"] == limit + 1


def test_repeated_refusals_for_others_bodies_are_flagged_other_refusals_are_not():
    d = Detector(RULES)
    for k in range(RULES.others_attempts):
        d.refusal(_refused("snoop", models.RejectReason.NOT_PERMITTED), T0 + k)
        d.refusal(_refused("clumsy", models.RejectReason.UNKNOWN_BODY), T0 + k)
    flags = _closed(d, T0 + 10_000)
    assert [(f.player_id, f.kind) for f in flags] == [("snoop", FlagKind.OTHERS_BODIES)]
    assert flags[0].evidence["refused"] == RULES.others_attempts


def test_a_burst_is_judged_against_the_players_own_history():
    d = Detector(RULES)
    window = RULES.window_ms
    for w in range(4):  # 10 commands a window: the usual
        for k in range(10):
            d.command(_nudge("regular", 0.01), T0 + w * window + k)
    assert _closed(d, T0 + 4 * window) == []
    n = int(RULES.burst_factor * 10) + 1  # more than 8x the usual, under the flood limit
    assert n < RULES.flood_per_window
    for k in range(n):
        d.command(_nudge("regular", 0.01), T0 + 4 * window + k)
        d.command(_nudge("newcomer", 0.01), T0 + 4 * window + k)  # no history: not judged
    flags = _closed(d, T0 + 5 * window)
    assert [(f.player_id, f.kind) for f in flags] == [("regular", FlagKind.BURST)]
    assert flags[0].evidence["usual_per_window"] == 10.0


def test_records_later_than_the_lateness_are_not_counted_in_a_judged_window():
    d = Detector(RULES)
    d.command(_nudge("m", 40.0), T0 + 20_000 + d.lateness_ms)  # moves the watermark on
    d.command(_nudge("m", 40.0), T0 + 1)  # its window (T0..T0+10 s) has been passed
    flags = _closed(d, T0 + 30_000)
    assert [f.window_start_ms for f in flags] == [T0 + 20_000]


def test_the_flag_id_is_the_same_finding_every_time():
    def run() -> list[str]:
        d = Detector(RULES)
        d.command(_nudge("m", 40.0), T0 + 1)
        return [f.flag_id for f in _closed(d, T0 + 10_000)]
    assert run() == run() and len(run()[0]) == 32


def test_normal_synthetic_players_raise_no_flag():
    d = Detector(RULES)
    stream = scenario.player_commands("w", seed=11, asteroids=200, invalid_every=20)
    for k in range(20 * 120):  # two minutes at 20 commands a second, all eight players
        d.command(to_model(models.PlayerCommand, _decoded(next(stream))), T0 + k * 50)
    assert _closed(d, T0 + 130_000) == []


def _decoded(record: dict) -> dict:
    """A record as a reader gets it (the union as its record name and body)."""
    return {**record, "admission": None}


def test_the_history_of_a_player_gone_quiet_is_forgotten():
    from streams.security.anomaly import HISTORY_IDLE_WINDOWS
    d = Detector(RULES)
    d.command(_nudge("once", 0.01), T0 + 1)
    _closed(d, T0 + RULES.window_ms)
    assert ("once", "w") in d._history
    _closed(d, T0 + (HISTORY_IDLE_WINDOWS + 2) * RULES.window_ms)
    assert ("once", "w") not in d._history
