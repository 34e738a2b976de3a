"""Checks on bodies coming into a world; each failure is a typed error with a reason code.

Reason codes (``err.reason``): ``bad_shape``, ``bad_id``, ``duplicate_body``,
``non_finite``, ``non_positive_mass``, ``negative_radius``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import DuplicateBody, InvalidBody
from .types import F64Array, I64Array


def body_ids(ids: Any) -> I64Array:
    arr = np.asarray(ids)
    if arr.ndim != 1:
        raise InvalidBody(f"ids must be one-dimensional, got shape {arr.shape}", reason="bad_shape")
    if arr.size and arr.dtype.kind not in "iu":
        raise InvalidBody(f"ids must be integers, got dtype {arr.dtype}", reason="bad_id")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InvalidBody("ids must fit in int64", reason="bad_id")
    return np.array(arr, dtype=np.int64)


def floats(name: str, values: Any, shape: tuple[int, ...]) -> F64Array:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidBody(f"{name} must be numbers", reason="bad_shape") from None
    if arr.shape != shape:
        raise InvalidBody(f"{name} must have shape {shape}, got {arr.shape}", reason="bad_shape")
    if not np.all(np.isfinite(arr)):
        raise InvalidBody(f"{name} contains NaN or infinity", reason="non_finite")
    return arr


def bodies(
    ids: Any, masses: Any, positions: Any, velocities: Any, radii: Any | None
) -> tuple[I64Array, F64Array, F64Array, F64Array, F64Array]:
    """Canonical, owned copies of the body arrays, or a typed error."""
    id_arr = body_ids(ids)
    n = id_arr.shape[0]
    if np.unique(id_arr).shape[0] != n:
        values, counts = np.unique(id_arr, return_counts=True)
        raise DuplicateBody(int(values[counts > 1][0]))
    mass = floats("masses", masses, (n,))
    if np.any(mass <= 0.0):
        raise InvalidBody("masses must be > 0", reason="non_positive_mass")
    pos = floats("positions", positions, (n, 3))
    vel = floats("velocities", velocities, (n, 3))
    rad = np.zeros(n) if radii is None else floats("radii", radii, (n,))
    if np.any(rad < 0.0):
        raise InvalidBody("radii must be >= 0", reason="negative_radius")
    return id_arr, mass, pos, vel, rad
