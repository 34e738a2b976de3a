"""A job as a platform service: ``cosmic jobs run NAME`` in a child process.

Used by ``cosmic up --with NAME`` and by the tests. The process handling
(its own session, SIGTERM then SIGKILL to the whole group, so no JVM is left
behind) is :class:`cosmic.runtime.ChildProcessService`'s.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cosmic.errors import CosmicError
from cosmic.runtime import ChildProcessService


class JobFailed(CosmicError):
    """A job's process exited by itself."""


class JobProcess(ChildProcessService):
    """One ``cosmic jobs run NAME ARGS...`` process, logging to ``log_file``."""

    def __init__(self, name: str, log_file: Path, args: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, grace_s: float = 20.0) -> None:
        super().__init__(name, [sys.executable, "-m", "cosmic_app", "jobs", "run", name, *args],
                         log_file, env=env, grace_s=grace_s)

    def exited(self, code: int) -> BaseException:
        return JobFailed(f"job {self.name} exited with code {code}; see {self.log_path}")
