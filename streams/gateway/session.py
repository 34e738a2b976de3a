"""One client's subscription: its view, what it holds, its budget, its next frame.

A :class:`Subscriber` is pure (no I/O, no clock): :meth:`Subscriber.frame`
turns the world's latest shared :class:`~.world.Tick` into the frame this
client needs, against its *baseline* (the quantized state it last received),
and advances the baseline to what the frame carries (:meth:`Subscriber.frame_bytes`
gives the frame's wire bytes, which is what the transports send; the work is
:mod:`.framing`'s numba kernels). The transport asks for a
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

**Shared encoding.** A frame is a pure function of the tick and of what the
client holds, and what it holds is a pure function of how it started (view,
budget, encoding) and of the ticks and views of its frames. So clients that
started alike and were served alike hold the same baseline, and
:class:`SharedFrames` computes their frame once per tick: the first asks the
kernels, the others adopt its bytes and its new baseline (the arrays are never
written in place, so they are shared as they are). :attr:`Subscriber.lineage`
names that history; a client that fell behind (it skipped ticks, moved, or is
new) is on a lineage of its own and gets its own snapshot or deltas, exactly as
before, and joins others again only by starting alike.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from schemas import columnar

from . import framing
from ._proto import gateway_pb2 as pb
from .world import Area, BoxView, Floats, Grid, Ints, Tick, View, WorldFeed, locate

# Bytes a frame costs besides its bodies (tags, lengths, tick, times): an estimate
# for choosing updates; the bucket is charged the frame's real size.
_FRAME_OVERHEAD = 40
# numpy's log2(1 + steps) for the usual few grid steps (see framing.log2_table).
_LOG2 = framing.log2_table()
_NO_STEPS = np.empty(0)


def predict(qpos: Ints, qvel: Ints, sent_at: Floats, sim_time: float, ratio: float) -> Ints:
    """Where a client shows bodies at ``sim_time``: sent position plus sent velocity times
    the time since, on the grid. ``ratio`` is velocity_step / position_step. The
    operations and their order are the wire contract's (every decoder repeats them):
    ``floor(v * ((t - t0) * ratio) + 0.5)``."""
    elapsed = (sim_time - sent_at) * ratio
    return qpos + np.floor(qvel * elapsed[:, None] + 0.5).astype(np.int64)


def warm() -> None:
    """Load the frame kernels (compiling them if numba's cache has none) now, before a
    client's first frame would wait for it: a few frames of a tiny world, both encodings,
    a sphere and a box. Idempotent; ~0.3 s from the cache."""
    global _warmed
    if _warmed:
        return
    feed = WorldFeed("warm", Grid(1e-3, 1e-3))
    subs = [Subscriber(view, bytes_per_s=1e6, predicted=predicted)
            for view in (View((0.0, 0.0, 0.0), 2.0), BoxView((-1.0, -1.0, -1.0), (1.0, 1.0, 1.0)))
            for predicted in (False, True)]
    ids = np.arange(1, 4, dtype=np.int64)
    for tick in (1, 2):
        bodies = columnar.Bodies(
            ids=ids, kinds=np.zeros(3, np.uint8), masses=np.ones(3), radii=np.ones(3),
            positions=np.full((3, 3), 0.1 * tick, np.float32),
            velocities=np.full((3, 3), 0.5 * tick, np.float32))
        shared = feed.apply({"world_id": "warm", "tick": tick, "sim_time": 0.05 * tick,
                             "ts": 50 * tick, **columnar.delta_fields(bodies)})
        assert shared is not None
        for sub in subs:
            sub.frame_bytes(shared)
    _warmed = True


_warmed = False


_State = tuple[object, int, Ints, Ints, Ints, Floats, Ints, Floats, float, int | None, float]


class SharedFrames:
    """One world's frames of its latest tick, each computed once per :meth:`Subscriber.share_key`.

    Only the latest tick's are kept: every subscriber is served the latest tick, and a
    new tick starts afresh."""

    def __init__(self) -> None:
        self._tick: Tick | None = None
        self._made: dict[tuple[object, ...], tuple[bytes, _State]] = {}
        self.computed = 0  # frames the kernels computed
        self.shared = 0  # frames adopted from another subscriber's

    def frame_bytes(self, subscriber: Subscriber, tick: Tick) -> bytes:
        """``subscriber.frame_bytes(tick)``, from another's work when it holds the same."""
        if tick is not self._tick:
            self._tick = tick
            self._made = {}
        key = subscriber.share_key()
        made = self._made.get(key)
        if made is None:
            data = subscriber.frame_bytes(tick)
            self._made[key] = (data, subscriber._state())
            self.computed += 1
            return data
        subscriber._adopt(tick, *made)
        self.shared += 1
        return made[0]


def _geometry(view: Area, grow: float) -> tuple[Floats, bool, float, float]:
    """What :func:`.framing.membership` needs of a view (its ``geom``), whether it is a
    box, and its grown x-slab; the same numbers :class:`.world.View` and
    :class:`.world.BoxView` compare against."""
    center = np.asarray(view.center, np.float64)
    if isinstance(view, BoxView):
        low, high = view.bounds()
        g_low, g_high = view.bounds(grow)
        geom = np.concatenate((center, [0.0, 0.0], low, high, g_low, g_high))
    else:
        reach = view.radius * (1 + grow) if grow else view.radius
        geom = np.concatenate((center, [framing.square_bound(view.radius),
                                        framing.square_bound(reach)]))
    x_low, x_high = view.x_range(grow)
    return geom.astype(np.float64), isinstance(view, BoxView), x_low, x_high


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
        self._geometry_of: tuple[Area, float] | None = None  # what _geometry is of
        self._geometry: tuple[Floats, bool, float, float] = (np.empty(0), False, 0.0, 0.0)
        self._size = 0.0
        # What this client's baseline came from: None while it holds nothing yet, then
        # the token of the frame that made it (see SharedFrames).
        self.lineage: object | None = None

    def share_key(self) -> tuple[object, ...]:
        """Equal for two subscribers whose next frame of the same tick is the same bytes."""
        return (self.lineage, self.view, self.hysteresis, self.predicted, self.bytes_per_s,
                self.burst_bytes)

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
        return pb.Frame.FromString(self.frame_bytes(tick))

    def frame_bytes(self, tick: Tick) -> bytes:
        """:meth:`frame`, serialized: what the transports send, without building a message."""
        snapshot = self.last_tick == 0
        if snapshot:
            self._ratio = tick.grid.velocity_step / tick.grid.position_step
        self._refill(tick.produced_ms)
        # Areas are frozen, so the same object is the same geometry.
        if (self._geometry_of is None or self._geometry_of[0] is not self.view
                or self._geometry_of[1] != self.hysteresis):
            self._geometry_of = (self.view, self.hysteresis)
            self._geometry = _geometry(self.view, self.hysteresis)
            self._size = float(self.view.size)
        x_positions = tick.x_positions
        if len(x_positions) != len(tick.x_order):  # a tick built without them
            x_positions = tick.positions[tick.x_order]
        grid = tick.grid
        args = (tick.ids, tick.kinds, tick.masses, tick.radii, tick.qpositions,
                tick.qvelocities, tick.revisions, tick.x_order, tick.x_sorted, x_positions,
                *self._geometry, self.ids, self.qpos, self.qvel, self.sent_at, self.revisions,
                self.priority, _LOG2)
        more = (self.predicted, tick.sim_time, self._ratio, self._size, self._tokens,
                _FRAME_OVERHEAD, tick.tick, self.last_tick, snapshot, grid.position_step,
                grid.velocity_step, tick.produced_ms,
                pb.PREDICTED if self.predicted else pb.DELTAS)
        done, steps, buf, *state = framing.frame(*args, _NO_STEPS, *more)
        if not done:  # steps beyond the table: numpy's log2 of them, as the weights need
            done, steps, buf, *state = framing.frame(*args, np.log2(1.0 + steps), *more)
        (self.deferred, self.ids, self.qpos, self.qvel, self.sent_at, self.revisions,
         self.priority) = state
        self.last_tick = tick.tick
        self.sim_time = tick.sim_time
        self._view_moved = False
        data = buf.tobytes()
        self._tokens -= len(data)
        self.bytes_sent += len(data)
        self.lineage = object()
        return data

    def _state(self) -> _State:
        return (self.lineage, self.deferred, self.ids, self.qpos, self.qvel, self.sent_at,
                self.revisions, self.priority, self._tokens, self._last_ms, self._ratio)

    def _adopt(self, tick: Tick, data: bytes, state: _State) -> None:
        """Become what another subscriber with this :meth:`share_key` became by ``data``."""
        (self.lineage, self.deferred, self.ids, self.qpos, self.qvel, self.sent_at,
         self.revisions, self.priority, self._tokens, self._last_ms, self._ratio) = state
        self.last_tick = tick.tick
        self.sim_time = tick.sim_time
        self._view_moved = False
        self.bytes_sent += len(data)

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
