"""Running the platform's services side by side until told to stop.

A platform service is anything with ``start()``, ``stop()`` and a one-line
``progress()``; :func:`run_services` starts them, prints their progress at a
steady rate, and stops them all on Ctrl-C, on ``duration``, or when one fails.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from cosmic.errors import CosmicError


class PlatformService(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def progress(self) -> str: ...

    def failure(self) -> BaseException | None: ...


class ServiceFailed(CosmicError):
    """A platform service stopped with an error while running."""


def run_services(
    services: Sequence[PlatformService],
    *,
    duration_s: float | None,
    echo: Callable[[str], None],
    interval_s: float = 2.0,
) -> None:
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda *_: stop.set())
    started: list[PlatformService] = []
    t0 = time.monotonic()
    try:
        for svc in services:
            svc.start()
            started.append(svc)
            echo(f"started {svc.name}")
        while not stop.wait(interval_s):
            elapsed = time.monotonic() - t0
            for svc in services:
                if (err := svc.failure()) is not None:
                    raise ServiceFailed(f"{svc.name} failed: {err}") from err
            line = " | ".join(f"{s.name}: {s.progress()}" for s in services)
            echo(f"[{elapsed:6.1f}s] {line}")
            if duration_s is not None and elapsed >= duration_s:
                break
    finally:
        for svc in reversed(started):
            svc.stop()
            echo(f"stopped {svc.name}")
        for sig, handler in previous.items():
            signal.signal(sig, handler)
