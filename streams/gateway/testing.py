"""In-memory worlds and identities for testing the gateway without Kafka.

:class:`SyntheticWorld` writes the same ``StateDelta`` columns the physics
worker does (every body, every tick) into a :class:`~.world.WorldFeed`, with
drift, spawns, removals and mergers, so tests see what clients would.

:class:`TestAuth` is a guard with keys of its own and an in-memory audit
chain; ``auth.token("alice")`` mints a token it accepts. :func:`stack_token`
mints one with the local stack's key (what ``cosmic auth token`` prints), for
tests against a running gateway; :func:`bearer_metadata` wraps one for gRPC.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cosmic.settings import SecuritySettings, Settings
from schemas import columnar
from schemas.models import Role
from streams.security import audit, signing, tokens

from .guard import Guard
from .world import Grid, Tick, WorldFeed

GRID = Grid(position_step=1e-3, velocity_step=1e-3)
TICK_MS = 50


class SyntheticWorld:
    """Bodies drifting (some fast), occasionally spawned, removed or merged (mass change)."""

    def __init__(self, seed: int, n: int, spread: float = 10.0) -> None:
        self.rng = np.random.default_rng(seed)
        self.ids = np.arange(1, n + 1, dtype=np.int64)
        self.pos = self.rng.uniform(-spread, spread, (n, 3))
        self.vel = self.rng.normal(0, 0.5, (n, 3)) * self.rng.choice([0.1, 1, 10], (n, 1))
        self.mass = np.ones(n)
        self.next_id = n + 1
        self.tick = 0
        self.feed = WorldFeed("w", GRID)

    def step(self, churn: bool = True) -> Tick:
        self.tick += 1
        dt = TICK_MS / 1000
        self.pos = self.pos + self.vel * dt
        removed = np.empty(0, np.int64)
        if churn and self.rng.random() < 0.3 and len(self.ids) > 5:
            k = self.rng.integers(len(self.ids))
            removed = self.ids[k:k + 1]
            keep = np.arange(len(self.ids)) != k
            self.ids, self.pos, self.vel, self.mass = (
                self.ids[keep], self.pos[keep], self.vel[keep], self.mass[keep])
        if churn and self.rng.random() < 0.3:
            self.ids = np.append(self.ids, self.next_id)
            self.next_id += 1
            self.pos = np.vstack((self.pos, self.rng.uniform(-10, 10, (1, 3))))
            self.vel = np.vstack((self.vel, self.rng.normal(0, 0.5, (1, 3))))
            self.mass = np.append(self.mass, 1.0)
        if churn and self.rng.random() < 0.1:
            self.mass[self.rng.integers(len(self.ids))] *= 2  # a merger
        n = len(self.ids)
        bodies = columnar.Bodies(
            ids=self.ids, kinds=np.full(n, 3, np.uint8), masses=self.mass,
            radii=np.full(n, 0.01), positions=self.pos.astype(np.float32),
            velocities=self.vel.astype(np.float32))
        record = {"world_id": "w", "tick": self.tick, "sim_time": self.tick * dt,
                  "ts": self.tick * TICK_MS, **columnar.delta_fields(bodies, removed)}
        tick = self.feed.apply(record)
        assert tick is not None
        return tick


class TestAuth:
    """A guard with its own keys (EdDSA, and HS256 for development) and audit in memory."""

    __test__ = False  # not a pytest class

    def __init__(self, security: SecuritySettings | None = None, **overrides: Any) -> None:
        base = security or SecuritySettings(allow_dev_hs256=True)
        self.security = base.model_copy(update=overrides) if overrides else base
        self.keys = tokens.TokenKeys.generate(with_hs256=True)
        self.denylist = tokens.Denylist()
        self.verifier = tokens.Verifier(self.security, self.keys, self.denylist)
        self.ring = signing.KeyRing.generate()
        self.records: list[dict[str, Any]] = []
        self.chain = audit.AuditChain("test-gw", lambda _gid, r: self.records.append(r))
        self.guard = Guard(self.security, self.verifier, self.ring, self.chain)

    def token(self, player: str = "alice", role: Role = Role.PLAYER, **kwargs: Any) -> str:
        return tokens.mint(self.keys, self.security, player, role, **kwargs)

    def metadata(self, player: str = "alice", role: Role = Role.PLAYER
                 ) -> tuple[tuple[str, str], ...]:
        return bearer_metadata(self.token(player, role))


def stack_token(settings: Settings, player: str, role: Role = Role.PLAYER, **kwargs: Any) -> str:
    """A token the local stack's gateways accept (its key under the state folder)."""
    return tokens.mint(tokens.TokenKeys.for_settings(settings), settings.security, player,
                       role, **kwargs)


def bearer_metadata(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)
