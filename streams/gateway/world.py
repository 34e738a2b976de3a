"""One world as the gateway sees it, and the tick every subscriber of it shares.

The gateway folds each ``StateDelta`` of a world into a
:class:`~streams.worlds.deltas.DeltaMirror`, exactly as a frontend of the
Kafka topic would, so its positions are within the physics worker's
dead-reckoning tolerance of the true ones. Then, once per tick and not once per
client, it puts the whole world on the grid (:class:`Grid`) and publishes a
:class:`Tick` that every subscriber of the world reads.

Error bound: a coordinate ``x`` is sent as ``q = round(x / step)`` and shown as
``q * step``, so each axis is off by at most ``step / 2`` and a position by at
most ``step * sqrt(3) / 2`` (:attr:`Grid.position_bound`) from the gateway's
position; add the worker's ``delta_tolerance`` for the distance to the engine's
own float64 state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
from opentelemetry.context import Context

from cosmic.timeutil import to_ms
from schemas import columnar
from streams.worlds.deltas import DeltaMirror

from .errors import InvalidView

Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]


def locate(sorted_ids: Ints, query: Ints) -> tuple[Ints, npt.NDArray[np.bool_]]:
    """For each of ``query``: its index in ``sorted_ids`` (0 where absent), and whether found."""
    if not len(sorted_ids):
        return np.zeros(len(query), np.int64), np.zeros(len(query), bool)
    slot = np.minimum(np.searchsorted(sorted_ids, query), len(sorted_ids) - 1)
    return slot, sorted_ids[slot] == query


@dataclass(frozen=True, slots=True)
class Grid:
    """The quantization grid: lengths and speeds are sent as integer multiples of these."""

    position_step: float
    velocity_step: float

    def __post_init__(self) -> None:
        for name in ("position_step", "velocity_step"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be finite and > 0, got {value!r}")

    @property
    def position_bound(self) -> float:
        """Most distance between a shown position and the gateway's."""
        return self.position_step * math.sqrt(3) / 2

    @property
    def velocity_bound(self) -> float:
        return self.velocity_step * math.sqrt(3) / 2

    def positions(self, values: npt.ArrayLike) -> Ints:
        return np.rint(np.asarray(values, np.float64) / self.position_step).astype(np.int64)

    def velocities(self, values: npt.ArrayLike) -> Ints:
        return np.rint(np.asarray(values, np.float64) / self.velocity_step).astype(np.int64)


def _finite3(name: str, v: tuple[float, ...]) -> None:
    if len(v) != 3 or not all(math.isfinite(c) for c in v):
        raise InvalidView(f"a view's {name} must be 3 finite numbers, got {v!r}")


@dataclass(frozen=True, slots=True)
class View:
    """An area of interest: the bodies within ``radius`` of ``center``.

    Every area (this sphere, :class:`BoxView`) answers the same questions for a
    :class:`~.session.Subscriber`: which positions it holds when grown by a
    fraction (the hysteresis), which x-slab can hold those, and its ``size``
    (the distance that scales priorities).
    """

    center: tuple[float, float, float]
    radius: float

    def __post_init__(self) -> None:
        _finite3("centre", self.center)
        if not (math.isfinite(self.radius) and self.radius > 0):
            raise InvalidView(f"a view's radius must be finite and > 0, got {self.radius!r}")

    @property
    def size(self) -> float:
        return self.radius

    def x_range(self, grow: float = 0.0) -> tuple[float, float]:
        reach = self.radius * (1 + grow) if grow else self.radius
        return self.center[0] - reach, self.center[0] + reach

    def contains(self, positions: Floats, grow: float = 0.0) -> npt.NDArray[np.bool_]:
        """Which of ``positions`` (n, 3) are within the radius, times ``1 + grow``."""
        dist = np.linalg.norm(positions - np.asarray(self.center), axis=1)
        return dist <= (self.radius * (1 + grow) if grow else self.radius)


@dataclass(frozen=True, slots=True)
class BoxView:
    """An area of interest: the bodies in the axis-aligned box ``low`` .. ``high``
    (faces included). Grown by a fraction ``g``, each face moves out by ``g`` times
    the box's half-size on its axis: the box scaled by ``1 + g`` about its centre."""

    low: tuple[float, float, float]
    high: tuple[float, float, float]

    def __post_init__(self) -> None:
        _finite3("min corner", self.low)
        _finite3("max corner", self.high)
        if not all(lo < hi for lo, hi in zip(self.low, self.high, strict=True)):
            raise InvalidView(f"a box's min must be below its max on every axis, got "
                              f"{self.low!r} .. {self.high!r}")

    @property
    def center(self) -> tuple[float, float, float]:
        c = [(lo + hi) / 2 for lo, hi in zip(self.low, self.high, strict=True)]
        return c[0], c[1], c[2]

    @property
    def size(self) -> float:
        """Half the diagonal: the radius of the sphere around the box."""
        return math.dist(self.low, self.high) / 2

    def bounds(self, grow: float = 0.0) -> tuple[Floats, Floats]:
        lo, hi = np.asarray(self.low), np.asarray(self.high)
        if not grow:
            return lo, hi
        margin = (hi - lo) / 2 * grow
        return lo - margin, hi + margin

    def x_range(self, grow: float = 0.0) -> tuple[float, float]:
        lo, hi = self.bounds(grow)
        return float(lo[0]), float(hi[0])

    def contains(self, positions: Floats, grow: float = 0.0) -> npt.NDArray[np.bool_]:
        lo, hi = self.bounds(grow)
        return ((positions >= lo) & (positions <= hi)).all(axis=1)


