"""Token buckets: how many commands a player may send, how many worlds they may create.

A :class:`TokenBucket` holds up to ``burst`` tokens and gains ``rate`` per
second; each admitted request takes one. Over any window of ``T`` seconds a
bucket that starts full admits at most ``rate * T + burst``. A refusal says
when the next token arrives (``retry_after_s``). :class:`Buckets` keeps one
bucket per key (player), forgetting the idle ones beyond ``max_keys`` — a
forgotten bucket was full anyway once it has been idle for ``burst / rate``.
The clock is injectable, so tests run on a fake one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

from .errors import RateLimited

Clock = Callable[[], float]


class TokenBucket:
    __slots__ = ("burst", "rate", "stamp", "tokens")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a bucket needs rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float, cost: float = 1.0) -> float:
        """0.0 if ``cost`` tokens were taken, else the seconds until they would be there."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        if self.tokens >= cost:
            self.tokens -= cost
            return 0.0
        return max((cost - self.tokens) / self.rate, 0.001)  # never "retry in 0"


class Buckets:
    """One bucket per key, made full on first use."""

    def __init__(self, rate: float, burst: float, *, what: str = "requests",
                 max_keys: int = 100_000, clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.what = what
        self.max_keys = max_keys
        self.clock = clock
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def peek(self, key: str) -> float:
        """Seconds until ``key`` could take one (0: now), taking nothing."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return 0.0
        now = self.clock()
        tokens = min(bucket.burst, bucket.tokens + max(0.0, now - bucket.stamp) * bucket.rate)
        return 0.0 if tokens >= 1 else (1 - tokens) / bucket.rate

    def take(self, key: str) -> None:
        """Take one for ``key`` or raise :class:`RateLimited` with the wait."""
        now = self.clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate, self.burst, now)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        wait = bucket.take(now)
        if wait:
            raise RateLimited(f"{key!r} is over {self.rate:g} {self.what}/s (burst "
                              f"{self.burst:g}); retry in {wait:.3f}s", retry_after_s=wait)


class Counter:
    """Live counts per key under a ceiling (subscriptions per player or per connection)."""

    def __init__(self, limit: int, what: str) -> None:
        self.limit = limit
        self.what = what
        self._counts: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        n = self._counts.get(key, 0)
        if n >= self.limit:
            raise RateLimited(f"{key!r} already has {n} {self.what} (at most {self.limit}); "
                              "end one first", retry_after_s=1.0)
        self._counts[key] = n + 1

    def release(self, key: str) -> None:
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    def count(self, key: str) -> int:
        return self._counts.get(key, 0)
