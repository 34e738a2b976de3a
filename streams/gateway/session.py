"""One client's subscription: its view, what it holds, its budget, its next frame.

A :class:`Subscriber` is pure (no I/O, no clock): :meth:`Subscriber.frame`
turns the world's latest shared :class:`~.world.Tick` into the frame this
client needs, against its *baseline* (the quantized state it last received),
and advances the baseline to what the frame carries. The transport asks for a
frame only when it can send one, so a client that reads slowly simply gets a
frame against an older baseline: the latest state, coalesced, and never a
queue.

Per frame:

- **Membership, with hysteresis.** A body enters when it is inside the view
  (within the radius of a sphere, or inside a box); a body held leaves only
  when it is outside the view grown by ``hysteresis`` (``radius * (1 +
  hysteresis)``; a box scaled by ``1 + hysteresis`` about its centre) or gone
  from the world. Enters and leaves are never deferred,
  so the client's set equals the gateway's set for it after every frame.
- **Updates under a budget.** Held bodies whose quantized position or velocity
  moved are candidates. Each candidate's priority grows every frame it waits,
  by a weight that is larger for near bodies (distance to the view's centre
  against its size: a sphere's radius, a box's half-diagonal) and for bodies
  that moved many grid steps, and never below a positive floor, so every body in view is sent
  eventually. Candidates go in descending priority while the frame fits the
  client's byte budget (a token bucket refilled by the producer's tick times,
  so the choice depends on the ticks, not on when the client reads).
- **Two encodings** (``schemas/gateway.proto``'s ``Encoding``). ``DELTAS``: an
  update is the change since the state last sent for the body. ``PREDICTED``:
  client and gateway both extrapolate each body from the state last sent for
  it (:func:`predict`, integer results from one order of double operations), and
  an update carries only the non-zero residuals against that. A body whose
  residual is zero is left out, which on smooth orbits is most of them;
  either way, a body updated is exactly on the grid.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from ._proto import gateway_pb2 as pb
from .world import Area, Floats, Ints, Tick, locate

# Bytes a frame costs besides its bodies (tags, lengths, tick, times): an estimate
# for choosing updates; the bucket is charged the frame's real size.
_FRAME_OVERHEAD = 40


def varint_sizes(zigzag: Ints) -> Ints:
    """Bytes each unsigned value takes as a protobuf varint."""
    v = zigzag.astype(np.uint64)
    size = np.ones(v.shape, np.int64)
    for shift in range(7, 64, 7):
        size += (v >> np.uint64(shift)) > 0
    return size


def zigzag(values: Ints) -> Ints:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.int64)


# Bit i of a PREDICTED update's ``changed`` mask: residual i (position x, y, z; velocity
# x, y, z) is sent.
_BITS = 1 << np.arange(6, dtype=np.int64)


def predict(qpos: Ints, qvel: Ints, sent_at: Floats, sim_time: float, ratio: float) -> Ints:
    """Where a client shows bodies at ``sim_time``: sent position plus sent velocity times
    the time since, on the grid. ``ratio`` is velocity_step / position_step. The
    operations and their order are the wire contract's (every decoder repeats them):
    ``floor(v * ((t - t0) * ratio) + 0.5)``."""
    elapsed = (sim_time - sent_at) * ratio
    return qpos + np.floor(qvel * elapsed[:, None] + 0.5).astype(np.int64)


class Subscriber:
    """What one client of one world holds, and how to bring it up to date."""

    def __init__(self, view: Area, *, bytes_per_s: float, hysteresis: float = 0.05,
                 burst_s: float = 1.0, predicted: bool = False) -> None:
        if not (math.isfinite(bytes_per_s) and bytes_per_s > 0):
            raise ValueError(f"bytes_per_s must be > 0, got {bytes_per_s!r}")
        self.view = view
        self.bytes_per_s = float(bytes_per_s)
        self.hysteresis = float(hysteresis)
        self.burst_bytes = self.bytes_per_s * burst_s
        self.predicted = predicted  # the PREDICTED encoding (else DELTAS)
        self.last_tick = 0  # the tick of the last frame; 0: none yet (next is a snapshot)
        self.sim_time = 0.0  # the last frame's
        self._view_moved = False
        self._tokens = self.burst_bytes
        self._last_ms: int | None = None
        # The baseline, ids ascending: what the client holds, as last sent (position,
        # velocity, and the sim time they were sent at, which PREDICTED extrapolates from).
        self.ids: Ints = np.empty(0, np.int64)
        self.qpos: Ints = np.empty((0, 3), np.int64)
        self.qvel: Ints = np.empty((0, 3), np.int64)
        self.sent_at: Floats = np.empty(0)
        self._ratio = 0.0  # velocity_step / position_step, from the first frame's grid
        self.revisions: Ints = np.empty(0, np.int64)
        self.priority: Floats = np.empty(0)
        self.bytes_sent = 0
        self.deferred = 0

    def move(self, view: Area) -> None:
        """A new area of interest; it applies from the next frame."""
        self.view = view
        self._view_moved = True

    def due(self, tick: Tick) -> bool:
        """Whether :meth:`frame` has anything new for this client."""
        return tick.tick != self.last_tick or self._view_moved

    def shown(self, sim_time: float | None = None) -> Ints:
        """The grid positions the client shows (at the last frame, or at ``sim_time``)."""
        if not self.predicted:
            return self.qpos
        at = self.sim_time if sim_time is None else sim_time
        return predict(self.qpos, self.qvel, self.sent_at, at, self._ratio)

    def frame(self, tick: Tick) -> pb.Frame:
        """The frame that brings this client to ``tick``; the baseline becomes what it carries."""
        snapshot = self.last_tick == 0
        if snapshot:
            self._ratio = tick.grid.velocity_step / tick.grid.position_step
        self._refill(tick.produced_ms)
        view, grow = self.view, self.hysteresis
        r = view.size
        # Only the slab that can hold the view matters: a held body outside it is
        # beyond the view's outer edge, so it leaves.
        tick = tick.slab(*view.x_range(grow))
        dist = np.linalg.norm(tick.positions - np.asarray(view.center), axis=1)

        # Where each of the world's bodies sits in the baseline (-1: not held).
        slot_c, held = locate(self.ids, tick.ids)
        in_view = view.contains(tick.positions) | (held & view.contains(tick.positions, grow))
        stays = in_view & held
        if len(self.ids):
            stays &= self.revisions[slot_c] == tick.revisions
        enters = in_view & ~stays
        kept_base = np.zeros(len(self.ids), bool)
        kept_base[slot_c[stays]] = True
        leaves = self.ids[~kept_base & ~np.isin(self.ids, tick.ids[enters])]

        # Candidates for an update: held, in view, and elsewhere on the grid than the
        # client shows them.
        s_idx = np.flatnonzero(stays)
        b_idx = slot_c[s_idx]
        shown = self.qpos[b_idx]
        if self.predicted:
            shown = predict(shown, self.qvel[b_idx], self.sent_at[b_idx], tick.sim_time,
                            self._ratio)
        dq = tick.qpositions[s_idx] - shown
        dv = tick.qvelocities[s_idx] - self.qvel[b_idx]
        moved = (dq != 0).any(axis=1) | (dv != 0).any(axis=1)
        steps = np.abs(dq).max(axis=1) if len(dq) else np.empty(0, np.int64)
        weight = (1.0 + np.log2(1.0 + steps)) * (r / (r + dist[s_idx]))
        priority = self.priority[b_idx] + np.where(moved, weight, 0.0)

        enter_idx = np.flatnonzero(enters)
        cost = _FRAME_OVERHEAD + self._enter_cost(tick, enter_idx) + 9 * len(leaves)
        cand = np.flatnonzero(moved)
        order = cand[np.argsort(-priority[cand], kind="stable")]
        each = self._update_cost(dq[order], dv[order])
        room = self._tokens - cost
        n_send = int(np.searchsorted(np.cumsum(each), room, side="right")) if room > 0 else 0
        self.deferred = len(order) - n_send  # moved, but left for a later frame (metrics)
        send = np.sort(order[:n_send])

        out = pb.Frame(tick=tick.tick, base_tick=self.last_tick, sim_time=tick.sim_time,
                       snapshot=snapshot, produced_ms=tick.produced_ms)
        if snapshot:
            out.position_step = tick.grid.position_step
            out.velocity_step = tick.grid.velocity_step
            out.encoding = pb.PREDICTED if self.predicted else pb.DELTAS
        if len(enter_idx):
            e = out.enter
            e.ids.extend(tick.ids[enter_idx].tolist())
            e.kinds.extend(tick.kinds[enter_idx].tolist())
            e.masses.extend(tick.masses[enter_idx].tolist())
            e.radii.extend(tick.radii[enter_idx].tolist())
            e.positions.extend(tick.qpositions[enter_idx].ravel().tolist())
            e.velocities.extend(tick.qvelocities[enter_idx].ravel().tolist())
        if len(send):
            ids = tick.ids[s_idx[send]]
            u = out.update
            u.id_steps.extend(np.diff(ids, prepend=0).tolist())
            if self.predicted:
                residuals = np.concatenate((dq[send], dv[send]), axis=1)
                nonzero = residuals != 0
                u.changed.extend((nonzero @ _BITS).tolist())
                u.residuals.extend(residuals[nonzero].tolist())
            else:
                u.position_deltas.extend(dq[send].ravel().tolist())
                u.velocity_deltas.extend(dv[send].ravel().tolist())
        if len(leaves):
            out.leave.extend(np.sort(leaves).tolist())

        # The new baseline: stayers (updated ones at their new values) and enters.
        priority[send] = 0.0
        new_qpos = self.qpos[b_idx]
        new_qvel = self.qvel[b_idx]
        new_sent_at = self.sent_at[b_idx]
        new_qpos[send] = tick.qpositions[s_idx[send]]
        new_qvel[send] = tick.qvelocities[s_idx[send]]
        new_sent_at[send] = tick.sim_time
        ids = np.concatenate((tick.ids[s_idx], tick.ids[enter_idx]))
        order_ids = np.argsort(ids, kind="stable")
        self.ids = ids[order_ids]
        self.qpos = np.concatenate((new_qpos, tick.qpositions[enter_idx]))[order_ids]
        self.qvel = np.concatenate((new_qvel, tick.qvelocities[enter_idx]))[order_ids]
        self.sent_at = np.concatenate((new_sent_at, np.full(len(enter_idx), tick.sim_time))
                                      )[order_ids]
        self.revisions = np.concatenate((tick.revisions[s_idx],
                                         tick.revisions[enter_idx]))[order_ids]
        self.priority = np.concatenate((priority, np.zeros(len(enter_idx))))[order_ids]
        self.last_tick = tick.tick
        self.sim_time = tick.sim_time
        self._view_moved = False
        size = out.ByteSize()
        self._tokens -= size
        self.bytes_sent += size
        return out

    def pending(self, tick: Tick) -> npt.NDArray[np.int64]:
        """Ids held whose baseline differs from ``tick`` on the grid (not yet updated)."""
        slot_c, found = locate(tick.ids, self.ids)
        if not len(tick):
            return np.empty(0, np.int64)
        differs = ((tick.qpositions[slot_c] != self.shown(tick.sim_time)).any(axis=1)
                   | (tick.qvelocities[slot_c] != self.qvel).any(axis=1))
        return self.ids[found & differs]

    def _refill(self, produced_ms: int) -> None:
        if self._last_ms is not None:
            elapsed = max(0, produced_ms - self._last_ms) / 1000
            self._tokens = min(self.burst_bytes, self._tokens + elapsed * self.bytes_per_s)
        self._last_ms = produced_ms

    def _update_cost(self, dq: Ints, dv: Ints) -> Ints:
        """Bytes each update takes: its id step (taken as 1) and its values."""
        if not len(dq):
            return np.empty(0, np.int64)
        values = np.concatenate((dq, dv), axis=1)
        sizes = varint_sizes(zigzag(values))
        if self.predicted:  # zeros are not sent; the mask is a byte
            return 2 + np.where(values != 0, sizes, 0).sum(axis=1)
        return 1 + sizes.sum(axis=1)

    @staticmethod
    def _enter_cost(tick: Tick, idx: npt.NDArray[np.intp]) -> int:
        if not len(idx):
            return 0
        q = np.concatenate((tick.qpositions[idx], tick.qvelocities[idx]), axis=1)
        # id (≤10) + kind (1) + mass and radius (8 each) + six quantized coordinates.
        return int(len(idx) * 27 + varint_sizes(zigzag(q)).sum())
