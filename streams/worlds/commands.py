"""One world as the worker runs it: the engine plus what commands and ticks need.

Everything here is a pure function of (state, commands): the live worker, its
recovery, and point-in-time replay all advance worlds through :func:`advance`,
so the same snapshot and the same commands give the same state hash sequence.

A command is decoded ``PlayerCommand`` data: an envelope dict whose
``command`` is a ``(record name, record)`` pair, as the serde returns unions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from streams.physics import World
from streams.physics.errors import (
    DuplicateBody,
    InvalidBody,
    InvalidParams,
    PhysicsError,
    UnknownBody,
)

from .outcome import Rejection, TickOutcome
from .state import KIND_CODE, WORLD_RADIUS, SnapshotFetcher, WorldState

# Commands the physics worker does not act on: other services (the ecosystem and
# civilization apps) read them from the same log.
NOT_PHYSICS = frozenset({"SeedSpecies", "FoundCivilization"})

_REASONS: tuple[tuple[type[PhysicsError], str], ...] = (
    (UnknownBody, "UNKNOWN_BODY"),
    (DuplicateBody, "DUPLICATE_ID"),
    (InvalidBody, "INVALID_ARGUMENT"),
    (InvalidParams, "INVALID_ARGUMENT"),
)


def _reason(exc: PhysicsError) -> str:
    for kind, reason in _REASONS:
        if isinstance(exc, kind):
            return reason
    return "INVALID_ARGUMENT"


def _vec(v: dict[str, float]) -> tuple[float, float, float]:
    return (float(v["x"]), float(v["y"]), float(v["z"]))


def apply_command(state: WorldState, command: dict[str, Any],
                  fetch_snapshot: SnapshotFetcher | None = None) -> tuple[str, str] | None:
    """Apply one command; return ``(reason, message)`` if it was rejected (state unchanged)."""
    name, body = command["command"]
    name = name.rsplit(".", 1)[-1]
    w = state.world
    try:
        if name == "SpawnBody":
            pos = _vec(body["position"])
            if math.isfinite(sum(pos)) and math.hypot(*pos) > WORLD_RADIUS:
                return "OUT_OF_BOUNDS", f"position is beyond the world radius {WORLD_RADIUS:g}"
            w.add_body(int(body["body_id"]), body["mass"], body["radius"], pos,
                       _vec(body["velocity"]))
            state.kinds[int(body["body_id"])] = KIND_CODE.get(str(body["kind"]), 0)
        elif name == "ApplyImpulse":
            w.apply_impulse(int(body["body_id"]), _vec(body["dv"]))
        elif name == "RemoveBody":
            w.remove_body(int(body["body_id"]))
            state.kinds.pop(int(body["body_id"]), None)
        elif name == "SetWorldParams":
            _set_params(state, body)
        elif name == "AdoptSnapshot":
            return _adopt(state, body, fetch_snapshot)
        else:
            return "INVALID_ARGUMENT", f"unknown command {name}"
    except PhysicsError as exc:
        return _reason(exc), str(exc)
    return None


def _set_params(state: WorldState, body: dict[str, Any]) -> None:
    rate, dt, every = float(body["tick_rate_hz"]), float(body["dt"]), int(body["snapshot_every"])
    if not (math.isfinite(rate) and 0 < rate <= 10_000):
        raise InvalidParams(f"tick_rate_hz must be in (0, 10000], got {rate!r}")
    if not (math.isfinite(dt) and dt > 0):
        raise InvalidParams(f"dt must be finite and > 0, got {dt!r}")
    if every < 1:
        raise InvalidParams(f"snapshot_every must be >= 1, got {every!r}")
    # Validated by the engine first, so a bad G leaves every parameter as it was.
    state.world.set_params(G=body["G"], softening=body["softening"],
                           merge_on_contact=bool(body["merge_on_contact"]))
    state.tick_rate_hz, state.dt, state.snapshot_every = rate, dt, every


def _adopt(state: WorldState, body: dict[str, Any],
           fetch_snapshot: SnapshotFetcher | None) -> tuple[str, str] | None:
    """Replace bodies and parameters by a recorded snapshot's; tick and time go on."""
    from .events import state_from_snapshot

    where = f"history partition {body['snapshot_partition']} offset {body['snapshot_offset']}"
    record = None if fetch_snapshot is None else fetch_snapshot(
        int(body["snapshot_partition"]), int(body["snapshot_offset"]))
    if record is None:
        return "INVALID_ARGUMENT", f"no snapshot at {where}"
    source = state_from_snapshot(record, state.partition)
    if source.state_hash() != body["state_hash"] or record["state_hash"] != body["state_hash"]:
        return "INVALID_ARGUMENT", f"snapshot at {where} does not have hash {body['state_hash']}"
    arrays = source.world.to_arrays()
    current = state.world.params
    arrays.update(tick=state.world.tick, time=state.world.time, solver=current.solver,
                  theta=current.theta, backend=current.backend)
    state.world = World.from_arrays(**arrays)
    state.kinds = dict(source.kinds)
    state.tick_rate_hz, state.dt, state.snapshot_every = (
        source.tick_rate_hz, source.dt, source.snapshot_every)
    return None


def advance(state: WorldState, commands: Sequence[tuple[int, dict[str, Any]]],
            fetch_snapshot: SnapshotFetcher | None = None) -> TickOutcome:
    """Apply ``commands`` (offset, command) in offset order, then step the world once.

    ``fetch_snapshot`` resolves the snapshots ``AdoptSnapshot`` commands name;
    without it such commands are rejected.
    """
    applied = 0
    rejections: list[Rejection] = []
    removed: list[int] = []
    changed: list[int] = []
    for offset, command in commands:
        name = command["command"][0].rsplit(".", 1)[-1]
        if name in NOT_PHYSICS:
            continue
        verdict = apply_command(state, command, fetch_snapshot)
        if verdict is None:
            applied += 1
            body = command["command"][1]
            if name == "SpawnBody":
                changed.append(int(body["body_id"]))
            elif name == "RemoveBody":
                removed.append(int(body["body_id"]))
            elif name == "AdoptSnapshot":
                changed.extend(int(i) for i in state.world.ids)
        else:
            rejections.append(Rejection(offset, command, *verdict))
    if commands:
        state.last_command_offset = commands[-1][0]
    for merge in state.world.step(state.dt):
        changed.append(merge.survivor)
        for gone in merge.absorbed:
            removed.append(gone)
            state.kinds.pop(gone, None)
    return TickOutcome(
        tick=state.world.tick,
        sim_time=state.world.time,
        first_command_offset=commands[0][0] if commands else None,
        last_command_offset=commands[-1][0] if commands else None,
        n_applied=applied,
        n_rejected=len(rejections),
        rejections=tuple(rejections),
        removed_ids=tuple(removed),
        changed_ids=tuple(changed),
    )
