"""pynn._kernels.dense: fully-connected layer, one GEMM plus a fused bias/activation epilogue.

Weights are (out_features, in_features) and applied as X @ W.T. Arguments arrive validated from
pynn.backend.base. ``n_threads`` drives only the OpenMP epilogue/prologue loops; BLAS is threaded
on its own (threadpoolctl sets both) and is never called inside a prange.
"""
from cython.parallel cimport prange

from libc.limits cimport INT_MAX
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from _types cimport floating, idx_t
from _act cimport IDENTITY, act_backward_span, act_forward_threads
from _blas cimport gemm_rm
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)


# The elementwise passes here (bias rows, activation epilogue, dZ + colsum) cost 1/K of the GEMM
# next to them, and an OpenMP region right before or after a GEMM hurts: libgomp's threads keep
# spinning after the region and starve OpenBLAS's own threads (measured on 2 cores, 128x784->256:
# 0.6 ms -> 39 ms for the forward). So they go parallel only when they are big on their own.
cdef enum:
    DENSE_PARALLEL_MIN_ELEMENTS = 1 << 20


cdef inline int _threads_for(idx_t size, int n_threads) noexcept nogil:
    # n_threads is the model-wide setting (it also sizes BLAS): apply the serial threshold here.
    return n_threads if size >= DENSE_PARALLEL_MIN_ELEMENTS and n_threads > 1 else 1


cdef int _check_blas_dims(idx_t a, idx_t b, idx_t c) except -1:
    # BLAS takes C ints: refuse sizes that would silently wrap around.
    if a > INT_MAX or b > INT_MAX or c > INT_MAX:
        raise ValueError(f"dense dimensions {(a, b, c)} exceed the BLAS int range")
    return 0


def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, object b,
                  floating[:, ::1] Y, int kind, double param, int n_threads):
    """Y := act(X @ W.T + b)  (b may be None)"""
    # b is an untyped object: Cython's fused dispatch cannot match None to a fused memoryview.
    cdef idx_t n = X.shape[0], k = X.shape[1], m = W.shape[0]
    cdef const floating[::1] bv
    cdef bint has_b = b is not None
    cdef floating beta = 0
    cdef floating p = <floating>param
    cdef floating* y = &Y[0, 0]
    cdef idx_t i, size = n * m
    cdef int nt = _threads_for(n * m, n_threads)
    _check_blas_dims(n, m, k)
    if has_b:
        bv = b
        beta = 1  # the GEMM adds onto the bias rows written below: no separate bias pass
    with nogil:
        if has_b and m > 0:
            for i in range(n):
                memcpy(y + i * m, &bv[0], m * sizeof(floating))
        # Y = X @ W.T + beta * Y   (row-major: W enters transposed, nothing is copied)
        gemm_rm(False, True, <int>n, <int>m, <int>k, 1, &X[0, 0], <int>k, &W[0, 0], <int>k,
                beta, y, <int>m)
        if kind != IDENTITY and size > 0:
            # The activation epilogue: one in-place pass over Y while it is still warm.
            act_forward_threads(kind, p, y, y, size, nt)


cdef inline void _dz_rows(int kind, floating p, const floating* dy, const floating* y,
                          floating* dz, double* acc, idx_t lo, idx_t hi,
                          idx_t m) noexcept nogil:
    """Rows lo..hi: dz := dy * act'(y) (unless dz is NULL: identity, dz is dy itself) and
    acc[j] += sum_i dz[i, j] in double (unless acc is NULL)."""
    cdef idx_t i, j
    cdef const floating* z
    for i in range(lo, hi):
        if dz != NULL:
            act_backward_span(kind, p, dy + i * m, NULL, y + i * m, dz + i * m, m)
            z = dz + i * m
        else:
            z = dy + i * m
        if acc != NULL:
            # the row is still in L1 from the line above: summing here keeps it one pass
            for j in range(m):
                acc[j] += z[j]


def dense_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                   const floating[:, ::1] W, object Y, object dW, object db,
                   object dX, int kind, double param, int n_threads):
    """dZ = dY * act'(Y); db += colsum(dZ); dW += dZ.T @ X; dX := dZ @ W

    Y is None for the identity (then dZ is dY, no copy); dW, db and dX may each be None (a
    frozen parameter, no bias, the first layer): that product is skipped, not computed and
    dropped.
    """
    cdef idx_t n = dY.shape[0], m = dY.shape[1], k = X.shape[1]
    cdef const floating[:, ::1] Yv
    cdef floating[:, ::1] dWv
    cdef floating[::1] dbv
    cdef floating[:, ::1] dXv
    cdef bint need_dz = kind != IDENTITY
    cdef bint has_dw = dW is not None
    cdef bint has_db = db is not None
    cdef bint has_dx = dX is not None
    cdef floating p = <floating>param
    cdef const floating* dy = &dY[0, 0]
    cdef const floating* y = NULL
    cdef const floating* z
    cdef floating* dz = NULL
    cdef double* acc = NULL
    cdef double s
    cdef idx_t i, j, lo, hi, rows
    cdef int t, nt = _threads_for(n * m, n_threads)
    _check_blas_dims(n, m, k)
    if nt > n:
        nt = <int>n if n > 0 else 1
    if need_dz:
        Yv = Y
        y = &Yv[0, 0]
    if has_dw:
        dWv = dW
    if has_db:
        dbv = db
    if has_dx:
        dXv = dX
    if not (has_dw or has_db or has_dx):
        return  # everything frozen and no dX wanted: not even dZ is needed
    try:
        if need_dz and n * m > 0:
            dz = <floating*>malloc(n * m * sizeof(floating))
            if dz == NULL:
                raise MemoryError()
        if has_db and m > 0:
            # one row of double partial sums per thread, reduced in a fixed order below
            acc = <double*>calloc(nt * m, sizeof(double))
            if acc == NULL:
                raise MemoryError()
        with nogil:
            if dz != NULL or acc != NULL:
                if nt == 1:
                    _dz_rows(kind, p, dy, y, dz, acc, 0, n, m)
                else:
                    rows = (n + nt - 1) // nt
                    for t in prange(nt, schedule="static", num_threads=nt):
                        lo = t * rows
                        hi = min(lo + rows, n)
                        if lo < hi:
                            _dz_rows(kind, p, dy, y, dz,
                                     acc + t * m if acc != NULL else NULL, lo, hi, m)
                if acc != NULL:
                    for j in range(m):
                        s = 0
                        for t in range(nt):
                            s = s + acc[t * m + j]
                        dbv[j] += <floating>s
            z = <const floating*>dz if dz != NULL else dy
            if has_dw:
                # dW += dZ.T @ X   (beta = 1: gradients accumulate until zero_grad)
                gemm_rm(True, False, <int>m, <int>k, <int>n, 1, z, <int>m, &X[0, 0], <int>k,
                        1, &dWv[0, 0], <int>k)
            if has_dx:
                # dX = dZ @ W
                gemm_rm(False, False, <int>n, <int>k, <int>m, 1, z, <int>m, &W[0, 0], <int>k,
                        0, &dXv[0, 0], <int>k)
    finally:
        free(dz)
        free(acc)
