"""Packing per-body columns into the ``bytes`` fields of StateDelta and WorldSnapshot.

Per-body Avro records would make serde, not physics, the bottleneck, so bulk
data travels as packed little-endian arrays. Every helper here is one numpy
call over the whole column: no Python loops. Unpacking returns read-only
views over the record's bytes (zero copy); call ``.copy()`` to modify.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from schemas.errors import ColumnarError

VectorDtype = Literal["FLOAT32", "FLOAT64"]

ID_DTYPE = np.dtype("<i8")
KIND_DTYPE = np.dtype("u1")
SCALAR_DTYPE = np.dtype("<f8")
VECTOR_DTYPES: dict[str, np.dtype[Any]] = {"FLOAT32": np.dtype("<f4"), "FLOAT64": np.dtype("<f8")}


def pack(values: npt.ArrayLike, dtype: np.dtype[Any]) -> bytes:
    """Pack any array-like as contiguous ``dtype`` bytes (C order)."""
    return np.ascontiguousarray(values, dtype=dtype).tobytes()


def pack_vectors(values: npt.ArrayLike, dtype: VectorDtype = "FLOAT64") -> bytes:
    """Pack an (n, 3) array row-major; refuses any other shape."""
    arr = np.asarray(values)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ColumnarError(f"vectors must have shape (n, 3), got {arr.shape}")
    return pack(arr, VECTOR_DTYPES[dtype])


def unpack(data: bytes, dtype: np.dtype[Any], field: str = "column") -> npt.NDArray[Any]:
    """View ``data`` as a 1-d array of ``dtype``; the length must divide evenly."""
    if len(data) % dtype.itemsize:
        raise ColumnarError(
            f"{field}: {len(data)} bytes is not a whole number of {dtype.str} items "
            f"({dtype.itemsize} bytes each)"
        )
    return np.frombuffer(data, dtype=dtype)


def unpack_vectors(data: bytes, dtype: VectorDtype = "FLOAT64", field: str = "vectors") -> npt.NDArray[Any]:
    """View ``data`` as an (n, 3) array of ``dtype``."""
    dt = VECTOR_DTYPES[dtype]
    if len(data) % (3 * dt.itemsize):
        raise ColumnarError(f"{field}: {len(data)} bytes is not a whole number of 3 x {dt.str} rows")
    return np.frombuffer(data, dtype=dt).reshape(-1, 3)


@dataclass(frozen=True, slots=True)
class Bodies:
    """Per-body columns; all of length n (positions and velocities are (n, 3))."""

    ids: npt.NDArray[np.int64]
    kinds: npt.NDArray[np.uint8]
    masses: npt.NDArray[np.float64]
    radii: npt.NDArray[np.float64]
    positions: npt.NDArray[np.floating[Any]]
    velocities: npt.NDArray[np.floating[Any]]

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def check(self) -> None:
        """Raise :class:`ColumnarError` unless every column has the same length n."""
        n = len(self)
        lengths = {
            "kinds": self.kinds.shape[0], "masses": self.masses.shape[0],
            "radii": self.radii.shape[0], "positions": self.positions.shape[0],
            "velocities": self.velocities.shape[0],
        }
        wrong = {k: v for k, v in lengths.items() if v != n}
        if wrong:
            raise ColumnarError(f"columns disagree with ids (n={n}): {wrong}")


def pack_bodies(bodies: Bodies, vector_dtype: VectorDtype = "FLOAT64") -> dict[str, Any]:
    """The columnar fields shared by StateDelta and WorldSnapshot, packed."""
    bodies.check()
    return {
        "ids": pack(bodies.ids, ID_DTYPE),
        "kinds": pack(bodies.kinds, KIND_DTYPE),
        "masses": pack(bodies.masses, SCALAR_DTYPE),
        "radii": pack(bodies.radii, SCALAR_DTYPE),
        "positions": pack_vectors(bodies.positions, vector_dtype),
        "velocities": pack_vectors(bodies.velocities, vector_dtype),
    }


def unpack_bodies(record: dict[str, Any]) -> Bodies:
    """Columns of a decoded StateDelta or WorldSnapshot record (zero-copy views)."""
    vdt: VectorDtype = record.get("vector_dtype", "FLOAT64")
    bodies = Bodies(
        ids=unpack(record["ids"], ID_DTYPE, "ids"),
        kinds=unpack(record["kinds"], KIND_DTYPE, "kinds"),
        masses=unpack(record["masses"], SCALAR_DTYPE, "masses"),
        radii=unpack(record["radii"], SCALAR_DTYPE, "radii"),
        positions=unpack_vectors(record["positions"], vdt, "positions"),
        velocities=unpack_vectors(record["velocities"], vdt, "velocities"),
    )
    bodies.check()
    return bodies


def delta_fields(
    bodies: Bodies, removed_ids: npt.ArrayLike = (), vector_dtype: VectorDtype = "FLOAT32"
) -> dict[str, Any]:
    """The columnar part of a StateDelta: changed bodies, removed ids, vector dtype."""
    out = pack_bodies(bodies, vector_dtype)
    out["removed_ids"] = pack(removed_ids, ID_DTYPE)
    out["vector_dtype"] = vector_dtype
    return out


def removed_ids(record: dict[str, Any]) -> npt.NDArray[np.int64]:
    """The ``removed_ids`` column of a decoded StateDelta."""
    return unpack(record["removed_ids"], ID_DTYPE, "removed_ids")
