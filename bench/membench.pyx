"""membench: the memory floor of an optimizer step, for bench/test_bench_optim.py.

An optimizer step over N parameters is memory-bound: it reads p, g and each state buffer and
writes p and each state buffer once. ``traffic_floor`` moves exactly those bytes with next to
no arithmetic (p += g, s += g), in the same kind of loop (static OpenMP schedule, float32), so
a step's time over this one's says how far the step is from what the memory allows.

Benchmark-only, so not part of pynn: bench/membench_build.py compiles it on first use, with the
kernels' compiler flags (-O3, OpenMP) and csrc/'s .pxd files.
"""
from cython.parallel cimport prange

from _types cimport idx_t
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


def traffic_floor(float[::1] p, const float[::1] g, float[::1] s1, float[::1] s2,
                  int n_threads):
    """p += g; s1 += g; s2 += g (an empty s1/s2 is skipped): the step's traffic, no math."""
    cdef idx_t n = p.shape[0], i
    cdef bint has1 = s1.shape[0] == n and n > 0
    cdef bint has2 = s2.shape[0] == n and n > 0
    if g.shape[0] != n:
        raise ValueError("g must have p's length")
    if (s1.shape[0] not in (0, n)) or (s2.shape[0] not in (0, n)):
        raise ValueError("state buffers must be empty or have p's length")
    with nogil:
        if has1 and has2:
            for i in prange(n, schedule="static", num_threads=n_threads):
                p[i] = p[i] + g[i]
                s1[i] = s1[i] + g[i]
                s2[i] = s2[i] + g[i]
        elif has1:
            for i in prange(n, schedule="static", num_threads=n_threads):
                p[i] = p[i] + g[i]
                s1[i] = s1[i] + g[i]
        else:
            for i in prange(n, schedule="static", num_threads=n_threads):
                p[i] = p[i] + g[i]
