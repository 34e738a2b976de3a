"""What one tick did: the facts its PhysicsTick event records, and the commands it refused."""

from __future__ import annotations

from dataclasses import dataclass

from schemas import models


@dataclass(frozen=True)
class Rejection:
    offset: int
    command: models.PlayerCommand
    reason: models.RejectReason
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
    backend: str = "cpu"  # where this tick's forces were computed
    retire_reason: str | None = None  # a RetireWorld command was applied: the world ends
