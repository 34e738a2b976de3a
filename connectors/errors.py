"""Errors of the connectors, under :class:`cosmic.errors.StoreError`.

Split by what the caller should do: :class:`StoreUnavailable` is retried
with backoff (the store will come back), :class:`StoreRejected` dead-letters
the records the store refuses, everything else stops the connector with its
reason.
"""

from __future__ import annotations

from cosmic.errors import StoreError


class StoreUnavailable(StoreError):
    """The store did not answer or dropped the connection; retrying is the cure."""


class StoreRejected(StoreError):
    """The store refused some record's values (a NUL in a text, a number out of range).

    Retrying cannot help: the connector isolates the offending records by
    splitting the batch, dead-letters them with this error, and stores the rest.
    """


class StoreFenced(StoreError):
    """Another instance moved a partition's stored position on since this one read it:
    this one is a zombie (its partitions went elsewhere), and its batch is not stored."""


class MigrationError(StoreError):
    """A schema migration could not be read or applied."""


class LakeError(StoreError):
    """The archive lake holds something unreadable (a bad manifest, a missing file)."""
