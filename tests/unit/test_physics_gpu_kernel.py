"""The CUDA kernel's logic, checked on the CPU by emulating CUDA threads with g++.

There is no GPU on most machines that run the unit tests, yet the kernel's
tiling (partial last tile, idle threads past n, shared-memory reuse across
``__syncthreads``) is where GPU code usually breaks. Here each CUDA thread of a
block is a real ``std::thread`` and ``__syncthreads`` a ``std::barrier``, so the
same source runs with CUDA's semantics and is compared with the CPU engine.
The real device run is ``test_physics_backends.py``'s GPU test and
``bench/nbody_gpu.py``.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from streams.physics import direct, gpu

HARNESS = r"""
#include <barrier>
#include <cmath>
#include <thread>
#include <vector>
#include <algorithm>
using std::min;
struct dim3_ { unsigned x; };
thread_local dim3_ threadIdx, blockIdx;
dim3_ blockDim;
static std::barrier<>* g_bar;
static void __syncthreads() { g_bar->arrive_and_wait(); }
static double rsqrt(double v) { return 1.0 / std::sqrt(v); }
static float rsqrtf(float v) { return 1.0f / std::sqrt(v); }
alignas(16) unsigned char smem[1 << 16];
#define __global__
#define __restrict__
#define __shared__
#define __align__(n) __attribute__((aligned(n)))  // what CUDA defines it as
KERNEL
extern "C" void run(int n, int block, REAL eps2, const REAL* x, const REAL* y,
                    const REAL* z, const REAL* m, REAL* ax, REAL* ay, REAL* az,
                    REAL* phi, int want_phi) {
    blockDim.x = block;
    int grid = (n + block - 1) / block;
    for (int b = 0; b < grid; ++b) {
        std::barrier<> bar(block);
        g_bar = &bar;
        std::vector<std::thread> threads;
        for (int t = 0; t < block; ++t)
            threads.emplace_back([=] {
                threadIdx.x = t;
                blockIdx.x = b;
                nbody_direct(x, y, z, m, n, eps2, ax, ay, az, phi, want_phi);
            });
        for (auto& th : threads) th.join();
    }
}
"""


def _build(tmp_path: Path, dtype: type) -> ctypes.CDLL:
    real = "double" if dtype is np.float64 else "float"
    source = HARNESS.replace("KERNEL", gpu.kernel_source(dtype)).replace("REAL", real)
    src = tmp_path / f"kernel_{real}.cpp"
    lib = tmp_path / f"kernel_{real}.so"
    src.write_text(source)
    # -ffp-contract=off: keep the emulation's rounding close to the CPU engine's.
    subprocess.run(
        ["g++", "-std=c++20", "-O1", "-ffp-contract=off", "-fPIC", "-shared", "-pthread",
         str(src), "-o", str(lib)],
        check=True, capture_output=True,
    )
    return ctypes.CDLL(str(lib))


def _emulate(lib: ctypes.CDLL, dtype: type, pos: np.ndarray, m: np.ndarray, eps: float,
             block: int) -> tuple[np.ndarray, np.ndarray]:
    n = pos.shape[0]
    cols: list[np.ndarray] = [np.ascontiguousarray(pos[:, c], dtype=dtype) for c in range(3)]
    mass: np.ndarray = np.ascontiguousarray(m, dtype=dtype)
    out: list[np.ndarray] = [np.full(n, np.nan, dtype=dtype) for _ in range(4)]
    ctype = ctypes.c_double if dtype is np.float64 else ctypes.c_float
    ptr = [a.ctypes.data_as(ctypes.c_void_p) for a in (*cols, mass, *out)]
    lib.run(ctypes.c_int(n), ctypes.c_int(block), ctype(eps * eps), *ptr, ctypes.c_int(1))
    return np.stack(out[:3], axis=1).astype(np.float64), out[3].astype(np.float64)


@pytest.fixture(scope="module")
def libs(tmp_path_factory: pytest.TempPathFactory) -> dict[type, ctypes.CDLL]:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed: cannot emulate the CUDA kernel")
    tmp = tmp_path_factory.mktemp("cuda_emulation")
    try:
        return {dt: _build(tmp, dt) for dt in (np.float64, np.float32)}
    except subprocess.CalledProcessError as exc:
        if b"barrier" in exc.stderr and b"No such file" in exc.stderr:
            pytest.skip("this g++ has no C++20 <barrier>")
        raise


@pytest.mark.parametrize(("n", "block", "eps"), [(37, 8, 0.05), (64, 16, 0.0), (5, 8, 0.1)])
def test_emulated_cuda_kernel_matches_cpu_forces(
    libs: dict[type, ctypes.CDLL], n: int, block: int, eps: float
) -> None:
    rng = np.random.default_rng(n)
    pos = rng.standard_normal((n, 3))
    m = rng.uniform(0.5, 1.5, n)
    acc, phi = _emulate(libs[np.float64], np.float64, pos, m, eps, block)
    np.testing.assert_allclose(acc, direct.accelerations(pos, m, 1.0, eps), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(phi, direct.potentials(pos, m, 1.0, eps), rtol=1e-12)
    acc32, _ = _emulate(libs[np.float32], np.float32, pos, m, eps, block)
    np.testing.assert_allclose(acc32, acc, rtol=2e-4, atol=1e-5)
