"""What one tick did: the facts its PhysicsTick event records, and the commands it refused."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rejection:
    offset: int
    command: dict[str, Any]
    reason: str  # a CommandRejected.reason symbol
    message: str


@dataclass(frozen=True)
class TickOutcome:
    """What one tick did: the facts its PhysicsTick event records."""

    tick: int
    sim_time: float
    first_command_offset: int | None
    last_command_offset: int | None
    n_applied: int
    n_rejected: int
    rejections: tuple[Rejection, ...]
    removed_ids: tuple[int, ...]  # by RemoveBody or absorbed in a merger
    changed_ids: tuple[int, ...]  # spawned, or survivors of a merger (mass/radius changed)
