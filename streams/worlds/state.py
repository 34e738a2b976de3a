"""A world as the world service runs it: the engine's World plus what gameplay adds.

The engine's :class:`~streams.physics.World` knows bodies and dynamics; a
world of the game also has body kinds, a tick rate, a time step, a snapshot
interval and its place in the command log. :meth:`WorldState.state_hash`
covers all of it, so two worlds that would play differently never share a hash.

What the game hash adds to the engine's (little-endian, after the format tag
``cosmic-world-state/3``): the engine's hash (ASCII hex), ``tick_rate_hz``,
``dt`` (float64), ``snapshot_every`` (int64), each body's kind code (uint8) in
world order; then who owns what: the world's owner (a uint8 flag, 0 when not
decided, then the UTF-8 name as a uint32 length and bytes), the owned bodies
in ascending id order (int64 id, then the owner's name the same way, ending
with a count), and the recent command ids (uint32 count, 16 bytes each, oldest
first). Format 2 (before ownership) is not accepted any more: a log recorded
with it replays, but its ticks do not verify.
"""

from __future__ import annotations

import hashlib
import math
import struct
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cosmic.errors import CosmicError
from schemas.models import BodyKind
from streams.physics import World

# Kind codes as the snapshot's uint8 column stores them: the Avro enum's order.
BODY_KINDS: tuple[BodyKind, ...] = tuple(BodyKind)
KIND_CODE: dict[str, int] = {kind.value: code for code, kind in enumerate(BODY_KINDS)}

HASH_FORMAT_TAG = b"cosmic-world-state/3"

# How many applied command ids a world remembers to refuse a retry: part of the state
# format, so the same on every worker.
RECENT_COMMANDS = 4096

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


class RecentCommands:
    """The ids of a world's last :data:`RECENT_COMMANDS` applied commands, in order."""

    def __init__(self, ids: Iterable[uuid.UUID] = ()) -> None:
        self._order: deque[bytes] = deque()
        self._seen: set[bytes] = set()
        for i in ids:
            self.add(i)

    def __contains__(self, command_id: uuid.UUID) -> bool:
        return command_id.bytes in self._seen

    def __len__(self) -> int:
        return len(self._order)

    def add(self, command_id: uuid.UUID) -> None:
        raw = command_id.bytes
        if raw in self._seen:
            return
        self._order.append(raw)
        self._seen.add(raw)
        if len(self._order) > RECENT_COMMANDS:
            self._seen.discard(self._order.popleft())

    def ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(bytes=raw) for raw in self._order]

    def digest_input(self) -> bytes:
        return struct.pack("<I", len(self._order)) + b"".join(self._order)

    def copy(self) -> RecentCommands:
        out = RecentCommands()
        out._order = deque(self._order)
        out._seen = set(self._seen)
        return out


def _name(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack("<I", len(raw)) + raw


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
    # Owner (player id) of each owned body; a body without an entry is the world's.
    owners: dict[int, str] = field(default_factory=dict)
    # The sender of the world's first applied command ("" for an operator); None: none yet.
    world_owner: str | None = None
    recent: RecentCommands = field(default_factory=RecentCommands)

    @classmethod
    def empty(cls, world_id: str, partition: int, **world_kwargs: Any) -> WorldState:
        world = World.from_arrays(
            np.empty(0, np.int64), np.empty(0), np.empty((0, 3)), np.empty((0, 3)),
            np.empty(0), G=world_kwargs.pop("G", 4 * math.pi**2),
            softening=world_kwargs.pop("softening", 1e-4), **world_kwargs,
        )
        return cls(world_id=world_id, partition=partition, world=world)

    def kinds_array(self) -> np.ndarray:
        kinds = self.kinds
        # tolist() gives Python ints in one call: a generator over numpy scalars costs
        # about a microsecond a body, and this runs for every tick's hash and delta.
        return np.array([kinds.get(i, 0) for i in self.world.ids.tolist()], dtype=np.uint8)

    def state_hash(self) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(HASH_FORMAT_TAG)
        h.update(self.world.state_hash().encode("ascii"))
        h.update(struct.pack("<ddq", float(self.tick_rate_hz), float(self.dt),
                             int(self.snapshot_every)))
        h.update(self.kinds_array().tobytes())
        if self.world_owner is None:
            h.update(b"\x00")
        else:
            h.update(b"\x01" + _name(self.world_owner))
        for body_id in sorted(self.owners):
            h.update(struct.pack("<q", body_id) + _name(self.owners[body_id]))
        h.update(struct.pack("<Q", len(self.owners)))
        h.update(self.recent.digest_input())
        return h.hexdigest()

    def forget_body(self, body_id: int) -> None:
        """A body left the world (removed or absorbed in a merger)."""
        self.kinds.pop(body_id, None)
        self.owners.pop(body_id, None)
