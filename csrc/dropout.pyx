"""pynn._kernels.dropout: counter-based dropout masks.

Element i's draw is a pure function of (key, i): splitmix64's finalizer applied to
key + (i + 1) * GOLDEN64 (uint64, wrapping). No generator state is carried from one element to
the next, so any split of the index range across threads gives the same mask, bit for bit the
one the NumPy reference computes with the same uint64 arithmetic. The loops are
_dropout.pxd's, which the compiled training step runs too.
"""
from libc.stdint cimport uint64_t

from _types cimport floating, idx_t
from _dropout cimport dropout_backward_core, dropout_forward_core
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


def dropout_forward(const floating[::1] X, uint64_t threshold, double scale, uint64_t key,
                    floating[::1] Y, unsigned char[::1] mask, int n_threads):
    """mask[i] := (mix64(key + (i+1) GOLDEN64) >> 32) >= threshold; Y[i] := X[i] mask[i] scale."""
    cdef idx_t n = X.shape[0]
    if n == 0:
        return
    with nogil:
        dropout_forward_core(&X[0], &Y[0], &mask[0], n, threshold, scale, key, n_threads)


def dropout_backward(const floating[::1] dY, const unsigned char[::1] mask, double scale,
                     floating[::1] dX, int n_threads):
    """dX[i] := dY[i] mask[i] scale."""
    cdef idx_t n = dY.shape[0]
    if n == 0:
        return
    with nogil:
        dropout_backward_core(&dY[0], &mask[0], &dX[0], n, scale, n_threads)
