"""World state and tick outcomes to and from the records of the event contracts."""

from __future__ import annotations

import uuid
from typing import Any

from schemas import columnar
from streams.physics import World

from .outcome import Rejection, TickOutcome
from .state import RecentCommands, WorldState

# The state and the force arithmetic are float64 on every backend.
PRECISION = "float64"


def tick_record(state: WorldState, outcome: TickOutcome, step_us: int, ts_ms: int) -> dict[str, Any]:
    return {
        "world_id": state.world_id,
        "tick": outcome.tick,
        "sim_time": outcome.sim_time,
        "command_partition": state.partition if outcome.first_command_offset is not None else None,
        "first_command_offset": outcome.first_command_offset,
        "last_command_offset": outcome.last_command_offset,
        "n_applied": outcome.n_applied,
        "n_rejected": outcome.n_rejected,
        "body_count": len(state.world),
        "total_energy": state.world.total_energy(),
        "state_hash": state.state_hash(),
        "step_duration_us": int(step_us),
        "backend": outcome.backend,
        "precision": PRECISION,
        "ts": ts_ms,
    }


def rejection_record(world_id: str, tick: int | None, rej: Rejection, ts_ms: int) -> dict[str, Any]:
    return {
        "command_id": str(rej.command.command_id),
        "world_id": world_id,
        "player_id": rej.command.player_id,
        "reason": rej.reason.value,
        "message": rej.message,
        "tick": tick,
        "command_offset": rej.offset,
        "ts": ts_ms,
    }


def _params(state: WorldState) -> dict[str, Any]:
    p = state.world.params
    return {
        "G": p.G, "softening": p.softening, "tick_rate_hz": state.tick_rate_hz,
        "dt": state.dt, "merge_on_contact": p.merge_on_contact,
        "snapshot_every": state.snapshot_every,
    }


def snapshot_record(state: WorldState, ts_ms: int) -> dict[str, Any]:
    w = state.world
    bodies = columnar.Bodies(
        ids=w.ids, kinds=state.kinds_array(), masses=w.masses, radii=w.radii,
        positions=w.positions, velocities=w.velocities,
    )
    return {
        "world_id": state.world_id,
        "tick": w.tick,
        "sim_time": w.time,
        "params": _params(state),
        "command_partition": state.partition,
        "last_command_offset": state.last_command_offset,
        "body_count": len(w),
        "state_hash": state.state_hash(),
        "backend": w.backend,
        **columnar.pack_bodies(bodies, "FLOAT64"),
        "owners": [state.owners.get(int(i), "") for i in w.ids] if state.owners else [],
        "world_owner": state.world_owner,
        "recent_commands": [str(i) for i in state.recent.ids()],
        "ts": ts_ms,
    }


def state_from_snapshot(record: dict[str, Any], partition: int) -> WorldState:
    """Rebuild the exact state a snapshot holds (its hash is checked by the caller)."""
    b = columnar.unpack_bodies(record)
    p = record["params"]
    world = World.from_arrays(
        b.ids.copy(), b.masses.copy(), b.positions.copy(), b.velocities.copy(), b.radii.copy(),
        G=p["G"], softening=p["softening"], merge_on_contact=bool(p["merge_on_contact"]),
        tick=int(record["tick"]), time=float(record["sim_time"]),
        backend=record.get("backend", "cpu"),
    )
    owners = record.get("owners") or []
    if owners and len(owners) != len(b.ids):
        raise ValueError(f"snapshot has {len(owners)} owners for {len(b.ids)} bodies")
    return WorldState(
        owners={int(i): str(o) for i, o in zip(b.ids, owners, strict=False) if o},
        world_owner=record.get("world_owner"),
        recent=RecentCommands(uuid.UUID(str(c)) for c in record.get("recent_commands") or ()),
        world_id=str(record["world_id"]),
        partition=partition,
        world=world,
        kinds={int(i): int(k) for i, k in zip(b.ids, b.kinds, strict=True)},
        tick_rate_hz=float(p["tick_rate_hz"]),
        dt=float(p["dt"]),
        snapshot_every=int(p["snapshot_every"]),
        last_command_offset=record["last_command_offset"],
    )


def status_record(world_id: str, partition: int, state: WorldState | None, status: str,
                  reason: str, worker_id: str, ts_ms: int) -> dict[str, Any]:
    """A WorldStatus; ``state`` is None for a world that could not even be rebuilt."""
    try:
        state_hash = "" if state is None else state.state_hash()
    except Exception:  # noqa: BLE001 - a broken world's status must still be written
        state_hash = ""
    return {
        "world_id": world_id,
        "status": status,
        "tick": -1 if state is None else state.world.tick,
        "command_partition": partition,
        "last_command_offset": None if state is None else state.last_command_offset,
        "body_count": 0 if state is None else len(state.world),
        "state_hash": state_hash,
        "backend": "cpu" if state is None else state.world.backend,
        "reason": reason[:2000],
        "worker_id": worker_id,
        "ts": ts_ms,
    }
