"""A world as the world service runs it: the engine's World plus what gameplay adds.

The engine's :class:`~streams.physics.World` knows bodies and dynamics; a
world of the game also has body kinds, a tick rate, a time step, a snapshot
interval and its place in the command log. :meth:`WorldState.state_hash`
covers all of it, so two worlds that would play differently never share a hash.

What the game hash adds to the engine's (little-endian, after the format tag
``cosmic-world-state/2``): the engine's hash (ASCII hex), ``tick_rate_hz``,
``dt`` (float64), ``snapshot_every`` (int64), then each body's kind code
(uint8) in world order.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosmic.errors import CosmicError
from schemas.models import BodyKind
from streams.physics import World

# Kind codes as the snapshot's uint8 column stores them: the Avro enum's order.
BODY_KINDS: tuple[BodyKind, ...] = tuple(BodyKind)
KIND_CODE: dict[str, int] = {kind.value: code for code, kind in enumerate(BODY_KINDS)}

HASH_FORMAT_TAG = b"cosmic-world-state/2"

# A world id "name" belongs to the default shard; "shard:name" to the shard "shard".
SHARD_SEPARATOR = ":"


def shard_of(world_id: str) -> str:
    """The shard that owns a world: the part of its id before the first ``:``, or ""."""
    head, sep, _ = world_id.partition(SHARD_SEPARATOR)
    return head if sep else ""


class SnapshotUnavailable(CosmicError):
    """The snapshot history could not be read just now (a broker problem, not a bad command):
    the tick must be retried, never decided, or live and replay would disagree."""

# (history partition, offset) -> the WorldSnapshot record there, or None.
SnapshotFetcher = Callable[[int, int], "dict[str, Any] | None"]

DEFAULT_TICK_RATE_HZ = 30.0
DEFAULT_DT = 1.0 / 365.25
DEFAULT_SNAPSHOT_EVERY = 100
# Positions beyond this distance from the origin are refused: bodies out there
# would only fly away and cost force evaluations.
WORLD_RADIUS = 1.0e6


@dataclass
class WorldState:
    """A world with its worker-level parameters and its place in the command log."""

    world_id: str
    partition: int
    world: World
    kinds: dict[int, int] = field(default_factory=dict)
    tick_rate_hz: float = DEFAULT_TICK_RATE_HZ
    dt: float = DEFAULT_DT
    snapshot_every: int = DEFAULT_SNAPSHOT_EVERY
    # Offset (in `partition` of the command topic) of the last command this world
    # consumed, applied or rejected; commands at or below it are never re-applied.
    last_command_offset: int | None = None

    @classmethod
    def empty(cls, world_id: str, partition: int, **world_kwargs: Any) -> WorldState:
        world = World.from_arrays(
            np.empty(0, np.int64), np.empty(0), np.empty((0, 3)), np.empty((0, 3)),
            np.empty(0), G=world_kwargs.pop("G", 4 * math.pi**2),
            softening=world_kwargs.pop("softening", 1e-4), **world_kwargs,
        )
        return cls(world_id=world_id, partition=partition, world=world)

    def kinds_array(self) -> np.ndarray:
        ids = self.world.ids
        return np.fromiter((self.kinds.get(int(i), 0) for i in ids), dtype=np.uint8,
                           count=len(ids))

    def state_hash(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(HASH_FORMAT_TAG)
        h.update(self.world.state_hash().encode("ascii"))
        h.update(struct.pack("<ddq", float(self.tick_rate_hz), float(self.dt),
                             int(self.snapshot_every)))
        h.update(self.kinds_array().tobytes())
        return h.hexdigest()
