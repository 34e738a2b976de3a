"""Errors of the physics engine.

Every error carries a short ``reason`` code (``unknown_body``, ``non_finite``...)
that the physics worker copies verbatim into a ``CommandRejected`` event, so a
frontend can tell the player why a command did nothing without parsing prose.
"""

from __future__ import annotations

from cosmic.errors import CosmicError


class PhysicsError(CosmicError):
    """Root of the physics engine's errors; ``reason`` is a stable code string."""

    reason: str = "physics_error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class InvalidBody(PhysicsError):
    """A body's values are unusable: NaN/inf, non-positive mass, negative radius, bad shape."""

    reason = "invalid_body"


class DuplicateBody(InvalidBody):
    """A body id is already present in the world (ids are unique)."""

    reason = "duplicate_body"

    def __init__(self, body_id: int) -> None:
        super().__init__(f"body id {body_id} already exists")
        self.body_id = body_id


class UnknownBody(PhysicsError):
    """A command names a body id that is not in the world."""

    reason = "unknown_body"

    def __init__(self, body_id: int) -> None:
        super().__init__(f"no body with id {body_id}")
        self.body_id = body_id


class InvalidParams(PhysicsError):
    """A world parameter or step argument is out of range (G, softening, theta, dt...)."""

    reason = "invalid_param"


class BackendUnavailable(PhysicsError):
    """The requested compute backend cannot run here (no GPU, cupy missing, driver error)."""

    reason = "backend_unavailable"
