"""Our partition choice matches Kafka's Java client, so every client agrees where a world lives."""

from __future__ import annotations

import pytest

from cosmic.kafka import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # values computed by Kafka's own Utils.murmur2
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key: bytes, expected: int):
    assert murmur2(key) == expected


def test_partition_is_stable_and_in_range():
    parts = [partition_for(f"world-{i}".encode(), 3) for i in range(300)]
    assert set(parts) == {0, 1, 2}
    assert parts == [partition_for(f"world-{i}".encode(), 3) for i in range(300)]