Area = View | BoxView


@dataclass(frozen=True, slots=True)
class Tick:
    """A world after one tick, quantized once for all its subscribers (ids ascending).

    ``revisions`` count, per body, the changes of kind, mass or radius the gateway
    has seen; a client holding an older revision gets the body in full again.
    """

    world_id: str
    tick: int
    sim_time: float
    produced_ms: int
    grid: Grid
    ids: Ints
    kinds: npt.NDArray[np.uint8]
    masses: Floats
    radii: Floats
    positions: Floats  # (n, 3) float64: what the gateway believes, before quantizing
    qpositions: Ints  # (n, 3)
    qvelocities: Ints  # (n, 3)
    revisions: Ints
    # The bodies ordered by x, once per tick, so each client looks only at a slab; their
    # positions in that order too, so a client's scan of its slab reads memory in turn.
    x_order: Ints = field(default_factory=lambda: np.empty(0, np.int64))
    x_sorted: Floats = field(default_factory=lambda: np.empty(0))
    x_positions: Floats = field(default_factory=lambda: np.empty((0, 3)))
    # The trace contexts its delta carried: one per traced command the tick applied.
    traces: tuple[Context, ...] = ()

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def near(self, center: tuple[float, float, float], reach: float) -> Tick:
        """The bodies with ``|x - center.x| <= reach`` (a superset of those within
        ``reach``), ids still ascending: what a view of that reach needs to look at."""
        return self.slab(center[0] - reach, center[0] + reach)

    def slab(self, x_low: float, x_high: float) -> Tick:
        """The bodies with ``x_low <= x <= x_high``, ids still ascending."""
        lo = np.searchsorted(self.x_sorted, x_low, side="left")
        hi = np.searchsorted(self.x_sorted, x_high, side="right")
        idx = np.sort(self.x_order[lo:hi])
        return replace(
            self, ids=self.ids[idx], kinds=self.kinds[idx], masses=self.masses[idx],
            radii=self.radii[idx], positions=self.positions[idx],
            qpositions=self.qpositions[idx], qvelocities=self.qvelocities[idx],
            revisions=self.revisions[idx], x_order=np.empty(0, np.int64),
            x_sorted=np.empty(0), x_positions=np.empty((0, 3)), traces=())


class WorldFeed:
    """Folds one world's deltas (and, on a late start, a snapshot) into quantized ticks."""

    def __init__(self, world_id: str, grid: Grid) -> None:
        self.world_id = world_id
        self.grid = grid
        self.mirror = DeltaMirror()
        self.revisions: Ints = np.empty(0, np.int64)  # in mirror.ids order
        self.latest: Tick | None = None
        # Deltas at or below this tick are already in a snapshot we started from.
        self.after_tick = 0

    def start_from_snapshot(self, record: dict[str, Any]) -> Tick:
        """Begin at a ``WorldSnapshot`` (float64 state) instead of the world's first tick."""
        bodies = columnar.unpack_bodies(record)
        self.mirror = DeltaMirror()
        self.mirror.apply(bodies, np.empty(0, np.int64), float(record["sim_time"]))
        self.revisions = np.zeros(len(self.mirror), np.int64)
        self.after_tick = int(record["tick"])
        return self._publish(int(record["tick"]), float(record["sim_time"]), to_ms(record["ts"]))

    def apply(self, record: dict[str, Any], traces: tuple[Context, ...] = ()) -> Tick | None:
        """Fold in a decoded ``StateDelta`` (and the trace contexts its record carried);
        None if a snapshot we started from covers it."""
        tick = int(record["tick"])
        if tick <= self.after_tick:
            return None
        bodies = columnar.unpack_bodies(record)
        before = self.mirror
        old_ids, old_kinds, old_masses, old_radii = (
            before.ids, before.kinds, before.masses, before.radii)
        old_revisions = self.revisions
        self.mirror.apply(bodies, columnar.removed_ids(record), float(record["sim_time"]))
        m = self.mirror
        # Carry revisions over by id; bump those whose kind, mass or radius changed.
        slot, known = locate(old_ids, m.ids)
        revisions = np.zeros(len(m.ids), np.int64)
        if len(old_ids):
            revisions[known] = old_revisions[slot[known]]
            changed = known & ((old_kinds[slot] != m.kinds) | (old_masses[slot] != m.masses)
                               | (old_radii[slot] != m.radii))
            revisions[changed] += 1
        self.revisions = revisions
        return self._publish(tick, float(record["sim_time"]), to_ms(record["ts"]), traces)

    def _publish(self, tick: int, sim_time: float, produced_ms: int,
                 traces: tuple[Context, ...] = ()) -> Tick:
        m = self.mirror
        positions = m.predict(sim_time)
        x_order = np.argsort(positions[:, 0], kind="stable")
        x_positions = positions[x_order]
        self.latest = Tick(
            world_id=self.world_id, tick=tick, sim_time=sim_time, produced_ms=produced_ms,
            grid=self.grid, ids=m.ids, kinds=m.kinds, masses=m.masses, radii=m.radii,
            positions=positions, qpositions=self.grid.positions(positions),
            qvelocities=self.grid.velocities(m.velocities), revisions=self.revisions,
            x_order=x_order, x_sorted=x_positions[:, 0].copy(), x_positions=x_positions,
            traces=traces)
        return self.latest
