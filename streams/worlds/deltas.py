"""Dead-reckoned state deltas: send a body only when a frontend's guess drifts too far.

A frontend knows, per body, the last state it was sent and extrapolates it
linearly. :class:`DeltaMirror` is exactly that knowledge, and the worker keeps
one per world: a body goes into the next delta when it is new, changed mass or
radius (a merger), or its true position is more than ``tolerance`` away from
the mirror's extrapolation. Removed bodies are listed by id. Because the
worker decides with the same mirror a frontend builds from the deltas, a
frontend that applies every delta stays within ``tolerance`` (or float32
rounding, if larger) of the true positions at every tick.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from schemas import columnar

from .outcome import TickOutcome
from .state import WorldState

F32 = np.float32


class DeltaMirror:
    """Per body: the last sent kind, mass, radius, position, velocity and sim time, by id."""

    def __init__(self) -> None:
        self.ids = np.empty(0, np.int64)  # kept sorted
        self.kinds = np.empty(0, np.uint8)
        self.masses = np.empty(0)
        self.radii = np.empty(0)
        self.positions = np.empty((0, 3), F32)
        self.velocities = np.empty((0, 3), F32)
        self.sent_at = np.empty(0)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def apply(self, bodies: columnar.Bodies, removed: npt.ArrayLike, sim_time: float) -> None:
        """Fold one delta in: drop removed ids, then insert or replace the sent bodies."""
        drop = np.isin(self.ids, np.asarray(removed, np.int64)) | np.isin(self.ids, bodies.ids)
        keep = ~drop
        n = len(bodies)
        ids = np.concatenate((self.ids[keep], bodies.ids))
        order = np.argsort(ids, kind="stable")
        self.ids = ids[order]
        self.kinds = np.concatenate((self.kinds[keep], bodies.kinds))[order]
        self.masses = np.concatenate((self.masses[keep], bodies.masses))[order]
        self.radii = np.concatenate((self.radii[keep], bodies.radii))[order]
        self.positions = np.concatenate(
            (self.positions[keep], bodies.positions.astype(F32, copy=False)))[order]
        self.velocities = np.concatenate(
            (self.velocities[keep], bodies.velocities.astype(F32, copy=False)))[order]
        self.sent_at = np.concatenate((self.sent_at[keep], np.full(n, sim_time)))[order]

    def apply_record(self, record: dict[str, Any]) -> None:
        """Fold in a decoded ``StateDelta`` record, as a frontend does."""
        self.apply(columnar.unpack_bodies(record), columnar.removed_ids(record),
                   float(record["sim_time"]))

    def predict(self, sim_time: float) -> npt.NDArray[np.float64]:
        """Extrapolated positions (float64, in ``self.ids`` order) at ``sim_time``."""
        elapsed = (sim_time - self.sent_at)[:, None]
        return self.positions.astype(np.float64) + self.velocities.astype(np.float64) * elapsed


@njit(error_model="numpy", boundscheck=False, cache=True)
def _drifted(positions, guess_pos, guess_vel, sent_at, slots, t, tolerance, send):
    # The known-bodies branch of DeadReckoner.delta in one compiled loop: the same
    # float64 operations in the same order as its numpy form (the norm sums x, y, z left
    # to right, as numpy's reduction of a length-3 row does), so the same bodies are sent.
    for i in range(positions.shape[0]):
        k = slots[i]
        elapsed = t - sent_at[k]
        dx = positions[i, 0] - (np.float64(guess_pos[k, 0]) + np.float64(guess_vel[k, 0]) * elapsed)
        dy = positions[i, 1] - (np.float64(guess_pos[k, 1]) + np.float64(guess_vel[k, 1]) * elapsed)
        dz = positions[i, 2] - (np.float64(guess_pos[k, 2]) + np.float64(guess_vel[k, 2]) * elapsed)
        send[i] = np.sqrt((dx * dx + dy * dy) + dz * dz) > tolerance


class DeadReckoner:
    """Decides each tick's delta for one world and keeps the mirror in step."""

    def __init__(self, tolerance: float) -> None:
        if not tolerance > 0:
            raise ValueError(f"dead-reckoning tolerance must be > 0, got {tolerance!r}")
        self.tolerance = float(tolerance)
        self.mirror = DeltaMirror()
        # While the world's ids are the mirror's (the usual tick: nothing spawned, removed
        # or merged), each body's slot in the mirror, for the fast path of delta().
        self._ids: npt.NDArray[np.int64] | None = None
        self._mirror_ids: npt.NDArray[np.int64] | None = None
        self._slots: npt.NDArray[np.int64] | None = None

    def delta(self, state: WorldState, outcome: TickOutcome) -> dict[str, Any]:
        """The StateDelta columns for this tick (float32 vectors), already folded in."""
        w = state.world
        ids = w.ids
        if (not outcome.changed_ids and self._slots is not None and self._ids is not None
                and self._mirror_ids is self.mirror.ids and np.array_equal(ids, self._ids)):
            return self._known_delta(state, self._slots)
        fields = self._general_delta(state, outcome)
        mirror = self.mirror
        # After apply() the mirror holds exactly the world's ids (every unknown id was
        # sent, every id the world lost was removed): remember where each one sits.
        self._ids, self._mirror_ids = ids.copy(), mirror.ids
        self._slots = np.searchsorted(mirror.ids, ids)
        return fields

    def _known_delta(self, state: WorldState, slots: npt.NDArray[np.int64]) -> dict[str, Any]:
        # Every body is in the mirror: a body goes out only if it drifted, and the mirror
        # is updated in place (apply() would rebuild the same arrays in the same order).
        w = state.world
        positions, t = w.positions, w.time
        mirror = self.mirror
        send = np.empty(len(slots), bool)
        _drifted(positions, mirror.positions, mirror.velocities, mirror.sent_at, slots, t,
                 self.tolerance, send)
        if send.any():
            bodies = columnar.Bodies(
                ids=w.ids[send], kinds=state.kinds_array()[send], masses=w.masses[send],
                radii=w.radii[send], positions=positions[send].astype(F32),
                velocities=w.velocities[send].astype(F32))
            k = slots[send]
            mirror.kinds[k] = bodies.kinds
            mirror.masses[k] = bodies.masses
            mirror.radii[k] = bodies.radii
            mirror.positions[k] = bodies.positions
            mirror.velocities[k] = bodies.velocities
            mirror.sent_at[k] = t
        else:
            bodies = _NO_BODIES
        return columnar.delta_fields(bodies, _NO_IDS, "FLOAT32")

    def _general_delta(self, state: WorldState, outcome: TickOutcome) -> dict[str, Any]:
        w = state.world
        ids, positions, t = w.ids, w.positions, w.time
        mirror = self.mirror
        slot = np.searchsorted(mirror.ids, ids)
        slot_c = np.minimum(slot, max(len(mirror) - 1, 0))
        known = (slot < len(mirror)) & (mirror.ids[slot_c] == ids) if len(mirror) else (
            np.zeros(len(ids), bool))
        send = ~known
        if known.any():
            k = slot_c[known]
            guess = mirror.positions[k].astype(np.float64) + mirror.velocities[k].astype(
                np.float64) * (t - mirror.sent_at[k])[:, None]
            drift = np.linalg.norm(positions[known] - guess, axis=1)
            send[known] = drift > self.tolerance
        if outcome.changed_ids:
            send |= np.isin(ids, np.asarray(outcome.changed_ids, np.int64))
        removed = mirror.ids[~np.isin(mirror.ids, ids)]
        kinds = state.kinds_array()
        bodies = columnar.Bodies(
            ids=ids[send], kinds=kinds[send], masses=w.masses[send], radii=w.radii[send],
            positions=positions[send].astype(F32), velocities=w.velocities[send].astype(F32),
        )
        mirror.apply(bodies, removed, t)
        return columnar.delta_fields(bodies, removed, "FLOAT32")


_NO_IDS = np.empty(0, np.int64)
_NO_BODIES = columnar.Bodies(
    ids=_NO_IDS, kinds=np.empty(0, np.uint8), masses=np.empty(0), radii=np.empty(0),
    positions=np.empty((0, 3), F32), velocities=np.empty((0, 3), F32))
for _column in (_NO_IDS, _NO_BODIES.kinds, _NO_BODIES.masses, _NO_BODIES.radii,
                _NO_BODIES.positions, _NO_BODIES.velocities):
    _column.flags.writeable = False  # shared by every empty delta
