"""The security errors: each maps to one refusal a client sees."""

from __future__ import annotations

from cosmic.errors import CosmicError


class SecurityError(CosmicError):
    """A request refused for who sent it or what it may do."""


class Unauthenticated(SecurityError):
    """No valid identity: a missing, malformed, expired or forged credential."""


class Forbidden(SecurityError):
    """A known identity asking for something its role or ownership does not allow."""


class RateLimited(SecurityError):
    """Over a quota; ``retry_after_s`` says when the next attempt can succeed."""

    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class KeyFileError(SecurityError):
    """A key file that cannot be read, or is readable by others than its owner."""
