"""Where forces are computed: the choice between the CPU (:mod:`.cpu`) and the GPU (:mod:`.gpu`).

A backend answers two questions for a resolved solver (``"direct"`` or
``"tree"``): the accelerations and the potentials of every body. Integration,
merging and bookkeeping stay on the host in numpy, so a world's state is the
same kind of object whichever backend computed its forces.

``backend="auto"`` uses the GPU when cupy imports and a device answers, and
otherwise the CPU; ``"cuda"`` asks for the GPU but, like ``"auto"``, falls
back to the CPU when it cannot run, with one log line per process. A device
error in the middle of a run falls back the same way (see :mod:`.world`).
"""

from __future__ import annotations

import logging
from typing import Protocol

from . import gpu
from .cpu import AUTO_TREE_MIN_BODIES, CPU, CpuBackend
from .errors import BackendUnavailable
from .types import F64Array

__all__ = ["AUTO_TREE_MIN_BODIES", "CPU", "CpuBackend", "ForceBackend", "gpu_backend",
           "mark_gpu_failed", "reset_gpu_probe", "select"]

log = logging.getLogger(__name__)


class ForceBackend(Protocol):
    name: str

    def accelerations(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array: ...

    def potentials(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array: ...

    def auto_solver(self, n: int) -> str: ...


_gpu: ForceBackend | None = None
_gpu_failure: str | None = None


def gpu_backend() -> ForceBackend:
    """The process's GPU backend, created on first use; raises BackendUnavailable."""
    global _gpu, _gpu_failure
    if _gpu is not None:
        return _gpu
    if _gpu_failure is not None:
        raise BackendUnavailable(_gpu_failure)
    try:
        _gpu = gpu.CudaBackend.create()
    except BackendUnavailable as exc:
        _gpu_failure = str(exc)
        raise
    return _gpu


def select(requested: str) -> ForceBackend:
    """The backend to use for ``requested`` (``"auto"``, ``"cpu"`` or ``"cuda"``)."""
    if requested == "cpu":
        return CPU
    already_failed = _gpu_failure is not None
    try:
        return gpu_backend()
    except BackendUnavailable as exc:
        if not already_failed:  # one line per process, not one per world
            level = logging.WARNING if requested == "cuda" else logging.INFO
            log.log(level, "physics: GPU backend unavailable (%s); using the CPU backend", exc)
        return CPU


def mark_gpu_failed(reason: str) -> None:
    """Record a device error seen mid-run so later worlds go straight to the CPU."""
    global _gpu, _gpu_failure
    _gpu = None
    _gpu_failure = reason
    log.warning("physics: GPU backend failed (%s); using the CPU backend from now on", reason)


def reset_gpu_probe() -> None:
    """Forget the cached GPU probe (tests; a process that gained a device)."""
    global _gpu, _gpu_failure
    _gpu = None
    _gpu_failure = None
