"""The parameters that define a world's dynamics, validated once on the way in."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, replace
from typing import Any, Literal

from .errors import InvalidParams

Solver = Literal["auto", "direct", "tree"]
BackendName = Literal["auto", "cpu", "cuda"]

SOLVERS: tuple[str, ...] = ("auto", "direct", "tree")
BACKENDS: tuple[str, ...] = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class WorldParams:
    """Physical and numerical parameters of one world.

    ``G`` is the gravitational constant in the world's units (1.0 = N-body
    units). ``softening`` is the Plummer length: pair forces use
    ``r**2 + softening**2``, so close encounters stay finite; 0.0 gives exact
    Newtonian gravity. ``solver`` picks the force solver (``"auto"`` chooses by
    body count), ``theta`` is the Barnes-Hut opening angle, ``backend`` where
    forces are computed (``"auto"`` uses a GPU when one works), and
    ``merge_on_contact`` merges bodies whose spheres touch after each step.
    """

    G: float = 1.0
    softening: float = 0.0
    solver: Solver = "auto"
    theta: float = 0.5
    backend: BackendName = "auto"
    merge_on_contact: bool = False

    def __post_init__(self) -> None:
        # Coerce numbers once so ints and numpy scalars hash like the floats they mean.
        for name in ("G", "softening", "theta"):
            object.__setattr__(self, name, _as_float(name, getattr(self, name)))
        if not (math.isfinite(self.G) and self.G > 0.0):
            raise InvalidParams(f"G must be finite and > 0, got {self.G!r}")
        if not (math.isfinite(self.softening) and self.softening >= 0.0):
            raise InvalidParams(f"softening must be finite and >= 0, got {self.softening!r}")
        if self.solver not in SOLVERS:
            raise InvalidParams(f"solver must be one of {SOLVERS}, got {self.solver!r}")
        # Above ~1 a cell may be accepted by a body inside it; the error bound is lost.
        if not (math.isfinite(self.theta) and 0.0 < self.theta <= 1.0):
            raise InvalidParams(f"theta must be in (0, 1], got {self.theta!r}")
        if self.backend not in BACKENDS:
            raise InvalidParams(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if not isinstance(self.merge_on_contact, bool):
            raise InvalidParams("merge_on_contact must be a bool")

    def updated(self, **changes: Any) -> WorldParams:
        """A copy with the non-None ``changes`` applied (and validated)."""
        given = {k: v for k, v in changes.items() if v is not None}
        unknown = set(given) - set(self.__dataclass_fields__)
        if unknown:
            raise InvalidParams(f"unknown world parameter(s): {sorted(unknown)}")
        try:
            return replace(self, **given)
        except (TypeError, ValueError) as exc:
            raise InvalidParams(str(exc)) from None

    def canonical_bytes(self) -> bytes:
        """Little-endian encoding of everything that changes the dynamics (not the backend).

        The backend is left out on purpose: it is where the arithmetic runs, not
        what the world is; a hash mismatch between backends is then a
        floating-point difference, never a parameter difference.
        """
        return struct.pack(
            "<dd8sd?",
            float(self.G),
            float(self.softening),
            self.solver.encode("ascii").ljust(8, b"\0"),
            float(self.theta),
            bool(self.merge_on_contact),
        )


def _as_float(name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InvalidParams(f"{name} must be a number, got {value!r}") from None
