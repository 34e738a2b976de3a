"""Cheat and anomaly rules over players' commands: pure, windowed by event time.

Per player and world, in tumbling windows of ``flag_window_s`` by the
records' timestamps, four rules look at what the player sent:

- **IMPOSSIBLE_IMPULSE**: a nudge larger than ``max_impulse`` (no ship could);
- **FLOOD**: more than ``flood_commands_per_s`` commands a second;
- **OTHERS_BODIES**: at least ``others_bodies_attempts`` commands the world
  refused as not permitted (others' bodies, operator actions);
- **BURST**: a window ``burst_factor`` times the player's own usual count (an
  average over their earlier windows, once there are three) and at least
  ``burst_min_commands``: normal for someone else, abnormal for them.

A closed window yields at most one :class:`Flag` per rule, carrying the
evidence (counts, values, threshold, example command ids). Windows close when
the watermark (newest timestamp seen, less ``lateness_ms``) passes their end.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from cosmic.settings import SecuritySettings
from schemas import models

EXAMPLES = 5
HISTORY_WINDOWS = 3  # earlier windows a player needs before BURST can judge them
HISTORY_WEIGHT = 0.2  # of the newest window in the running average
# A player's history is forgotten after this many windows without a command (an hour of
# 10 s windows), so the detector's memory follows the active players, not all ever seen.
HISTORY_IDLE_WINDOWS = 360


class FlagKind(StrEnum):
    IMPOSSIBLE_IMPULSE = "IMPOSSIBLE_IMPULSE"
    FLOOD = "FLOOD"
    OTHERS_BODIES = "OTHERS_BODIES"
    BURST = "BURST"


@dataclass(frozen=True)
class Rules:
    window_ms: int
    max_impulse: float
    flood_per_window: float
    others_attempts: int
    burst_factor: float
    burst_min: int

    @classmethod
    def from_settings(cls, s: SecuritySettings) -> Rules:
        return cls(window_ms=int(s.flag_window_s * 1000), max_impulse=s.max_impulse,
                   flood_per_window=s.flood_commands_per_s * s.flag_window_s,
                   others_attempts=s.others_bodies_attempts, burst_factor=s.burst_factor,
                   burst_min=s.burst_min_commands)


@dataclass(frozen=True)
class Flag:
    player_id: str
    world_id: str
    kind: FlagKind
    score: float
    window_start_ms: int
    window_end_ms: int
    evidence: dict[str, Any]

    @property
    def flag_id(self) -> str:
        key = f"{self.player_id}\x00{self.world_id}\x00{self.kind}\x00{self.window_start_ms}"
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest()

    def record(self, ts_ms: int) -> dict[str, Any]:
        """The SecurityFlag record."""
        return {"flag_id": self.flag_id, "player_id": self.player_id, "world_id": self.world_id,
                "kind": self.kind.value, "score": self.score,
                "window_start": self.window_start_ms, "window_end": self.window_end_ms,
                "evidence": orjson.dumps(self.evidence, option=orjson.OPT_SORT_KEYS).decode(),
                "ts": ts_ms}


@dataclass
class _Window:
    commands: int = 0
    examples: list[str] = field(default_factory=list)
    impossible: int = 0
    max_impulse: float = 0.0
    impossible_examples: list[str] = field(default_factory=list)
    refused: int = 0
    refused_examples: list[str] = field(default_factory=list)


@dataclass
class _History:
    windows: int = 0
    mean: float = 0.0
    last_start_ms: int = 0


Key = tuple[str, str]  # (player, world)


def _keep(examples: list[str], command_id: str) -> None:
    if len(examples) < EXAMPLES:
        examples.append(command_id)


class Detector:
    """Feed it commands and refusals in any order within ``lateness_ms``; :meth:`close`
    returns the flags of every window the watermark has passed."""

    def __init__(self, rules: Rules, lateness_ms: int = 2_000) -> None:
        self.rules = rules
        self.lateness_ms = lateness_ms
        self.watermark_ms = 0
        self._open: dict[int, dict[Key, _Window]] = {}
        self._history: dict[Key, _History] = {}

    def _window(self, key: Key, ts_ms: int) -> _Window | None:
        start = ts_ms - ts_ms % self.rules.window_ms
        if start + self.rules.window_ms <= self.watermark_ms:
            return None  # later than the lateness allows: its window has been judged
        self.watermark_ms = max(self.watermark_ms, ts_ms - self.lateness_ms)
        return self._open.setdefault(start, {}).setdefault(key, _Window())

    def command(self, command: models.PlayerCommand, ts_ms: int) -> None:
        w = self._window((command.player_id, command.world_id), ts_ms)
        if w is None:
            return
        cid = str(command.command_id)
        w.commands += 1
        _keep(w.examples, cid)
        body = command.command
        if isinstance(body, models.ApplyImpulse):
            size = math.sqrt(body.dv.x ** 2 + body.dv.y ** 2 + body.dv.z ** 2)
            if size > self.rules.max_impulse:
                w.impossible += 1
                w.max_impulse = max(w.max_impulse, size)
                _keep(w.impossible_examples, cid)

    def refusal(self, rejection: models.CommandRejected, ts_ms: int) -> None:
        if rejection.reason is not models.RejectReason.NOT_PERMITTED:
            return  # other refusals are honest mistakes or races with the world
        w = self._window((rejection.player_id, rejection.world_id), ts_ms)
        if w is None:
            return
        w.refused += 1
        _keep(w.refused_examples, str(rejection.command_id))

    def advance(self, now_ms: int) -> None:
        """Let time pass without records (a quiet stream still closes its windows)."""
        self.watermark_ms = max(self.watermark_ms, now_ms - self.lateness_ms)

    def close(self) -> list[Flag]:
        flags: list[Flag] = []
        for start in sorted(s for s in self._open if s + self.rules.window_ms <= self.watermark_ms):
            for key, w in sorted(self._open.pop(start).items()):
                flags += self._judge(key, start, w)
        horizon = self.watermark_ms - HISTORY_IDLE_WINDOWS * self.rules.window_ms
        for key in [k for k, h in self._history.items() if h.last_start_ms < horizon]:
            del self._history[key]
        return flags

    def _judge(self, key: Key, start: int, w: _Window) -> list[Flag]:
        r = self.rules
        end = start + r.window_ms
        out: list[Flag] = []

        def flag(kind: FlagKind, score: float, **evidence: Any) -> None:
            out.append(Flag(key[0], key[1], kind, score, start, end, evidence))

        if w.impossible:
            flag(FlagKind.IMPOSSIBLE_IMPULSE, w.max_impulse / r.max_impulse,
                 impulses_over_cap=w.impossible, largest_impulse=w.max_impulse,
                 cap=r.max_impulse, examples=w.impossible_examples)
        if w.commands > r.flood_per_window:
            flag(FlagKind.FLOOD, w.commands / r.flood_per_window, commands=w.commands,
                 window_s=r.window_ms / 1000, threshold=r.flood_per_window,
                 examples=w.examples)
        if w.refused >= r.others_attempts:
            flag(FlagKind.OTHERS_BODIES, w.refused / r.others_attempts, refused=w.refused,
                 threshold=r.others_attempts, examples=w.refused_examples)
        history = self._history.setdefault(key, _History())
        usual = max(history.mean, 1.0)
        if (history.windows >= HISTORY_WINDOWS and w.commands >= r.burst_min
                and w.commands > r.burst_factor * usual):
            flag(FlagKind.BURST, w.commands / (r.burst_factor * usual), commands=w.commands,
                 usual_per_window=history.mean, factor=r.burst_factor,
                 windows_of_history=history.windows, examples=w.examples)
        history.mean = (w.commands if history.windows == 0 else
                        (1 - HISTORY_WEIGHT) * history.mean + HISTORY_WEIGHT * w.commands)
        history.windows += 1
        history.last_start_ms = start
        return out
