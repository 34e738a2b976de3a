"""The shared loop's pure parts: isolating records a store refuses, dropping revoked partitions."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, cast

import pytest

from connectors import clickhouse, timescale
from connectors.base import TP, Batch, Connector, Item, Sink
from connectors.errors import StoreRejected
from cosmic import topics
from cosmic.errors import ConfigError
from cosmic.settings import Settings


class _PickySink(Sink):
    """Stores everything but odd values; remembers each accepted write."""

    name = "picky"

    def __init__(self) -> None:
        self.rows: list[int] = []
        self.positions: list[dict[TP, int]] = []

    def open(self) -> str:
        return "picky: test"

    def close(self) -> None:
        return None

    def resume_positions(self, tps: Collection[TP]) -> dict[TP, int]:
        return {}

    def write(self, batch: Batch) -> dict[TP, int]:
        if any(i.value % 2 for i in batch.items):
            raise StoreRejected("odd values are refused")
        self.rows.extend(i.value for i in batch.items)
        self.positions.append(dict(batch.positions))
        return dict(batch.positions)


class _DLQ:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, BaseException]] = []

    def send(self, msg: Any, error: BaseException) -> None:
        self.sent.append((msg, error))


class _Producer:
    def flush(self, timeout: float) -> int:
        return 0


def _items(values: list[int], partition: int = 0) -> list[Item]:
    return [Item("t", topics.PHYSICS_TICKS, partition, off, 0, None, v, message=cast(Any, f"msg{off}"))
            for off, v in enumerate(values)]


def test_refused_records_are_isolated_and_dead_lettered_in_order():
    sink = _PickySink()
    conn = Connector(Settings(), sink, {}, group_id="g")
    dlq = _DLQ()
    conn._dlq = dlq  # type: ignore[assignment]
    values = [0, 2, 4, 7, 8, 10, 13, 14]
    durable = conn._write_isolating(Batch(_items(values), {("t", 0): 8}), _Producer())
    assert durable == {("t", 0): 8}
    assert sink.rows == [0, 2, 4, 8, 10, 14]
    assert [m for m, _ in dlq.sent] == ["msg3", "msg6"]
    assert conn.metrics.dead_letters == 2
    # Stored positions only ever grow, and never pass a record not yet handled.
    stored = [p[("t", 0)] for p in sink.positions]
    assert stored == sorted(stored) and stored[-1] == 8


def test_revoked_partitions_leave_the_pending_batch():
    batch = Batch(_items([0, 2], partition=0) + _items([4], partition=1),
                  {("t", 0): 2, ("t", 1): 1})
    batch.drop({("t", 0)})
    assert [i.value for i in batch.items] == [4]
    assert batch.positions == {("t", 1): 1}


def test_routes_to_topics_without_a_table_are_refused():
    with pytest.raises(ConfigError, match=r"cannot store x=cosmic\.metrics\.v1"):
        clickhouse.build(Settings(), {"x": topics.METRICS})
    with pytest.raises(ConfigError, match="timescale connector cannot store"):
        timescale.build(Settings(), {"y": topics.COMMANDS})
    assert timescale.build(Settings(), {"z": topics.METRICS}).routes == {"z": topics.METRICS}
