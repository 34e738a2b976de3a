"""Circuit breakers for the platform's dependencies: the registry and the stores.

While a dependency is down, every call to it would wait out its own connect timeout
(seconds each, in every thread that tries); a breaker notices the failures instead and
fails the next calls at once, so what needs the dependency learns fast and what does
not keeps its threads. After a pause it lets one call through as a probe: if that one
succeeds the circuit closes, if it fails the pause doubles (up to a ceiling).

States, per dependency and target, one per process (:func:`breaker`):

- ``closed``: calls go through; ``failures`` failures in a row open it.
- ``open``: calls fail fast with the caller's own "unavailable" error, until the pause ends.
- ``half_open``: one probe is in flight; other calls still fail fast.

Each breaker's state and fast failures are Prometheus series
(``cosmic_dependency_circuit_state``, ``cosmic_dependency_fast_failures_total``):
what is degraded shows on every process's ``/metrics`` and in the alert
``DependencyCircuitOpen``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from functools import lru_cache

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


class CircuitBreaker:
    """One dependency's breaker. ``clock`` is injectable for tests."""

    def __init__(self, dependency: str, target: str, *, failures: int = 3,
                 pause_s: float = 1.0, max_pause_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.dependency, self.target = dependency, target
        self.failures, self.pause_s, self.max_pause_s = failures, pause_s, max_pause_s
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._in_a_row = 0
        self._pause = pause_s
        self._reopen_at = 0.0
        self.fast_failures = 0
        self.last_error = ""

    @property
    def state(self) -> str:
        with self._lock:
            return self._state

    def allow(self) -> float | None:
        """None if a call may go ahead now; else the seconds until the next probe."""
        with self._lock:
            if self._state == CLOSED:
                return None
            now = self._clock()
            if self._state == OPEN and now >= self._reopen_at:
                self._state = HALF_OPEN  # this caller is the probe
                return None
            self.fast_failures += 1
            return max(0.0, self._reopen_at - now)

    def succeeded(self) -> None:
        with self._lock:
            self._state, self._in_a_row, self._pause = CLOSED, 0, self.pause_s

    def failed(self, error: BaseException | str) -> None:
        with self._lock:
            self.last_error = str(error)[:200]
            self._in_a_row += 1
            if self._state == HALF_OPEN:
                self._pause = min(self._pause * 2, self.max_pause_s)
            elif self._in_a_row < self.failures:
                return
            self._state = OPEN
            self._reopen_at = self._clock() + self._pause

    def refusal(self, wait_s: float) -> str:
        """What a fast failure says."""
        return (f"{self.dependency} at {self.target} is down (circuit open after "
                f"{self._in_a_row} failures: {self.last_error}); next try in {wait_s:.1f}s")


class _Breakers(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_key: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, dependency: str, target: str) -> CircuitBreaker:
        with self._lock:
            found = self.by_key.get((dependency, target))
            if found is None:
                found = self.by_key[(dependency, target)] = CircuitBreaker(dependency, target)
            return found

    def collect(self) -> Iterable[Metric]:
        state = GaugeMetricFamily(
            "cosmic_dependency_circuit_state",
            "Circuit breaker of a dependency: 0 closed (calls go through), 1 half open "
            "(a probe is out), 2 open (calls fail fast).", labels=["dependency", "target"])
        fast = CounterMetricFamily(
            "cosmic_dependency_fast_failures",
            "Calls refused at once because the dependency's circuit was open.",
            labels=["dependency", "target"])
        with self._lock:
            breakers = list(self.by_key.values())
        for b in breakers:
            state.add_metric([b.dependency, b.target], _STATE_VALUE[b.state])
            fast.add_metric([b.dependency, b.target], b.fast_failures)
        return [state, fast]


@lru_cache(maxsize=1)
def _breakers() -> _Breakers:
    from cosmic.metrics import hub

    found = _Breakers()
    hub().add(found)
    return found


def breaker(dependency: str, target: str) -> CircuitBreaker:
    """This process's breaker for ``dependency`` (``registry``, ``postgres``,
    ``clickhouse``) at ``target`` (a URL or host:port)."""
    return _breakers().get(dependency, target)


def open_circuits() -> list[CircuitBreaker]:
    """The breakers of this process that are not closed: what is degraded now."""
    return [b for b in list(_breakers().by_key.values()) if b.state != CLOSED]


__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "breaker", "open_circuits"]
