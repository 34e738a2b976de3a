"""A small progress bar for long CLI work: done/total, rate and ETA, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    def __init__(self, label: str, unit: str, stream: TextIO | None = None,
                 every_s: float = 0.5, width: int = 30) -> None:
        self.label, self.unit = label, unit
        self.stream = stream or sys.stderr
        self.every_s, self.width = every_s, width
        self.t0: float | None = None
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self.t0 is None:
            # The clock starts with the work, not with the set-up before it.
            self.t0, self._last = now, now
            if done < total:
                return
        if now - self._last < self.every_s and done < total:
            return
        self._last = now
        elapsed = max(now - self.t0, 1e-9)
        rate = done / elapsed
        eta = (total - done) / rate if rate > 0 else float("inf")
        filled = int(self.width * done / total) if total else self.width
        bar = "#" * filled + "." * (self.width - filled)
        eta_text = f"{eta:5.1f}s" if eta != float("inf") else "   ?"
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total} {self.unit} "
                          f"{rate:8.0f} {self.unit}/s ETA {eta_text}")
        self.stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self.stream.write("\n")
            self.stream.flush()
