"""GPU N-body benchmark: the cupy direct-sum kernel up to 1,048,576 bodies.

Prints, for N = 4,096 ... 1,048,576 (powers of 4), the kernel time per force
evaluation in float64 (what worlds use) and float32, the interactions per
second, and that rate as a fraction of the GPU's FP32 peak, counting 20
floating-point operations per interaction (the usual convention for a softened
pair force: 3 sub, 6 mul/add for r^2, rsqrt counted as 4, 7 for the update).
It first checks that the GPU's float64 forces agree with the CPU's.

Without a usable GPU (cupy missing, no device) it says so and exits 0.

    .venv/bin/python bench/nbody_gpu.py [--max-n 1048576]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from report import not_run

from streams.physics import BackendUnavailable, plummer_sphere
from streams.physics import direct as cpu_direct

FLOPS_PER_INTERACTION = 20
# FP32 lanes per SM by compute capability (major, minor); Volta/Turing/GA100 have 64.
FP32_LANES_PER_SM = {(7, 0): 64, (7, 5): 64, (8, 0): 64}
DEFAULT_FP32_LANES = 128  # GA10x, Ada, Hopper, Blackwell
CUDA_ATTR_CLOCK_RATE = 13  # cudaDevAttrClockRate, in kHz


def fp32_peak_flops(cp: Any) -> tuple[str, float]:
    device = cp.cuda.Device().id
    props = cp.cuda.runtime.getDeviceProperties(device)
    name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
    lanes = FP32_LANES_PER_SM.get((props["major"], props["minor"]), DEFAULT_FP32_LANES)
    clock_khz = props.get("clockRate") or cp.cuda.runtime.deviceGetAttribute(
        CUDA_ATTR_CLOCK_RATE, device
    )  # CUDA 13 dropped clockRate from the properties; the attribute remains
    clock_hz = float(clock_khz) * 1e3
    return name, 2.0 * lanes * props["multiProcessorCount"] * clock_hz  # an FMA is 2 flops


def time_kernel(backend: Any, cp: Any, pos: np.ndarray, m: np.ndarray, dtype: Any) -> float:
    x, y, z = (cp.asarray(np.ascontiguousarray(pos[:, c], dtype=dtype)) for c in range(3))
    mass = cp.asarray(np.ascontiguousarray(m, dtype=dtype))
    backend.launch(x, y, z, mass, 1e-4, False)  # warm-up (and first-launch costs)
    repeats = 3 if pos.shape[0] <= 262_144 else 1
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    start.record()
    for _ in range(repeats):
        backend.launch(x, y, z, mass, 1e-4, False)
    stop.record()
    stop.synchronize()
    return float(cp.cuda.get_elapsed_time(start, stop)) / 1e3 / repeats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-n", type=int, default=1_048_576)
    args = parser.parse_args(argv)
    from streams.physics import gpu

    try:
        backend = gpu.CudaBackend.create()
    except BackendUnavailable as exc:
        not_run("nbody_gpu", f"no GPU ({exc})",
                line=f"No usable GPU here ({exc}); nothing to benchmark.")
        return 0
    import cupy as cp

    name, peak = fp32_peak_flops(cp)
    print(f"GPU: {name}; FP32 peak {peak / 1e12:.1f} TFLOP/s "
          f"= {peak / FLOPS_PER_INTERACTION:.3e} interactions/s at {FLOPS_PER_INTERACTION} flops each")

    _, m, x, _ = plummer_sphere(2048, seed=1)
    ref = cpu_direct.accelerations(x, m, 1.0, 0.01)
    got = backend.accelerations(x, m, 1.0, 0.01, "direct", 0.5)
    rel = float(np.max(np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)))
    print(f"float64 GPU vs CPU forces, 2,048 bodies: max relative difference {rel:.1e}")

    print(f"{'N':>9} | {'f64 ms':>9} {'f64 inter/s':>12} {'of FP32 peak':>12} | "
          f"{'f32 ms':>9} {'f32 inter/s':>12} {'of FP32 peak':>12}")
    n = 4096
    while n <= args.max_n:
        _, m, x, _ = plummer_sphere(n, seed=2)
        row = [f"{n:>9}"]
        for dtype in (np.float64, np.float32):
            seconds = time_kernel(backend, cp, x, m, dtype)
            rate = float(n) * float(n) / seconds
            row.append(f"{seconds * 1e3:>9.2f} {rate:>12.3e} "
                       f"{rate * FLOPS_PER_INTERACTION / peak:>12.1%}")
        print(" | ".join(row), flush=True)
        n *= 4
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
