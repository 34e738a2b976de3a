"""Event time as the platform writes it: integer epoch milliseconds, UTC.

Avro's ``timestamp-millis``, Kafka record timestamps, the ``ts_ms`` columns
and the command-line ``--since``/``--until`` filters all count milliseconds
since 1970-01-01 UTC. These helpers are the one conversion between those
integers and aware datetimes.

Rounding: :func:`to_ms` floors, in integer arithmetic. That is what Avro
encoding does to a datetime (fastavro and :mod:`schemas.fastwriter` keep
whole milliseconds and drop the rest), so ``to_ms(dt)`` equals what the wire
carries for ``dt``; for a datetime already at millisecond precision (every
decoded one) it is exact, where ``int(dt.timestamp() * 1000)`` comes out one
lower for some dates through float error (none seen before 2039, many after).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def now_ms() -> int:
    """The wall clock in epoch milliseconds (floored)."""
    return time.time_ns() // 1_000_000


def to_ms(moment: datetime | int) -> int:
    """An aware datetime in epoch milliseconds, floored (see the module's note).

    An int is taken as epoch milliseconds already (a ``timestamp-millis`` field
    read raw rather than decoded) and returned as it is. A naive datetime is
    refused: it names no instant.
    """
    if isinstance(moment, int):
        return moment
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: give it a time zone")
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds as an aware UTC datetime (exact)."""
    return EPOCH + timedelta(milliseconds=ms)


def span_ms(span: timedelta) -> int:
    """A duration in whole milliseconds, floored."""
    return span // _MS


__all__ = ["EPOCH", "from_ms", "now_ms", "span_ms", "to_ms"]
