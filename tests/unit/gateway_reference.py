"""The numpy implementation of ``Subscriber.frame`` that the numba kernels replaced.

Kept only as the reference :mod:`tests.unit.test_gateway_framing` compares the
kernels against, frame by frame and byte by byte: a subclass of the real
:class:`~streams.gateway.session.Subscriber` whose :meth:`frame` is the old code.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from streams.gateway._proto import gateway_pb2 as pb
from streams.gateway.session import _FRAME_OVERHEAD, Subscriber, predict
from streams.gateway.world import Ints, Tick, locate

_BITS = 1 << np.arange(6, dtype=np.int64)


def varint_sizes(zigzag: Ints) -> Ints:
    v = zigzag.astype(np.uint64)
    size = np.ones(v.shape, np.int64)
    for shift in range(7, 64, 7):
        size += (v >> np.uint64(shift)) > 0
    return size


def zigzag(values: Ints) -> Ints:
    v = values.astype(np.int64)
    return ((v << 1) ^ (v >> 63)).astype(np.int64)


class ReferenceSubscriber(Subscriber):
    """A :class:`Subscriber` whose frames come from the old numpy code."""

    def frame(self, tick: Tick) -> pb.Frame:  # type: ignore[override]
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
