"""Epoch milliseconds: one conversion, agreeing with what Avro puts on the wire."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import fastavro
import pytest

from cosmic.timeutil import from_ms, now_ms, span_ms, to_ms

_TS = fastavro.parse_schema({"type": "long", "logicalType": "timestamp-millis"})
_RAW = fastavro.parse_schema({"type": "long"})


def _on_the_wire(moment: datetime) -> int:
    """The long an Avro timestamp-millis field carries for ``moment``."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, _TS, moment)
    buf.seek(0)
    return int(fastavro.schemaless_reader(buf, _RAW, None))


@pytest.mark.parametrize("moment", [
    datetime(2026, 1, 1, 0, 0, 0, 123000, tzinfo=UTC),
    datetime(2026, 1, 1, 0, 0, 0, 123999, tzinfo=UTC),  # sub-millisecond: floored, as Avro does
    datetime(2026, 6, 1, 2, 0, 0, 500, tzinfo=timezone(timedelta(hours=2))),
    datetime(2039, 9, 1, 4, 34, 23, 127000, tzinfo=UTC),  # where float seconds lose a millisecond
])
def test_to_ms_is_what_avro_stores(moment: datetime) -> None:
    assert to_ms(moment) == _on_the_wire(moment)


def test_from_ms_round_trips_exactly() -> None:
    for ms in (0, 1767225600123, 2198541263127):
        back = from_ms(ms)
        assert back.tzinfo is not None and to_ms(back) == ms


def test_raw_ints_pass_and_naive_datetimes_are_refused() -> None:
    assert to_ms(1767225600123) == 1767225600123
    with pytest.raises(ValueError, match="naive"):
        to_ms(datetime(2026, 1, 1))  # noqa: DTZ001 - the point of the test


def test_now_and_spans() -> None:
    before = to_ms(datetime.now(UTC))
    assert before <= now_ms() <= before + 5_000
    assert span_ms(timedelta(minutes=30)) == 1_800_000
