"""Running the platform's services side by side until told to stop.

A platform service is anything with ``start()``, ``stop()`` and a one-line
``progress()``; :func:`run_services` starts them, prints their progress at a
steady rate, and stops them all on Ctrl-C, on ``duration``, or when one fails.
"""

from __future__ import annotations

import logging
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


class ThreadService:
    """A platform service whose work is one loop, :meth:`run`, in a background thread.

    ``run`` returns when :attr:`_stop` is set; an exception it raises is kept
    and reported by :meth:`failure` (``run_services`` then stops everything).
    """

    name = "service"
    join_timeout_s = 60.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.join_timeout_s)

    def failure(self) -> BaseException | None:
        return self._error

    def _run_guarded(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            logging.getLogger(type(self).__module__).exception("%s failed", self.name)
            self._error = exc


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
