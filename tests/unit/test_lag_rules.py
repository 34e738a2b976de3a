"""The lag exporter's status rules, sample by sample (the documented table in cosmic/lag.py)."""

from __future__ import annotations

from confluent_kafka import ConsumerGroupState

from cosmic.lag import LagExporter
from cosmic.settings import Settings

STABLE, EMPTY = ConsumerGroupState.STABLE, ConsumerGroupState.EMPTY


def judge(samples: list[tuple[float, int, int]], state=STABLE, **lag: float) -> list[str]:
    """The status after each (seconds, committed offset, lag in records) sample."""
    settings = Settings()
    exporter = LagExporter(settings.model_copy(update={"lag": settings.lag.model_copy(
        update={"stall_after_s": 30.0, "warn_samples": 3, **lag})}))
    return [exporter._judge(("g", "t", 0), committed, records, t, state)
            for t, committed, records in samples]


def test_caught_up_or_catching_up_is_ok():
    assert judge([(0, 10, 0), (5, 20, 0), (10, 30, 0)]) == ["OK"] * 3
    assert judge([(0, 10, 50), (5, 30, 40), (10, 60, 20)]) == ["OK"] * 3


def test_lag_that_grows_sample_after_sample_is_a_warning():
    statuses = judge([(0, 10, 5), (5, 12, 9), (10, 14, 15), (15, 16, 30), (20, 40, 2)])
    assert statuses == ["OK", "OK", "OK", "WARN", "OK"]


def test_no_commit_for_the_stall_time_with_lag_is_stalled():
    statuses = judge([(0, 10, 5), (10, 10, 5), (29, 10, 5), (31, 10, 5), (35, 11, 5)])
    assert statuses == ["OK", "OK", "OK", "STALLED", "OK"]


def test_lag_without_members_is_stopped_and_no_lag_is_ok_whoever_is_there():
    assert judge([(0, 10, 5), (5, 10, 9)], state=EMPTY) == ["STOPPED", "STOPPED"]
    assert judge([(0, 10, 0)], state=EMPTY) == ["OK"]
