"""Direct-sum gravity on an NVIDIA GPU through cupy (optional extra ``gpu``).

One CUDA thread per target body; source bodies are staged through shared
memory a block at a time and consumed in index order, so each body's sum has
a fixed order and the result is the same on every run on the same device. The
GPU rounds differently from the CPU (fused multiply-adds, ``rsqrt``), so a
world's hashes are reproducible per backend, and CPU and GPU forces agree to
floating-point tolerance (about 1e-12 relative in float64).

The tree solver runs on the CPU even in a GPU world: a GPU octree is future
work, and the direct sum on one modern GPU outruns the CPU tree up to about a
million bodies anyway, which is why ``solver="auto"`` picks direct here.

Every cupy failure (import, no device, driver, compiler, out of memory) is
translated to :class:`~.errors.BackendUnavailable`, which the caller turns into
a fallback to the CPU.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from .cpu import CPU
from .errors import BackendUnavailable
from .types import F64Array

BLOCK = 256  # threads per block = bodies per shared-memory tile

KERNEL_SOURCE = r"""
typedef REAL real;

extern "C" __global__
void nbody_direct(const real* __restrict__ x, const real* __restrict__ y,
                  const real* __restrict__ z, const real* __restrict__ m,
                  const int n, const real eps2,
                  real* __restrict__ ax, real* __restrict__ ay, real* __restrict__ az,
                  real* __restrict__ phi, const int want_phi)
{
    extern __shared__ __align__(16) unsigned char smem[];  /* 16: fits double */
    real* sx = (real*)smem;
    real* sy = sx + blockDim.x;
    real* sz = sy + blockDim.x;
    real* sm = sz + blockDim.x;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const real xi = (i < n) ? x[i] : (real)0;
    const real yi = (i < n) ? y[i] : (real)0;
    const real zi = (i < n) ? z[i] : (real)0;
    real axi = 0, ayi = 0, azi = 0, pi = 0;
    for (int base = 0; base < n; base += blockDim.x) {
        const int j = base + threadIdx.x;
        sx[threadIdx.x] = (j < n) ? x[j] : (real)0;
        sy[threadIdx.x] = (j < n) ? y[j] : (real)0;
        sz[threadIdx.x] = (j < n) ? z[j] : (real)0;
        sm[threadIdx.x] = (j < n) ? m[j] : (real)0;
        __syncthreads();
        const int lim = min((int)blockDim.x, n - base);
        for (int k = 0; k < lim; ++k) {
            const real dx = sx[k] - xi;
            const real dy = sy[k] - yi;
            const real dz = sz[k] - zi;
            const real r2 = dx * dx + dy * dy + dz * dz + eps2;
            if (r2 > (real)0) {          /* the self pair with eps = 0 */
                const real inv = RSQRT(r2);
                const real w = sm[k] * inv * inv * inv;
                axi += w * dx;
                ayi += w * dy;
                azi += w * dz;
                if (want_phi && base + k != i) pi += sm[k] * inv;
            }
        }
        __syncthreads();
    }
    if (i < n) {
        ax[i] = axi;
        ay[i] = ayi;
        az[i] = azi;
        if (want_phi) phi[i] = -pi;
    }
}
"""


def kernel_source(dtype: Any) -> str:
    """The CUDA source specialised for float64 or float32."""
    if np.dtype(dtype) == np.float64:
        return KERNEL_SOURCE.replace("REAL", "double").replace("RSQRT", "rsqrt")
    if np.dtype(dtype) == np.float32:
        return KERNEL_SOURCE.replace("REAL", "float").replace("RSQRT", "rsqrtf")
    raise TypeError(f"unsupported dtype {dtype!r}")


def _cupy_errors(cp: ModuleType) -> tuple[type[BaseException], ...]:
    # RuntimeError covers CUDARuntimeError, CUDADriverError and NVRTCError; the
    # allocator raises a MemoryError subclass; the compiler its own exception.
    errors: list[type[BaseException]] = [RuntimeError, MemoryError, OSError]
    compile_error = getattr(getattr(cp, "cuda", None), "compiler", None)
    exc = getattr(compile_error, "CompileException", None)
    if isinstance(exc, type) and issubclass(exc, BaseException):
        errors.append(exc)
    return tuple(errors)


class CudaBackend:
    """Forces on the GPU with cupy; build it with :meth:`create`."""

    name = "cuda"

    def __init__(self, cp: ModuleType) -> None:
        self._cp = cp
        self._errors = _cupy_errors(cp)
        self._kernels: dict[str, Any] = {}

    @classmethod
    def create(cls) -> CudaBackend:
        try:
            import cupy as cp
        except ImportError as exc:  # the extra is not installed, or its CUDA libs are absent
            raise BackendUnavailable(
                f"cupy is not importable ({exc}); pip install 'cosmic-garden[gpu]'"
            ) from None
        backend = cls(cp)
        try:
            if not cp.cuda.is_available():
                raise BackendUnavailable("no CUDA device is visible")
            backend.kernel(np.float64)  # compile now: a broken toolchain fails here, not mid-step
            cp.zeros(1, dtype=cp.float64).sum().item()
        except backend._errors as exc:
            raise BackendUnavailable(f"CUDA device error: {exc}") from None
        return backend

    def kernel(self, dtype: Any) -> Any:
        key = np.dtype(dtype).name
        if key not in self._kernels:
            k = self._cp.RawKernel(kernel_source(dtype), "nbody_direct")
            k.compile()
            self._kernels[key] = k
        return self._kernels[key]

    def launch(self, x: Any, y: Any, z: Any, m: Any, eps2: float, want_phi: bool) -> tuple[Any, ...]:
        """Run the kernel on device arrays of one dtype; returns (ax, ay, az, phi) on device."""
        cp = self._cp
        n = int(x.shape[0])
        dtype = x.dtype
        ax = cp.empty(n, dtype=dtype)
        ay = cp.empty(n, dtype=dtype)
        az = cp.empty(n, dtype=dtype)
        phi = cp.empty(n if want_phi else 1, dtype=dtype)
        grid = ((n + BLOCK - 1) // BLOCK,)
        self.kernel(dtype)(
            grid, (BLOCK,),
            (x, y, z, m, np.int32(n), dtype.type(eps2), ax, ay, az, phi, np.int32(want_phi)),
            shared_mem=4 * BLOCK * dtype.itemsize,
        )
        return ax, ay, az, phi

    def _direct(
        self, positions: F64Array, masses: F64Array, G: float, softening: float, want_phi: bool
    ) -> tuple[F64Array, F64Array]:
        n = positions.shape[0]
        if n == 0:
            return np.empty((0, 3)), np.empty(0)
        cp = self._cp
        try:
            x, y, z = (cp.asarray(np.ascontiguousarray(positions[:, c])) for c in range(3))
            m = cp.asarray(np.ascontiguousarray(masses))
            ax, ay, az, phi = self.launch(x, y, z, m, float(softening) ** 2, want_phi)
            acc = cp.stack((ax, ay, az), axis=1).get() * G
            pot = phi.get() * G if want_phi else np.empty(0)
        except self._errors as exc:
            raise BackendUnavailable(f"CUDA device error: {exc}") from None
        return acc, pot

    def accelerations(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array:
        if solver == "tree":
            return CPU.accelerations(positions, masses, G, softening, solver, theta)
        return self._direct(positions, masses, G, softening, want_phi=False)[0]

    def potentials(
        self, positions: F64Array, masses: F64Array, G: float, softening: float,
        solver: str, theta: float,
    ) -> F64Array:
        if solver == "tree":
            return CPU.potentials(positions, masses, G, softening, solver, theta)
        return self._direct(positions, masses, G, softening, want_phi=True)[1]

    def auto_solver(self, n: int) -> str:
        return "direct"
