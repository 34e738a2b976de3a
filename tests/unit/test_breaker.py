"""The circuit breaker: opens after failures in a row, fails fast, probes back."""

from __future__ import annotations

import threading

import pytest

from cosmic.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, breaker, open_circuits


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker("registry", "http://x", failures=3, pause_s=1.0, max_pause_s=4.0,
                          clock=clock)


def test_it_opens_after_failures_in_a_row_only(clock):
    b = make(clock)
    for _ in range(2):
        assert b.allow() is None
        b.failed("refused")
    b.succeeded()  # a success resets the count
    for _ in range(2):
        b.failed("refused")
    assert b.state == CLOSED and b.allow() is None
    b.failed("refused")
    assert b.state == OPEN
    assert b.allow() == pytest.approx(1.0)
    assert b.fast_failures == 1
    assert "registry at http://x is down" in b.refusal(1.0) and "refused" in b.refusal(1.0)


def test_one_probe_after_the_pause_and_the_pause_doubles_to_its_ceiling(clock):
    b = make(clock)
    for _ in range(3):
        b.failed("down")
    pauses = []
    for _ in range(4):
        wait = b.allow()
        assert wait is not None
        clock.now += wait
        assert b.allow() is None  # this caller probes
        assert b.state == HALF_OPEN
        assert b.allow() is not None  # everyone else still fails fast
        b.failed("still down")
        pauses.append(wait)
    assert pauses == [1.0, 2.0, 4.0, 4.0]
    clock.now += 4.0
    assert b.allow() is None
    b.succeeded()
    assert b.state == CLOSED and b.allow() is None
    # Closed again: the next outage starts from the first pause.
    for _ in range(3):
        b.failed("down again")
    assert b.allow() == pytest.approx(1.0)


def test_only_one_of_many_threads_probes(clock):
    b = make(clock)
    for _ in range(3):
        b.failed("down")
    clock.now += 1.0
    let_through = []
    threads = [threading.Thread(target=lambda: let_through.append(b.allow() is None))
               for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert let_through.count(True) == 1


def test_the_process_breakers_are_shared_and_show_as_metrics():
    from prometheus_client.parser import text_string_to_metric_families

    from cosmic.metrics import exposition

    b = breaker("postgres", "127.0.0.1:1")
    assert breaker("postgres", "127.0.0.1:1") is b
    for _ in range(3):
        b.failed("connection refused")
    assert b.allow() is not None
    assert b in open_circuits()
    samples = {(s.name, s.labels.get("target")): s.value
               for fam in text_string_to_metric_families(exposition().decode())
               for s in fam.samples if s.name.startswith("cosmic_dependency_")}
    assert samples[("cosmic_dependency_circuit_state", "127.0.0.1:1")] == 2
    assert samples[("cosmic_dependency_fast_failures_total", "127.0.0.1:1")] >= 1
    b.succeeded()
    assert b not in open_circuits()
