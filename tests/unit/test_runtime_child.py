"""ChildProcessService: stopping leaves nothing behind; a child that dies is a failure."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from cosmic.runtime import ChildProcessService, ServiceFailed

# A child that starts a grandchild (as a PyFlink client starts a JVM), writes its pid, waits.
_TREE = ("import subprocess, sys, time; "
         "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
         "open(sys.argv[1], 'w').write(str(g.pid)); print('child up', flush=True); "
         "time.sleep(120)")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is gone for every purpose but the process table.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split()[2] != "Z"


def _wait_for(path: Path) -> int:
    deadline = time.monotonic() + 20
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, "the child never started its grandchild"
        time.sleep(0.05)
    return int(path.read_text())


def test_stop_ends_the_grandchildren_and_logs_the_output(tmp_path: Path) -> None:
    pid_file = tmp_path / "grandchild.pid"
    svc = ChildProcessService("tree", [sys.executable, "-c", _TREE, str(pid_file)],
                              tmp_path / "logs" / "tree.log", grace_s=5)
    svc.start()
    grandchild = _wait_for(pid_file)
    assert svc.progress().startswith("running")
    svc.stop()
    deadline = time.monotonic() + 5
    while _alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(grandchild)
    assert svc.failure() is None  # asked to stop: not a failure
    assert "child up" in (tmp_path / "logs" / "tree.log").read_text()


def test_a_child_that_exits_by_itself_is_a_failure_naming_its_log(tmp_path: Path) -> None:
    log = tmp_path / "quitter.log"
    svc = ChildProcessService("quitter", [sys.executable, "-c", "raise SystemExit(3)"], log)
    svc.start()
    assert svc.proc is not None
    svc.proc.wait(20)
    err = svc.failure()
    assert isinstance(err, ServiceFailed)
    assert "quitter exited with code 3" in str(err) and str(log) in str(err)
    svc.stop()
