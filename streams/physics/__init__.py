"""The N-body physics engine: gravity, leapfrog, Barnes-Hut, merging, on CPU or GPU.

Start reading at :mod:`.world` (the :class:`World` facade every caller uses),
then :mod:`.integrator` (the leapfrog), :mod:`.backends` (which solver and
device compute forces), :mod:`.cpu` with :mod:`.direct` and :mod:`.barnes_hut` /
:mod:`.octree` (the CPU force kernels), :mod:`.gpu` (the cupy kernel), :mod:`.merging`,
:mod:`.hashing` (the state hash tick events carry) and :mod:`.errors` (typed
errors with reason codes for ``CommandRejected``).

Example::

    from streams.physics import World, plummer_sphere
    ids, masses, positions, velocities = plummer_sphere(1000, seed=1)
    world = World.from_arrays(ids, masses, positions, velocities, softening=0.01)
    world.step(1 / 128, steps=100)
    print(world.tick, world.total_energy(), world.state_hash())
"""

from __future__ import annotations

from .errors import (
    BackendUnavailable,
    DuplicateBody,
    InvalidBody,
    InvalidParams,
    PhysicsError,
    UnknownBody,
)
from .initial import kepler_pair, plummer_sphere
from .merging import Merge
from .params import WorldParams
from .world import World

__all__ = [
    "BackendUnavailable",
    "DuplicateBody",
    "InvalidBody",
    "InvalidParams",
    "Merge",
    "PhysicsError",
    "UnknownBody",
    "World",
    "WorldParams",
    "kepler_pair",
    "plummer_sphere",
]
