"""The CPU force backend: the numba kernels of :mod:`.direct` and :mod:`.barnes_hut`.

It lives apart from :mod:`.backends` (the choice between devices) because
the GPU backend falls back to it for the tree solver: :mod:`.gpu` imports
this module, and :mod:`.backends` imports both.
"""

from __future__ import annotations

from . import barnes_hut, direct
from .types import F64Array

# Below this many bodies the direct sum is at least as fast as the tree on the CPU
# (measured on the 2-core bench box: direct 3.6 ms vs tree 4.6 ms at 4,096 bodies, a
# tie at 8,192, tree 2.3x faster at 16,384); on a tie the exact direct sum wins.
AUTO_TREE_MIN_BODIES = 8192


class CpuBackend:
    """numba kernels on every CPU core (see :mod:`.direct` and :mod:`.barnes_hut`)."""

    name = "cpu"

    def accelerations(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array:
        if solver == "tree":
            return barnes_hut.forces(positions, masses, G, softening, theta)[0]
        return direct.accelerations(positions, masses, G, softening)

    def potentials(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array:
        if solver == "tree":
            return barnes_hut.forces(positions, masses, G, softening, theta)[1]
        return direct.potentials(positions, masses, G, softening)

    def auto_solver(self, n: int) -> str:
        return "tree" if n >= AUTO_TREE_MIN_BODIES else "direct"


CPU = CpuBackend()
