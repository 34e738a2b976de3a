"""The one exception hierarchy of the platform.

Every error the platform raises on purpose derives from :class:`CosmicError`,
so callers can catch the whole family without catching ``Exception``.
Subpackages add their own kinds under the branch that fits (serde errors under
:class:`SerializationError`, store errors under :class:`StoreError`, ...).
"""

from __future__ import annotations


class CosmicError(Exception):
    """Root of every error raised on purpose by the platform."""


class ConfigError(CosmicError):
    """Settings are missing, malformed or contradict each other."""


class DependencyMissing(CosmicError):
    """An optional package or system tool needed for this feature is absent."""

    def __init__(self, package: str, hint: str) -> None:
        super().__init__(f"{package} is missing: {hint}")
        self.package = package
        self.hint = hint


class StackError(CosmicError):
    """A local service could not be installed, started, reached or stopped."""


class ServiceStartError(StackError):
    """A service did not come up; the message names the service and its log file."""

    def __init__(self, service: str, reason: str, log_file: str | None = None) -> None:
        where = f" (see {log_file})" if log_file else ""
        super().__init__(f"{service} failed to start: {reason}{where}")
        self.service = service
        self.reason = reason
        self.log_file = log_file


class ServiceUnavailable(StackError):
    """A service did not answer at its endpoint within the timeout."""

    def __init__(self, service: str, endpoint: str, timeout_s: float, detail: str = "") -> None:
        extra = f": {detail}" if detail else ""
        super().__init__(
            f"{service} did not answer at {endpoint} within {timeout_s:g}s{extra}"
        )
        self.service = service
        self.endpoint = endpoint
        self.timeout_s = timeout_s


class TopicError(CosmicError):
    """A topic is unknown, or could not be created or reconciled."""


class SerializationError(CosmicError):
    """A record could not be encoded or decoded."""


class StoreError(CosmicError):
    """A sink or store (PostgreSQL, ClickHouse, the archive) failed."""
