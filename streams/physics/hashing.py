"""The state hash every tick event carries, so a replay can prove it rebuilt the same world.

What is hashed, in this order (all little-endian):

1. a format tag (``cosmic-physics-state/1``), so a future layout change can
   never collide with an old hash;
2. ``tick`` (int64), simulated ``time`` (float64) and the body count (int64);
3. the dynamics parameters (:meth:`.params.WorldParams.canonical_bytes`);
4. the body arrays in world order: ids (int64), masses, radii (float64),
   positions then velocities (float64, row-major ``(n, 3)``: x, y, z of body 0,
   then body 1, ...).

World order is insertion order: new bodies are appended, removed bodies leave
a gap that closes up, and a merged body keeps the slot of its survivor. The
digest is BLAKE2b-128, as 32 hex characters.
"""

from __future__ import annotations

import hashlib
import struct

import numpy as np

from .params import WorldParams
from .types import F64Array, I64Array

FORMAT_TAG = b"cosmic-physics-state/1"


def state_hash(
    *,
    tick: int,
    time: float,
    params: WorldParams,
    ids: I64Array,
    masses: F64Array,
    radii: F64Array,
    positions: F64Array,
    velocities: F64Array,
) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(FORMAT_TAG)
    h.update(struct.pack("<qdq", int(tick), float(time), int(ids.shape[0])))
    h.update(params.canonical_bytes())
    h.update(np.ascontiguousarray(ids, dtype="<i8").tobytes())
    for arr in (masses, radii, positions, velocities):
        h.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
    return h.hexdigest()
