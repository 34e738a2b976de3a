"""A frontend's copy of its view, rebuilt from the gateway's frames.

This is the reference decoder of :mod:`schemas/gateway.proto`'s ``Frame``,
in both update encodings: the Python client uses it, and the tests compare it
with what the gateway believes the client holds. Positions are ``q *
position_step``; with ``PREDICTED``, ``q`` is each body's dead reckoning from
the state last sent for it, corrected by the residuals a frame carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._proto import gateway_pb2 as pb
from .errors import BadRequest


@dataclass(slots=True)
class Body:
    kind: int
    mass: float
    radius: float
    qpos: tuple[int, int, int]  # shown at the replica's tick
    qvel: tuple[int, int, int]
    # What PREDICTED extrapolates from: the position last sent, and when (sim time).
    sent_qpos: tuple[int, int, int]
    sent_at: float


class FrameOutOfOrder(BadRequest):
    """A frame whose base is not the tick this replica is at."""


class Replica:
    """The bodies one subscription holds, by id."""

    def __init__(self) -> None:
        self.bodies: dict[int, Body] = {}
        self.tick = 0
        self.sim_time = 0.0
        self.position_step = 0.0
        self.velocity_step = 0.0
        self.predicted = False

    def apply(self, frame: pb.Frame) -> None:
        """Fold in the next frame; raises :class:`FrameOutOfOrder` if it does not follow."""
        try:
            self._apply(frame)
        except (KeyError, IndexError) as exc:
            raise FrameOutOfOrder(f"frame for tick {frame.tick} names a body not held: {exc}"
                                  ) from None

    def _apply(self, frame: pb.Frame) -> None:
        if frame.snapshot:
            self.bodies = {}
            self.position_step = frame.position_step
            self.velocity_step = frame.velocity_step
            self.predicted = frame.encoding == pb.PREDICTED
        elif frame.base_tick != self.tick:
            raise FrameOutOfOrder(f"frame based on tick {frame.base_tick}, replica at {self.tick}")
        for body_id in frame.leave:
            del self.bodies[body_id]
        t = frame.sim_time
        if self.predicted:
            self._predict(t)
        e = frame.enter
        for i, body_id in enumerate(e.ids):
            qpos = (e.positions[3 * i], e.positions[3 * i + 1], e.positions[3 * i + 2])
            self.bodies[body_id] = Body(
                e.kinds[i], e.masses[i], e.radii[i], qpos,
                (e.velocities[3 * i], e.velocities[3 * i + 1], e.velocities[3 * i + 2]), qpos, t)
        if self.predicted:
            self._residuals(frame.update, t)
        else:
            self._deltas(frame.update)
        self.tick = frame.tick
        self.sim_time = frame.sim_time

    def _deltas(self, u: pb.Updates) -> None:
        body_id = 0
        dp, dv = u.position_deltas, u.velocity_deltas
        for i, step in enumerate(u.id_steps):
            body_id += step
            b = self.bodies[body_id]
            b.qpos = (b.qpos[0] + dp[3 * i], b.qpos[1] + dp[3 * i + 1], b.qpos[2] + dp[3 * i + 2])
            b.qvel = (b.qvel[0] + dv[3 * i], b.qvel[1] + dv[3 * i + 1], b.qvel[2] + dv[3 * i + 2])
            b.sent_qpos = b.qpos

    def _predict(self, t: float) -> None:
        """Every body where its dead reckoning puts it at ``t`` (the contract's formula)."""
        ratio = self.velocity_step / self.position_step
        for b in self.bodies.values():
            elapsed = (t - b.sent_at) * ratio
            p, v = b.sent_qpos, b.qvel
            b.qpos = (p[0] + math.floor(v[0] * elapsed + 0.5),
                      p[1] + math.floor(v[1] * elapsed + 0.5),
                      p[2] + math.floor(v[2] * elapsed + 0.5))

    def _residuals(self, u: pb.Updates, t: float) -> None:
        if len(u.changed) != len(u.id_steps):
            raise FrameOutOfOrder(f"{len(u.id_steps)} updated bodies with {len(u.changed)} masks")
        body_id = at = 0
        values = u.residuals
        for step, mask in zip(u.id_steps, u.changed, strict=True):
            body_id += step
            b = self.bodies[body_id]
            r = [0] * 6
            for bit in range(6):
                if mask >> bit & 1:
                    r[bit] = values[at]  # IndexError past the end: FrameOutOfOrder
                    at += 1
            b.qpos = (b.qpos[0] + r[0], b.qpos[1] + r[1], b.qpos[2] + r[2])
            b.qvel = (b.qvel[0] + r[3], b.qvel[1] + r[4], b.qvel[2] + r[5])
            b.sent_qpos, b.sent_at = b.qpos, t
        if at != len(values):
            raise FrameOutOfOrder(f"{len(values)} residuals where the masks name {at}")

    def ids(self) -> np.ndarray:
        return np.array(sorted(self.bodies), np.int64)

    def positions(self) -> np.ndarray:
        """(n, 3) positions in :meth:`ids` order, in length units."""
        if not self.bodies:
            return np.empty((0, 3))
        q = np.array([self.bodies[i].qpos for i in sorted(self.bodies)], np.float64)
        return q * self.position_step
