"""Backend choice: CPU fallback without a GPU, and GPU/CPU agreement where a GPU exists."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import numpy as np
import pytest

from streams.physics import World, backends, plummer_sphere


def _gpu_usable() -> bool:
    backends.reset_gpu_probe()
    try:
        backends.gpu_backend()
    except backends.BackendUnavailable:
        return False
    return True


@pytest.fixture
def fresh_probe() -> Iterator[None]:
    backends.reset_gpu_probe()
    yield
    backends.reset_gpu_probe()


def test_auto_falls_back_to_cpu_with_one_log_line_when_cupy_is_missing(
    fresh_probe: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "cupy", None)  # makes `import cupy` raise ImportError
    caplog.set_level(logging.INFO, logger="streams.physics.backends")
    ids, m, x, v = plummer_sphere(10)
    worlds = [World.from_arrays(ids, m, x, v, backend=b) for b in ("auto", "cuda", "auto")]
    assert [w.backend for w in worlds] == ["cpu", "cpu", "cpu"]
    lines = [r for r in caplog.records if "GPU backend unavailable" in r.getMessage()]
    assert len(lines) == 1
    worlds[0].step(0.01)  # and it computes


def test_cpu_backend_is_used_when_asked(fresh_probe: None) -> None:
    world = World.from_arrays(*plummer_sphere(10)[:4], backend="cpu")
    assert world.backend == "cpu"


@pytest.mark.skipif(not _gpu_usable(), reason="no usable CUDA GPU here (cupy missing or no device)")
def test_gpu_and_cpu_forces_agree_and_gpu_runs_are_deterministic() -> None:
    ids, m, x, v = plummer_sphere(3000, seed=3)
    gpu = World.from_arrays(ids, m, x, v, softening=0.01, solver="direct", backend="cuda")
    cpu = World.from_arrays(ids, m, x, v, softening=0.01, solver="direct", backend="cpu")
    assert gpu.backend == "cuda"
    assert gpu.total_energy() == pytest.approx(cpu.total_energy(), rel=1e-10)
    gpu.step(1 / 128, steps=20)
    cpu.step(1 / 128, steps=20)
    np.testing.assert_allclose(gpu.positions, cpu.positions, rtol=1e-9, atol=1e-12)
    again = World.from_arrays(ids, m, x, v, softening=0.01, solver="direct", backend="cuda")
    again.step(1 / 128, steps=20)
    assert again.state_hash() == gpu.state_hash()


class _BrokenGpu:
    """Stands in for a GPU whose driver fails mid-run."""

    name = "cuda"

    def accelerations(self, *args: object) -> np.ndarray:
        raise backends.BackendUnavailable("CUDA device error: simulated driver reset")

    potentials = accelerations

    def auto_solver(self, n: int) -> str:
        return "direct"


def test_device_error_mid_run_falls_back_to_cpu_and_gives_cpu_results(
    fresh_probe: None, caplog: pytest.LogCaptureFixture
) -> None:
    ids, m, x, v = plummer_sphere(50, seed=1)
    reference = World.from_arrays(ids, m, x, v, softening=0.01, backend="cpu")
    world = World.from_arrays(ids, m, x, v, softening=0.01, backend="cpu")
    world._backend = _BrokenGpu()  # as if the GPU had been picked at creation
    with caplog.at_level(logging.WARNING, logger="streams.physics.backends"):
        world.step(0.01, steps=3)
    reference.step(0.01, steps=3)
    assert world.backend == "cpu"
    assert world.state_hash() == reference.state_hash()
    assert sum("GPU backend failed" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(backends.BackendUnavailable):
        backends.gpu_backend()  # later worlds go straight to the CPU
