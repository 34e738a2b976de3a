"""One cell of the fault matrix: a processor, a fault, a seed and an input size.

:func:`run_cell` prepares the row (private topics, a private database, a private
shard), starts its instances as real ``cosmic`` processes, feeds the seeded input
at a steady pace from a thread, and lands the fault's events at the progress
points the seed picks (never before 20 % of the output is committed). Each
restart is timed: recovery is the time from the fault to the first output a
new instance committed. When the output is complete, or stopped growing, every
instance is stopped cleanly and the row's verifier reads what was committed.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cosmic.settings import Settings, child_env

from .private import PrivateStack
from .verify import Tally

_POLL_S = 0.1
_STOP_WAIT_S = 60.0


@dataclass(frozen=True, slots=True)
class Cell:
    row: str
    fault: str
    seed: int
    size: int  # input records (commands for the worker, records for a connector)


@dataclass
class Verdict:
    """What a row's verifier found in the committed output."""

    tally: Tally
    aborted: int | None = None  # aborted transactional records seen read_uncommitted
    failures: list[str] = field(default_factory=list)  # other checks that did not hold
    notes: list[str] = field(default_factory=list)  # what else it saw, for the cell's events


@dataclass
class Outcome:
    cell: Cell
    verdict: Verdict | None = None
    recoveries_s: list[float] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    error: str | None = None
    elapsed_s: float = 0.0
    proof_needed: bool = False  # a kill of a transactional processor: aborts must be seen

    @property
    def passed(self) -> bool:
        v = self.verdict
        if self.error is not None or v is None or not v.tally.ok or v.failures:
            return False
        return not (self.proof_needed and not v.aborted)


class Row(ABC):
    """A processor under test: its input, its processes and its verifier."""

    name: str = "row"
    transactional: bool = False  # its output is written in Kafka transactions
    faults: tuple[str, ...] = ("sigterm", "sigkill", "rebalance")  # the columns that apply
    one_output_per_input = True  # the input's size is the output's (else the rules say)

    def __init__(self, settings: Settings, cell: Cell, workdir: Path,
                 stack: PrivateStack | None = None) -> None:
        # A cell whose fault takes Kafka or the registry down runs on a private stack
        # (PRIVATE_STACK_FAULTS): its settings are that stack's, and the fault acts on it.
        self.stack = stack
        self.settings = settings if stack is None else stack.settings
        self.cell = cell
        self.workdir = workdir

    @abstractmethod
    def prepare(self) -> None:
        """Private topics/database/shard and the seeded input, before any instance runs."""

    @abstractmethod
    def feed(self) -> Iterator[int]:
        """Produce the input, yielding after each record (the runner paces it)."""

    @abstractmethod
    def argv(self, instance: int) -> tuple[list[str], dict[str, str]]:
        """The ``cosmic`` arguments and extra environment of instance ``instance``."""

    @abstractmethod
    def output(self, since_ms: int | None = None) -> int:
        """Committed output so far (``since_ms``: only what was produced after it,
        where the output carries its time; else all of it)."""

    @property
    @abstractmethod
    def expected(self) -> int:
        """Output records the whole input implies."""

    @abstractmethod
    def verify(self) -> Verdict: ...

    def await_open_transaction(self, timeout_s: float) -> None:
        """Return at a moment a transaction is open (a transactional row; else at once),
        so a kill lands inside one; at the timeout in any case."""
        return None

    def outage(self, seconds: float) -> None:
        """Take the row's store down for ``seconds`` and bring it back ("store-outage")."""
        raise NotImplementedError(f"{self.name} has no store to take down")

    def cleanup(self) -> None:
        return None


def launch(settings: Settings, args: Sequence[str], extra_env: dict[str, str], log: Path,
           what: str) -> subprocess.Popen[bytes]:
    """``cosmic ARGS`` as a process seeing exactly ``settings``, its output appended to ``log``."""
    with log.open("ab") as out:
        out.write(f"--- start {what}: {' '.join(args)}\n".encode())
        out.flush()
        return subprocess.Popen([sys.executable, "-m", "cosmic_app", *args],
                                env=child_env(settings) | extra_env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen[bytes], sig: signal.Signals) -> int | None:
    """Send ``sig`` and wait for the exit; the exit code (None: it did not stop and was
    killed)."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(_STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return None


class Instances:
    """The row's processes by index; the same index is the same identity on restart."""

    def __init__(self, row: Row, log: Path) -> None:
        self.row = row
        self.log = log
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int) -> None:
        args, extra = self.row.argv(i)
        self.procs[i] = launch(self.row.settings, args, extra, self.log, f"instance {i}")

    def signal(self, i: int, sig: signal.Signals) -> int | None:
        """Send ``sig`` and wait for the exit; the exit code (None: it did not stop)."""
        return stop(self.procs.pop(i), sig)

    def dead(self) -> list[int]:
        return [i for i, p in self.procs.items() if p.poll() is not None]

    def stop_all(self) -> list[str]:
        problems = []
        for i in list(self.procs):
            code = self.signal(i, signal.SIGTERM)
            if code not in (0, -signal.SIGTERM):
                problems.append(f"instance {i} exited {code} on SIGTERM")
        return problems


