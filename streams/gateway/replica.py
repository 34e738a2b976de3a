"""A frontend's copy of its view, rebuilt from the gateway's frames.

This is the reference decoder of :mod:`schemas/gateway.proto`'s ``Frame``:
the Python client uses it, and the tests compare it with what the gateway
believes the client holds. Positions are ``q * position_step``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._proto import gateway_pb2 as pb
from .errors import BadRequest


@dataclass(slots=True)
class Body:
    kind: int
    mass: float
    radius: float
    qpos: tuple[int, int, int]
    qvel: tuple[int, int, int]


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
        elif frame.base_tick != self.tick:
            raise FrameOutOfOrder(f"frame based on tick {frame.base_tick}, replica at {self.tick}")
        for body_id in frame.leave:
            del self.bodies[body_id]
        e = frame.enter
        for i, body_id in enumerate(e.ids):
            self.bodies[body_id] = Body(
                e.kinds[i], e.masses[i], e.radii[i],
                (e.positions[3 * i], e.positions[3 * i + 1], e.positions[3 * i + 2]),
                (e.velocities[3 * i], e.velocities[3 * i + 1], e.velocities[3 * i + 2]))
        u = frame.update
        body_id = 0
        dp, dv = u.position_deltas, u.velocity_deltas
        for i, step in enumerate(u.id_steps):
            body_id += step
            b = self.bodies[body_id]
            b.qpos = (b.qpos[0] + dp[3 * i], b.qpos[1] + dp[3 * i + 1], b.qpos[2] + dp[3 * i + 2])
            b.qvel = (b.qvel[0] + dv[3 * i], b.qvel[1] + dv[3 * i + 1], b.qvel[2] + dv[3 * i + 2])
        self.tick = frame.tick
        self.sim_time = frame.sim_time

    def ids(self) -> np.ndarray:
        return np.array(sorted(self.bodies), np.int64)

    def positions(self) -> np.ndarray:
        """(n, 3) positions in :meth:`ids` order, in length units."""
        if not self.bodies:
            return np.empty((0, 3))
        q = np.array([self.bodies[i].qpos for i in sorted(self.bodies)], np.float64)
        return q * self.position_step
