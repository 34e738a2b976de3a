"""A local service run as a child process we own: started once, probed, stopped by PID.

Each concrete service (Kafka, PostgreSQL, ClickHouse, the schema registry)
says how to prepare its state folder, which command runs it, and how to ask
it whether it really answers. This base class does the rest the same way for
all of them: idempotent start, a readiness wait with a timeout, a clear error
naming the log file, PID-file bookkeeping, and a clean stop.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from cosmic.errors import ServiceStartError, ServiceUnavailable, StackError
from cosmic.settings import Settings

_POLL_S = 0.25

# Services outlive the process that starts them by design; holding their Popen
# handles stops the interpreter from warning that they are "still running".
_STARTED: list[subprocess.Popen[bytes]] = []


@dataclass
class ServiceStatus:
    name: str
    running: bool
    pid: int | None
    version: str | None
    port: int
    endpoint: dict[str, Any]
    rss_mib: float | None
    log_file: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LocalService(ABC):
    """One service of the local stack."""

    name: str = "service"
    # The signal that asks this service for a prompt, clean shutdown.
    stop_signal: signal.Signals = signal.SIGTERM

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / self.name
        self.log_file = settings.state_dir / "logs" / f"{self.name}.log"
        self.pid_file = settings.state_dir / "run" / f"{self.name}.pid"

    # -- what each service defines -------------------------------------------------

    @property
    @abstractmethod
    def port(self) -> int: ...

    @abstractmethod
    def endpoint(self) -> dict[str, Any]:
        """How clients reach the service (goes into ``status --json``)."""

    @abstractmethod
    def prepare(self) -> None:
        """Create config and first-time state (idempotent)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The foreground command that runs the service."""

    @abstractmethod
    def probe(self, timeout_s: float) -> None:
        """Raise if the service does not answer a real request."""

    def executable(self) -> str:
        """Program name our PID must run (guards against recycled PIDs)."""
        return self.command()[0]

    def version(self) -> str | None:
        return None

    def notes(self) -> list[str]:
        """Plain-language remarks for ``status`` (e.g. a missing extension)."""
        return []

    def after_ready(self) -> None:  # noqa: B027 - optional hook, most services need none
        """One-time setup that needs the running service (databases, users)."""

    def run_as(self) -> tuple[str, str] | None:
        """(user, group) to drop to when started as root, or None."""
        return None

    def child_env(self) -> dict[str, str] | None:
        return None

    # -- shared mechanics ----------------------------------------------------------

    def pid(self) -> int | None:
        """PID of our running process, or None (stale PID files are ignored)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            # A recycled PID would belong to some other program: check its command line.
            cmdline = proc.cmdline()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        if cmdline and not self.owns(cmdline):
            return None
        return pid

    def owns(self, cmdline: list[str]) -> bool:
        """Whether a process with this command line is this service."""
        return Path(cmdline[0]).name == Path(self.executable()).name

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, timeout_s: float | None = None) -> str:
        """Start the service unless it already answers; say which case it was.

        Returns ``"started"``, ``"already running"`` (ours, from this state
        folder) or ``"external"`` (something this stack did not start answers
        at the configured endpoint, and is used as it is).
        """
        timeout_s = timeout_s or self.settings.startup_timeout_s
        if self.is_running():
            self.wait_ready(timeout_s)
            return "already running"
        if self.answers(timeout_s=1.0):
            return "external"
        self.home.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        cmd = self.command()
        # A service's own environment, where it has one, is whole (cosmic.settings.child_env
        # drops this process's COSMIC_* variables, which may be another identity's).
        env = self.child_env() or os.environ.copy()
        user_group = self.run_as() if os.geteuid() == 0 else None
        with open(self.log_file, "ab") as log:
            log.write(f"\n=== cosmic: starting {self.name}: {' '.join(cmd)}\n".encode())
            log.flush()
            try:
                proc = subprocess.Popen(
                    cmd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                    env=env,
                    start_new_session=True,
                    user=user_group[0] if user_group else None,
                    group=user_group[1] if user_group else None,
                )
            except OSError as exc:
                raise ServiceStartError(self.name, str(exc), str(self.log_file)) from None
        self.pid_file.write_text(str(proc.pid))
        try:
            self._wait_started(proc, timeout_s)
        except ServiceStartError:
            self._terminate(proc.pid, grace_s=5)
            self.pid_file.unlink(missing_ok=True)
            raise
        self.after_ready()
        return "started"

    def _wait_started(self, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        last_error = "no answer yet"
        while time.monotonic() < deadline:
            code = proc.poll()
            if code is not None:
                raise ServiceStartError(
                    self.name, f"process exited with code {code}: {self.log_tail(3)}",
                    str(self.log_file),
                )
            try:
                self.probe(timeout_s=min(3.0, max(0.5, deadline - time.monotonic())))
            except Exception as exc:  # noqa: BLE001 - any failed probe means "not yet"
                last_error = str(exc) or type(exc).__name__
            else:
                if proc.poll() is None:
                    _STARTED.append(proc)
                    return
            time.sleep(_POLL_S)
        raise ServiceStartError(
            self.name, f"no answer within {timeout_s:g}s ({last_error})", str(self.log_file)
        )

    def answers(self, timeout_s: float = 2.0) -> bool:
        """Whether something answers this service's probe at its endpoint right now."""
        try:
            self.probe(timeout_s=timeout_s)
        except Exception:  # noqa: BLE001 - any failure means "no"
            return False
        return True

    def check(self, timeout_s: float = 5.0) -> None:
        """Raise :class:`ServiceUnavailable` naming the endpoint if the service does not answer."""
        try:
            self.probe(timeout_s=timeout_s)
        except Exception as exc:  # noqa: BLE001 - translated into one typed error
            raise ServiceUnavailable(
                self.name, f"127.0.0.1:{self.port}", timeout_s, str(exc) or type(exc).__name__
            ) from None

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.probe(timeout_s=min(3.0, timeout_s))
                return
            except Exception as exc:  # noqa: BLE001 - retried until the deadline
                if time.monotonic() > deadline:
                    raise ServiceStartError(
                        self.name, f"running but not answering: {exc}", str(self.log_file)
                    ) from None
            time.sleep(_POLL_S)

    def stop(self, grace_s: float = 30.0) -> bool:
        """Stop our process (only ours, by PID); return True if one was running."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        self._terminate(pid, grace_s, self.stop_signal)
        self.pid_file.unlink(missing_ok=True)
        return True

    @staticmethod
    def _terminate(pid: int, grace_s: float, sig: signal.Signals = signal.SIGTERM) -> None:
        try:
            proc = psutil.Process(pid)
            children = proc.children(recursive=True)
        except psutil.NoSuchProcess:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        _gone, alive = psutil.wait_procs([proc], timeout=grace_s)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        # Whatever the service forked must not outlive it.
        _, stragglers = psutil.wait_procs(children, timeout=5)
        for p in stragglers:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)

    def rss_mib(self) -> float | None:
        pid = self.pid()
        if pid is None:
            return None
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
            total = 0
            for p in procs:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
        except psutil.NoSuchProcess:
            return None
        return round(total / 2**20, 1)

    def status(self) -> ServiceStatus:
        pid = self.pid()
        version = None
        if pid is not None:
            try:
                version = self.version()
            except Exception:  # noqa: BLE001 - status must print even if a query fails
                version = None
        return ServiceStatus(
            name=self.name,
            running=pid is not None,
            pid=pid,
            version=version,
            port=self.port,
            endpoint=self.endpoint(),
            rss_mib=self.rss_mib(),
            log_file=str(self.log_file),
            notes=self.notes() if pid is not None else [],
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(t.strip() for t in text[-lines:] if t.strip())

    def require_running(self) -> None:
        if not self.is_running():
            raise StackError(f"{self.name} is not running: start it with `cosmic stack up`")
