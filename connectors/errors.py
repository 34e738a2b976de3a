"""Errors of the connectors, under :class:`cosmic.errors.StoreError`.

Split by what the caller should do: :class:`StoreUnavailable` is retried
with backoff (the store will come back), everything else stops the connector
with its reason.
"""

from __future__ import annotations

from cosmic.errors import StoreError


class StoreUnavailable(StoreError):
    """The store did not answer or dropped the connection; retrying is the cure."""


class MigrationError(StoreError):
    """A schema migration could not be read or applied."""


class LakeError(StoreError):
    """The archive lake holds something unreadable (a bad manifest, a missing file)."""
