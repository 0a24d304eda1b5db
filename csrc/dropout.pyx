"""pynn._kernels.dropout: counter-based dropout masks.

Element i's draw is a pure function of (key, i): splitmix64's finalizer applied to
key + (i + 1) * GOLDEN64 (uint64, wrapping). No generator state is carried from one element to
the next, so any split of the index range across threads gives the same mask, bit for bit the
one the NumPy reference computes with the same uint64 arithmetic.
"""
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from _types cimport floating, idx_t
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)

cdef uint64_t GOLDEN64 = 0x9E3779B97F4A7C15ULL


cdef inline uint64_t _mix64(uint64_t z) noexcept nogil:
    # splitmix64's finalizer (Steele, Lea, Flood 2014); mirrors codes.mix64 / numpy_ref.mix64_array
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


def dropout_forward(const floating[::1] X, uint64_t threshold, double scale, uint64_t key,
                    floating[::1] Y, unsigned char[::1] mask, int n_threads):
    """mask[i] := (mix64(key + (i+1) GOLDEN64) >> 32) >= threshold; Y[i] := X[i] mask[i] scale."""
    cdef idx_t n = X.shape[0]
    cdef idx_t i
    cdef unsigned char keep
    # The reference multiplies in the data dtype by dtype(scale): round scale the same way.
    cdef floating s = <floating>scale
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            keep = (_mix64(key + (<uint64_t>i + 1) * GOLDEN64) >> 32) >= threshold
            mask[i] = keep
            # A multiply, not a select: NaN * 0 stays NaN exactly as in the reference.
            Y[i] = X[i] * <floating>keep * s


def dropout_backward(const floating[::1] dY, const unsigned char[::1] mask, double scale,
                     floating[::1] dX, int n_threads):
    """dX[i] := dY[i] mask[i] scale."""
    cdef idx_t n = dY.shape[0]
    cdef idx_t i
    cdef floating s = <floating>scale
    with nogil:
        for i in prange(n, schedule="static", num_threads=n_threads):
            dX[i] = dY[i] * <floating>mask[i] * s
