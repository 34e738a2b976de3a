"""Running the platform's services side by side until told to stop.

A platform service is anything with ``start()``, ``stop()``, a one-line
``progress()`` and ``failure()``; :func:`run_services` starts them, prints
their progress at a steady rate, and stops them all on Ctrl-C, on
``duration``, or when one fails. Two bases implement the protocol:
:class:`ThreadService` (a loop in a background thread) and
:class:`ChildProcessService` (a command in a child process of its own).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Protocol

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


class ChildProcessService:
    """A platform service that is one command run in a child process.

    The child gets a session (process group) of its own, so stopping it
    reaches everything it started (a PyFlink client's JVM and that JVM's
    Python workers) and nothing is left behind. Its stdout and stderr are
    appended to :attr:`log_path`, which may be changed until :meth:`start`.

    :meth:`stop` sends SIGTERM to the group and waits ``grace_s`` for the
    child; then whatever of the group is left gets SIGKILL. :meth:`kill` is a
    crash (SIGKILL at once: no commit, no goodbye), for recovery tests. A child
    that exits by itself is a failure, reported by :meth:`failure`.
    """

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 env: Mapping[str, str] | None = None, grace_s: float = 20.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env) if env is not None else None
        self.grace_s = grace_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0
        self._log: IO[bytes] | None = None
        self._stopping = False

    def command(self) -> list[str]:
        """The child's command line; subclasses may prepare files it reads first."""
        return self.argv

    def start(self) -> None:
        argv = self.command()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._stopping = False
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env} if self.env is not None else None)
        self.started_at = time.monotonic()

    def stop(self) -> None:
        if self.proc is None:
            return
        self._stopping = True
        self._signal(signal.SIGTERM)
        try:
            self.proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            self._signal(signal.SIGKILL)
            self.proc.wait()
        # The leader may exit before the rest of its group: end those too.
        self._signal(signal.SIGKILL)
        self._close_log()

    def kill(self) -> None:
        """SIGKILL the whole group at once: a crash, as far as the child can tell."""
        if self.proc is None:
            return
        self._stopping = True
        self._signal(signal.SIGKILL)
        self.proc.wait()
        self._close_log()

    def progress(self) -> str:
        if self.proc is None:
            return "not started"
        code = self.proc.poll()
        state = "running" if code is None else f"exited {code}"
        return f"{state}, pid {self.proc.pid}, up {time.monotonic() - self.started_at:.0f}s"

    def failure(self) -> BaseException | None:
        if self.proc is None or self._stopping:
            return None
        code = self.proc.poll()
        if code is None:
            return None
        return self.exited(code)

    def exited(self, code: int) -> BaseException:
        """The error reported when the child exits by itself with ``code``."""
        return ServiceFailed(f"{self.name} exited with code {code}; see {self.log_path}")

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self.proc.pid, sig)

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def run_services(
    services: Sequence[PlatformService],
    *,
    duration_s: float | None,
    echo: Callable[[str], None],
    interval_s: float = 2.0,
    render: Callable[[float, Sequence[PlatformService]], None] | None = None,
) -> None:
    """Start ``services``, report their progress every ``interval_s`` (one line through
    ``echo``, or ``render(elapsed, services)`` where given), and stop them all."""
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
            if render is not None:
                render(elapsed, services)
            else:
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
