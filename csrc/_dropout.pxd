# Dropout's counter-based loops, shared by pynn._kernels.dropout and the compiled step: one
# copy. Element i's draw is a pure function of (key, i): splitmix64's finalizer applied to
# key + (i + 1) * GOLDEN64 (uint64, wrapping), so any split of the range across threads gives
# the same mask, bit for bit the NumPy reference's.
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from _types cimport floating, idx_t

# GOLDEN64 = 0x9E3779B97F4A7C15 appears as a literal: a .pxd holds no module constants

cdef inline uint64_t dropout_mix64(uint64_t z) noexcept nogil:
    # splitmix64's finalizer (Steele, Lea, Flood 2014); mirrors codes.mix64 / numpy_ref.mix64_array
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL
    return z ^ (z >> 31)


cdef inline void dropout_forward_core(const floating* X, floating* Y, unsigned char* mask,
                                      idx_t n, uint64_t threshold, double scale, uint64_t key,
                                      int n_threads) noexcept nogil:
    """mask[i] := (mix64(key + (i+1) GOLDEN64) >> 32) >= threshold; Y[i] := X[i] mask[i] scale."""
    cdef idx_t i
    cdef unsigned char keep
    # The reference multiplies in the data dtype by dtype(scale): round scale the same way.
    cdef floating s = <floating>scale
    for i in prange(n, schedule="static", num_threads=n_threads):
        keep = (dropout_mix64(key + (<uint64_t>i + 1) * 0x9E3779B97F4A7C15ULL) >> 32) >= threshold
        mask[i] = keep
        # A multiply, not a select: NaN * 0 stays NaN exactly as in the reference.
        Y[i] = X[i] * <floating>keep * s


cdef inline void dropout_backward_core(const floating* dY, const unsigned char* mask,
                                       floating* dX, idx_t n, double scale,
                                       int n_threads) noexcept nogil:
    """dX[i] := dY[i] mask[i] scale."""
    cdef idx_t i
    cdef floating s = <floating>scale
    for i in prange(n, schedule="static", num_threads=n_threads):
        dX[i] = dY[i] * <floating>mask[i] * s
