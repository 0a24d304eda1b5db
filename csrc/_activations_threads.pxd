# Activations over pynn's OpenMP team: one contiguous chunk per thread, each running the same
# tight (vectorizable) span loop of _activations.pxd.
from cython.parallel cimport prange

from _types cimport floating, idx_t
from _activations cimport act_backward_span, act_forward_span, pynn_softmax_rows_f, softmax_row


cdef enum:
    # per-thread chunks start on a 64-byte boundary (16 floats), so threads never share a line
    CHUNK_ALIGN = 16


cdef inline idx_t chunk_size(idx_t n, int n_threads) noexcept nogil:
    """Elements per thread: n split evenly, rounded up to a cache line of floats."""
    cdef idx_t c = (n + n_threads - 1) // n_threads
    return (c + CHUNK_ALIGN - 1) // CHUNK_ALIGN * CHUNK_ALIGN


cdef inline void act_forward_threads(int kind, floating p, floating q, const floating* x,
                                     floating* y, idx_t n, int n_threads) noexcept nogil:
    """y[i] := act(x[i]) (y may be x) on n_threads threads, one contiguous chunk per thread:
    each runs the same tight (vectorizable) span loop."""
    cdef idx_t c, lo, hi
    cdef int t
    if n_threads <= 1:
        act_forward_span(kind, p, q, x, y, n)
        return
    c = chunk_size(n, n_threads)
    for t in prange(n_threads, schedule="static", num_threads=n_threads):
        lo = t * c
        hi = min(lo + c, n)
        if lo < hi:
            act_forward_span(kind, p, q, x + lo, y + lo, hi - lo)


cdef inline void act_backward_threads(int kind, floating p, floating q, const floating* dy,
                                      const floating* x, const floating* y, floating* dx, idx_t n,
                                      int n_threads) noexcept nogil:
    """dx[i] := dy[i] * act'(x[i]) (from y[i] where the math allows) on n_threads threads, one
    contiguous chunk per thread."""
    cdef idx_t c, lo, hi
    cdef int t
    if n_threads <= 1:
        act_backward_span(kind, p, q, dy, x, y, dx, n)
        return
    c = chunk_size(n, n_threads)
    for t in prange(n_threads, schedule="static", num_threads=n_threads):
        lo = t * c
        hi = min(lo + c, n)
        if lo < hi:
            act_backward_span(kind, p, q, dy + lo, x + lo, y + lo, dx + lo, hi - lo)


cdef inline void softmax_forward_threads(const floating* x, floating* y, idx_t n, idx_t k,
                                         int n_threads) noexcept nogil:
    """Each of the n rows of k >= 1: y := softmax(x), one contiguous block of rows per
    thread."""
    cdef idx_t c, lo, hi, i
    cdef int t
    if floating is float:
        # vectorized exp (see pynn_softmax_rows_f)
        if n_threads <= 1:
            pynn_softmax_rows_f(x, y, n, k)
            return
        c = (n + n_threads - 1) // n_threads
        for t in prange(n_threads, schedule="static", num_threads=n_threads):
            lo = t * c
            hi = min(lo + c, n)
            if lo < hi:
                pynn_softmax_rows_f(x + lo * k, y + lo * k, hi - lo, k)
    elif n_threads <= 1:
        for i in range(n):
            softmax_row(x + i * k, y + i * k, k)
    else:
        for i in prange(n, schedule="static", num_threads=n_threads):
            softmax_row(x + i * k, y + i * k, k)
