"""A job as a platform service: ``cosmic jobs run NAME`` in a child process.

Used by ``cosmic up --with NAME`` and by the tests. The child gets its own
session, so stopping it reaches the whole tree a PyFlink job is (the Python
client, the JVM it starts, the JVM's Python workers) and no JVM is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from cosmic.errors import CosmicError


class JobFailed(CosmicError):
    """A job's process exited by itself."""


class JobProcess:
    """start/stop/progress/failure over one job process (see :mod:`cosmic.runtime`)."""

    def __init__(self, name: str, log_file: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, grace_s: float = 20.0) -> None:
        self.name = name
        self.log_file = log_file
        self.args = list(args)
        self.env = dict(env) if env is not None else None
        self.grace_s = grace_s
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._stopping = False

    def start(self) -> None:
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_file.open("ab")
        self._stopping = False
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "cosmic", "jobs", "run", self.name, *self.args],
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **self.env} if self.env is not None else None)

    def _signal(self, sig: signal.Signals) -> None:
        assert self._proc is not None
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole tree at once: a crash, as far as the job can tell."""
        if self._proc is None:
            return
        self._stopping = True
        self._signal(signal.SIGKILL)
        self._proc.wait()
        self._close_log()

    def stop(self) -> None:
        if self._proc is None:
            return
        self._stopping = True
        self._signal(signal.SIGTERM)
        try:
            self._proc.wait(self.grace_s)
        except subprocess.TimeoutExpired:
            self._proc.wait()
        # The leader may exit before the JVM and its workers: end the rest of the group too.
        self._signal(signal.SIGKILL)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def progress(self) -> str:
        if self._proc is None:
            return "not started"
        code = self._proc.poll()
        return f"running (pid {self._proc.pid})" if code is None else f"exited {code}"

    def failure(self) -> BaseException | None:
        if self._proc is None or self._stopping:
            return None
        code = self._proc.poll()
        if code is None:
            return None
        return JobFailed(f"job {self.name} exited with code {code}; see {self.log_file}")
