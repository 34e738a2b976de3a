"""The World: one simulated universe, its bodies, its parameters and its clock.

State is a structure of arrays in world order (see :mod:`.hashing` for the
order rule): ``ids`` (int64), ``masses``, ``radii`` (float64), ``positions``
and ``velocities`` (float64, shape (n, 3)), plus ``tick``, simulated ``time``
and :class:`~.params.WorldParams`. Arrays are never modified in place; every
change swaps in new arrays, so the read-only views the properties return are
stable snapshots of the tick they were taken at.

Example::

    from streams.physics import World, plummer_sphere
    ids, m, x, v = plummer_sphere(1000, seed=1)
    w = World.from_arrays(ids, m, x, v, softening=0.01)
    w.step(0.001, steps=10)
    w.tick, w.total_energy(), w.state_hash()
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from . import backends, direct, hashing, integrator, merging, validation
from .cpu import AUTO_TREE_MIN_BODIES
from .errors import BackendUnavailable, DuplicateBody, InvalidBody, InvalidParams, UnknownBody
from .params import WorldParams
from .types import F64Array, I64Array

_INTEGERS = (int, np.integer)


def _frozen(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


class World:
    """An N-body world; build it with :meth:`from_arrays`."""

    def __init__(
        self,
        ids: I64Array,
        masses: F64Array,
        radii: F64Array,
        positions: F64Array,
        velocities: F64Array,
        params: WorldParams,
        tick: int = 0,
        time: float = 0.0,
    ) -> None:
        # Trusted constructor: callers pass validated, owned arrays (from_arrays does).
        self._ids = ids
        self._masses = masses
        self._radii = radii
        self._positions = positions
        self._velocities = velocities
        self._params = params
        self._tick = int(tick)
        self._time = float(time)
        self._backend: backends.ForceBackend = backends.select(params.backend)
        self._acc: F64Array | None = None  # forces at the current positions, when known
        self._index: dict[int, int] | None = None

    # ----------------------------------------------------------------- building

    @classmethod
    def from_arrays(
        cls,
        ids: Any,
        masses: Any,
        positions: Any,
        velocities: Any,
        radii: Any | None = None,
        *,
        G: float = 1.0,
        softening: float = 0.0,
        solver: str = "auto",
        theta: float = 0.5,
        backend: str = "auto",
        merge_on_contact: bool = False,
        tick: int = 0,
        time: float = 0.0,
    ) -> World:
        """A world from body arrays (copied) and parameters; ``tick``/``time`` restore a snapshot.

        Raises :class:`~.errors.InvalidBody` (or :class:`~.errors.DuplicateBody`) for
        bad bodies and :class:`~.errors.InvalidParams` for bad parameters.
        """
        params = WorldParams(
            G=G, softening=softening, solver=solver, theta=theta,  # type: ignore[arg-type]
            backend=backend, merge_on_contact=merge_on_contact,  # type: ignore[arg-type]
        )
        if isinstance(tick, bool) or not isinstance(tick, int | np.integer) or tick < 0:
            raise InvalidParams(f"tick must be an integer >= 0, got {tick!r}")
        if not math.isfinite(float(time)):
            raise InvalidParams(f"time must be finite, got {time!r}")
        id_arr, mass, pos, vel, rad = validation.bodies(ids, masses, positions, velocities, radii)
        return cls(id_arr, mass, rad, pos, vel, params, int(tick), float(time))

    def to_arrays(self) -> dict[str, Any]:
        """Everything needed to rebuild this world bit for bit: ``World.from_arrays(**d)``."""
        p = self._params
        return {
            "ids": self._ids.copy(),
            "masses": self._masses.copy(),
            "positions": self._positions.copy(),
            "velocities": self._velocities.copy(),
            "radii": self._radii.copy(),
            "G": p.G,
            "softening": p.softening,
            "solver": p.solver,
            "theta": p.theta,
            "backend": p.backend,
            "merge_on_contact": p.merge_on_contact,
            "tick": self._tick,
            "time": self._time,
        }

    def copy(self) -> World:
        """An independent world in the same state (arrays are immutable, so they are shared)."""
        twin = World(
            self._ids, self._masses, self._radii, self._positions, self._velocities,
            self._params, self._tick, self._time,
        )
        twin._backend = self._backend
        twin._acc = self._acc
        return twin

    # --------------------------------------------------------------- the state

    @property
    def ids(self) -> I64Array:
        return _frozen(self._ids)

    @property
    def masses(self) -> F64Array:
        return _frozen(self._masses)

    @property
    def radii(self) -> F64Array:
        return _frozen(self._radii)

    @property
    def positions(self) -> F64Array:
        return _frozen(self._positions)

    @property
    def velocities(self) -> F64Array:
        return _frozen(self._velocities)

    @property
    def tick(self) -> int:
        """Number of steps taken since the world began (one per integration step)."""
        return self._tick

    @property
    def time(self) -> float:
        """Simulated time: the sum of every step's ``dt``."""
        return self._time

    @property
    def params(self) -> WorldParams:
        return self._params

    @property
    def backend(self) -> str:
        """The backend actually computing forces (``"cpu"`` or ``"cuda"``)."""
        return self._backend.name

    @property
    def solver(self) -> str:
        """The force solver the next step will use (``"direct"`` or ``"tree"``)."""
        if self._params.solver != "auto":
            return self._params.solver
        return self._backend.auto_solver(len(self))

    def __len__(self) -> int:
        return int(self._ids.shape[0])

    def __repr__(self) -> str:
        return (
            f"World(n={len(self)}, tick={self._tick}, time={self._time:g}, "
            f"solver={self.solver!r}, backend={self.backend!r})"
        )

    def index_of(self, body_id: int) -> int:
        """Position of ``body_id`` in the arrays; raises :class:`~.errors.UnknownBody`."""
        if self._index is None:
            self._index = {int(b): k for k, b in enumerate(self._ids.tolist())}
        try:
            return self._index[int(body_id)]
        except (KeyError, TypeError, ValueError):
            raise UnknownBody(body_id) from None

    def __contains__(self, body_id: object) -> bool:
        try:
            self.index_of(body_id)  # type: ignore[arg-type]
        except UnknownBody:
            return False
        return True

    # ---------------------------------------------------------------- dynamics

    def _compute(self, what: str, positions: F64Array, solver: str) -> F64Array:
        # A GPU failing mid-run (driver reset, out of memory) must not take the world down:
        # switch this world, and every later one, to the CPU and compute again.
        p = self._params
        try:
            fn = getattr(self._backend, what)
            result: F64Array = fn(positions, self._masses, p.G, p.softening, solver, p.theta)
            return result
        except BackendUnavailable as exc:
            if self._backend is backends.CPU:
                raise
            backends.mark_gpu_failed(str(exc))
            self._backend = backends.CPU
            return self._compute(what, positions, solver)

    def _forces(self, positions: F64Array) -> F64Array:
        return self._compute("accelerations", positions, self.solver)

    def step(self, dt: float, steps: int = 1) -> list[merging.Merge]:
        """Advance ``steps`` leapfrog steps of ``dt``; returns the merges that happened."""
        dt = float(dt)
        if not (math.isfinite(dt) and dt > 0.0):
            raise InvalidParams(f"dt must be finite and > 0, got {dt!r}", reason="invalid_step")
        if isinstance(steps, bool) or not isinstance(steps, _INTEGERS) or steps < 0:
            raise InvalidParams(f"steps must be an integer >= 0, got {steps!r}", reason="invalid_step")
        merges: list[merging.Merge] = []
        if self._fused(steps):
            if self._acc is None:
                self._acc = self._forces(self._positions)
            p = self._params
            self._positions, self._velocities, self._acc = direct.kdk_steps(
                self._positions, self._velocities, self._acc, self._masses, p.G, p.softening,
                dt, int(steps))
            for _ in range(int(steps)):  # the same float sum as one step at a time
                self._time += dt
            self._tick += int(steps)
            return merges
        for _ in range(int(steps)):
            if len(self) > 0:
                if self._acc is None:
                    self._acc = self._forces(self._positions)
                self._positions, self._velocities, self._acc = integrator.kick_drift_kick(
                    self._positions, self._velocities, self._acc, dt, self._forces
                )
            self._tick += 1
            self._time += dt
            if self._params.merge_on_contact:
                merges.extend(self._merge())
        return merges

    def _fused(self, steps: int) -> bool:
        # A small world on the CPU with the direct sum steps in one compiled call (the
        # same bits as the general loop below, without its per-step Python and numpy
        # cost); merging needs the host between steps, so those worlds take the loop.
        p = self._params
        n = self._ids.shape[0]
        return (steps > 0 and not p.merge_on_contact and self._backend is backends.CPU
                and 0 < n < direct.PARALLEL_MIN_BODIES
                and (p.solver == "direct" or (p.solver == "auto" and n < AUTO_TREE_MIN_BODIES)))

    def _merge(self) -> list[merging.Merge]:
        found, arrays = merging.merge_touching(
            self._tick, self._ids, self._masses, self._radii, self._positions, self._velocities
        )
        if found:
            self._ids, self._masses, self._radii, self._positions, self._velocities = arrays
            self._changed()
        return found

    def _changed(self, *, structure: bool = True) -> None:
        self._acc = None
        if structure:
            self._index = None

    # ------------------------------------------------------------- diagnostics

    def kinetic_energy(self) -> float:
        return float(0.5 * np.sum(self._masses * np.einsum("ij,ij->i", self._velocities, self._velocities)))

    def potential_energy(self, *, exact: bool = False) -> float:
        """Gravitational potential energy; ``exact=True`` forces the O(n^2) direct sum."""
        if len(self) < 2:
            return 0.0
        phi = self._compute("potentials", self._positions, "direct" if exact else self.solver)
        return float(0.5 * np.sum(self._masses * phi))

    def total_energy(self, *, exact: bool = False) -> float:
        """Kinetic plus (softened) potential energy, with the world's solver unless ``exact``."""
        return self.kinetic_energy() + self.potential_energy(exact=exact)

    def momentum(self) -> F64Array:
        """Total linear momentum, shape (3,)."""
        return np.asarray(np.sum(self._masses[:, None] * self._velocities, axis=0))

    def state_hash(self) -> str:
        """BLAKE2b-128 hex digest of the full state (see :mod:`.hashing`)."""
        return hashing.state_hash(
            tick=self._tick, time=self._time, params=self._params, ids=self._ids,
            masses=self._masses, radii=self._radii, positions=self._positions,
            velocities=self._velocities,
        )

    # ---------------------------------------------------------------- commands

    def add_body(
        self, id: int, mass: float, radius: float, position: Any, velocity: Any
    ) -> None:
        """Append a body; raises InvalidBody / DuplicateBody and leaves the world unchanged."""
        new_id, mass_a, pos, vel, rad = validation.bodies(
            [id], [mass], [position], [velocity], [radius]
        )
        if int(new_id[0]) in self:
            raise DuplicateBody(int(new_id[0]))
        index = self._index
        self._ids = np.concatenate((self._ids, new_id))
        self._masses = np.concatenate((self._masses, mass_a))
        self._radii = np.concatenate((self._radii, rad))
        self._positions = np.concatenate((self._positions, pos))
        self._velocities = np.concatenate((self._velocities, vel))
        self._changed()
        if index is not None:
            # Appended last: the id index only grows. Rebuilding it on every spawn made
            # an opening of N spawns O(N^2) (seconds for a world of 10,000 bodies).
            index[int(new_id[0])] = len(self._ids) - 1
            self._index = index

    def remove_body(self, id: int) -> None:
        """Delete a body; the others keep their relative order."""
        k = self.index_of(id)
        self._ids = np.delete(self._ids, k)
        self._masses = np.delete(self._masses, k)
        self._radii = np.delete(self._radii, k)
        self._positions = np.delete(self._positions, k, axis=0)
        self._velocities = np.delete(self._velocities, k, axis=0)
        self._changed()

    def apply_impulse(self, id: int, dv: Any) -> None:
        """Add the velocity change ``dv`` (shape (3,)) to one body."""
        k = self.index_of(id)
        delta = validation.floats("dv", dv, (3,))
        velocities = self._velocities.copy()
        velocities[k] += delta
        if not np.all(np.isfinite(velocities[k])):
            raise InvalidBody("impulse makes the velocity infinite", reason="non_finite")
        self._velocities = velocities
        # Forces depend on positions only: the cached accelerations stay valid.

    def set_params(
        self,
        *,
        G: float | None = None,
        softening: float | None = None,
        solver: str | None = None,
        theta: float | None = None,
        backend: str | None = None,
        merge_on_contact: bool | None = None,
    ) -> None:
        """Change parameters (``None`` keeps the current value); raises InvalidParams."""
        new = self._params.updated(
            G=G, softening=softening, solver=solver, theta=theta, backend=backend,
            merge_on_contact=merge_on_contact,
        )
        if new.backend != self._params.backend:
            self._backend = backends.select(new.backend)
        self._params = new
        self._changed(structure=False)