# -- faults: each is a list of (progress fraction, action) -------------------------------

# (progress, "term"|"kill"|"join"|"leave"|"outage"|"broker"|"registry", instance)
Action = tuple[float, str, int]


def plan(fault: str, seed: int) -> tuple[int, list[Action]]:
    """The instances to start with and the fault's events, at seeded progress points."""
    rng = random.Random(seed)
    if fault == "sigterm":
        return 1, [(rng.uniform(0.2, 0.6), "term", 0)]
    if fault == "sigkill":
        points = sorted(rng.uniform(0.2, 0.8) for _ in range(3))
        return 1, [(p, "kill", 0) for p in points]
    if fault == "rebalance":
        points = sorted(rng.uniform(0.2, 0.8) for _ in range(4))
        steps = [("join", 2), ("leave", 0), ("join", 3), ("leave", 1)]
        return 2, [(p, kind, i) for p, (kind, i) in zip(points, steps, strict=True)]
    if fault == "store-outage":
        return 1, [(rng.uniform(0.2, 0.6), "outage", 0)]
    if fault == "broker-restart":
        return 1, [(rng.uniform(0.2, 0.6), "broker", 0)]
    if fault == "registry-outage":
        return 1, [(rng.uniform(0.2, 0.6), "registry", 0)]
    raise ValueError(f"unknown fault {fault!r}")


FAULTS: tuple[str, ...] = ("sigterm", "sigkill", "rebalance", "store-outage",
                           "broker-restart", "registry-outage")
# The faults that stop Kafka or the registry: never the shared ones, so their cells run
# on a private stack (cosmic_app.chaos.private).
PRIVATE_STACK_FAULTS: tuple[str, ...] = ("broker-restart", "registry-outage")
# Faults whose transaction open at the fault is aborted: a transactional row must show
# aborted records read_uncommitted (the fault landed inside a transaction).
ABORTING_FAULTS: tuple[str, ...] = ("sigkill", "broker-restart")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def run_cell(row: Row, *, duration_s: float, outage_s: float = 30.0,
             settle_s: float = 60.0) -> Outcome:
    """Run one cell to completion; the input is fed over about ``duration_s`` seconds,
    and a store outage lasts ``outage_s``."""
    cell = row.cell
    out = Outcome(cell, proof_needed=row.transactional and cell.fault in ABORTING_FAULTS)
    started = time.monotonic()
    inst = Instances(row, row.workdir / f"{cell.row}-{cell.fault}-{cell.seed}.log")
    feeder: threading.Thread | None = None
    stop_feed = threading.Event()
    running = threading.Event()  # set by the driver at the first committed output
    # How far the input may go: a tenth past the next fault's point, so every fault
    # lands while input still flows and has new input to recover on.
    allowed = [cell.size]
    feed_error: list[BaseException] = []
    prepared = False
    try:
        row.prepare()
        prepared = True
        first, actions = plan(cell.fault, cell.seed)
        allowed[0] = _allowance(actions, 0, 0.0, cell.size)
        for i in range(first):
            inst.start(i)
        pause = duration_s / max(cell.size, 1)
        warm_up = max(1, cell.size // 20)

        def feed() -> None:
            # A twentieth of the input, then the rest once output shows the processor
            # running: a slow start must not let the whole input pass before the faults.
            try:
                t0 = time.monotonic()
                for n in row.feed():
                    if stop_feed.is_set():
                        return
                    if n == warm_up:
                        while not running.wait(0.5):
                            if stop_feed.is_set():
                                return
                        t0 = time.monotonic() - n * pause
                    if n > allowed[0]:
                        while n > allowed[0] and not stop_feed.wait(0.1):
                            pass
                        t0 = time.monotonic() - n * pause
                    ahead = t0 + n * pause - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
            except BaseException as exc:  # noqa: BLE001 - reported as the cell's error
                feed_error.append(exc)

        feeder = threading.Thread(target=feed, name="chaos-feed", daemon=True)
        feeder.start()
        _drive(row, inst, actions, out, feeder, settle_s, outage_s, running, allowed)
        out.events.append(f"output complete at {time.monotonic() - started:.0f}s")
        if feed_error:
            raise feed_error[0]
    except Exception as exc:  # noqa: BLE001 - a cell that cannot run is a failed cell
        out.error = f"{type(exc).__name__}: {exc}"
    finally:
        stop_feed.set()
        if feeder is not None:
            feeder.join(30)
        problems = inst.stop_all()
        out.events += [*problems, f"stopped at {time.monotonic() - started:.0f}s"]
        if problems and out.error is None:
            out.error = "; ".join(problems)
    try:
        if prepared:
            out.verdict = row.verify()
            out.events += out.verdict.notes
            out.events.append(f"verified at {time.monotonic() - started:.0f}s")
    except Exception as exc:  # noqa: BLE001
        out.error = f"verifier: {type(exc).__name__}: {exc}"
    finally:
        row.cleanup()
    out.elapsed_s = time.monotonic() - started
    if out.error:
        out.events.append(f"log: {inst.log}")
    return out


def _allowance(actions: Sequence[Action], k: int, progress: float, size: int) -> int:
    """Input allowed while fault ``k`` is next: a tenth past its point (or past the
    progress already made); all of it once no fault is left."""
    if k >= len(actions):
        return size
    return min(size, int((max(actions[k][0], progress) + 0.1) * size))


def _drive(row: Row, inst: Instances, actions: Sequence[Action], out: Outcome,
           feeder: threading.Thread, settle_s: float, outage_s: float,
           running: threading.Event, allowed: list[int]) -> None:
    pending = list(actions)
    last_growth, last_seen = time.monotonic(), -1
    began = time.monotonic()
    while True:
        if crashed := inst.dead():
            raise RuntimeError(f"instance(s) {crashed} exited on their own")
        seen = row.output()
        if seen != last_seen:
            if last_seen <= 0 < seen:
                running.set()
                out.events.append(f"first output {time.monotonic() - began:.0f}s after start")
            last_seen, last_growth = seen, time.monotonic()
        if pending and seen / max(row.expected, 1) >= pending[0][0]:
            more = _allowance(pending, 1, seen / max(row.expected, 1), row.cell.size)

            def release(more: int = more) -> None:
                allowed[0] = more

            _fault(row, inst, pending.pop(0), out, outage_s, release)
            last_growth = time.monotonic()
            continue
        if not pending and not feeder.is_alive() and seen >= row.expected:
            time.sleep(1.0)  # anything past the expected end would be a duplicate: let it land
            return
        if time.monotonic() - last_growth > settle_s:
            left = f", {len(pending)} fault(s) never landed" if pending else ""
            raise RuntimeError(f"incomplete: output stuck at {seen}/{row.expected}{left}")
        time.sleep(_POLL_S)


def _fault(row: Row, inst: Instances, action: Action, out: Outcome, outage_s: float,
           release: Callable[[], None]) -> None:
    """Land one fault and time the recovery. ``release`` lets the rest of the input
    go: at once, but for a registry outage only at the registry's return, since the
    processors go on without it and would finish the input before it is back: input
    is held at the fault's allowance meanwhile, so there is new input to recover on."""
    progress, kind, i = action
    if kind != "registry":
        release()
    at = time.monotonic()
    at_ms = _now_ms()
    seen = row.output()
    what = f"{kind} {i} at {progress:.0%} ({seen}/{row.expected})"
    if seen >= row.expected:
        raise RuntimeError(f"the output was complete before {what}: nothing left to recover")
    if kind in ("term", "kill", "leave"):
        sig = signal.SIGKILL if kind == "kill" else signal.SIGTERM
        if kind == "kill":
            row.await_open_transaction(5.0)
        code = inst.signal(i, sig)
        if kind == "term" and code not in (0, -signal.SIGTERM):
            out.events.append(f"instance {i} exited {code} on SIGTERM")
            raise RuntimeError(f"instance {i} did not stop cleanly on SIGTERM (exit {code})")
        if kind != "leave":
            inst.start(i)
    elif kind in ("outage", "registry"):
        if kind == "outage":
            row.outage(outage_s)
        else:
            stack = _private(row)
            stack.stop_registry()
            time.sleep(outage_s)
            during = row.output() - seen
            stack.start_registry()
            release()
            # Going on without the registry (cached schemas) is the point: say how far.
            out.events.append(f"{during} output records committed while the registry was down")
        # Recovery counts from the return: the outage itself is the fault's length.
        at, at_ms, what = time.monotonic(), _now_ms(), f"{what}, {outage_s:.0f}s down"
        if crashed := inst.dead():
            raise RuntimeError(f"instance(s) {crashed} exited during {what}")
    elif kind == "broker":
        stack = _private(row)
        row.await_open_transaction(5.0)
        # Recovery counts from the kill (the restart is part of it): what was committed
        # since the kill is counted from here, before the broker is back.
        at, at_ms = time.monotonic(), _now_ms()
        baseline = row.output(at_ms)
        back = stack.restart_broker()
        what = f"{what}, broker answering again {back:.1f}s after the kill"
    else:
        inst.start(i)
    if kind != "broker":
        baseline = row.output(at_ms)
    deadline = at + 120
    while row.output(at_ms) <= baseline:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no new output 120 s after {what}")
        if crashed := inst.dead():
            raise RuntimeError(f"instance(s) {crashed} exited after {what}")
        time.sleep(_POLL_S / 2)
    took = time.monotonic() - at
    out.recoveries_s.append(took)
    out.events.append(f"{what}: new output after {took:.1f}s")


def _private(row: Row) -> PrivateStack:
    if row.stack is None:
        raise RuntimeError(f"{row.cell.fault} needs the row on a private stack")
    return row.stack
