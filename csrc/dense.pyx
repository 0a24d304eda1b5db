"""pynn._kernels.dense: fully-connected layer, GEMMs plus fused bias/activation epilogues.

Weights are (out_features, in_features) and applied as X @ W.T. Arguments arrive validated from
pynn.backend.base.

One thread pool. With ``n_threads`` > 1 and a product big enough to share, the work is split
into one tile per thread of pynn's OpenMP team (rows of Y and dX, rows of dW), and each thread
calls BLAS single-threaded on its tile, then runs the epilogue on the rows it just wrote while
they are in its cache. BLAS's own threads are never woken, so no second pool competes for the
cores (with two pools, whichever spins after its work starves the other; how long libgomp
spins is set when it loads, possibly by another library). Small products run whole on the
calling thread. When the BLAS offers no per-thread thread count (see _blas_threads.h), one BLAS
call with BLAS's own threads does the product, as before.
"""
from cython.parallel cimport parallel, prange

from libc.limits cimport INT_MAX
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy
from scipy.linalg.cython_blas cimport sgemm

from _types cimport floating, idx_t
from _act cimport IDENTITY, act_backward_span, act_forward_span, act_forward_threads
from _blas cimport gemm_rm
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)


cdef extern from "_blas_threads.h":
    ctypedef void (*pynn_set_threads_fn)(int) noexcept nogil
    pynn_set_threads_fn pynn_find_blas_threads(void* symbol) noexcept nogil


cdef enum:
    # Multiply-adds below which a product runs on one thread: splitting a 32x64x32 product
    # costs a parallel-region wake-up (several us) for ~1 us of work.
    DENSE_PARALLEL_MIN_MACS = 1 << 18
    # Rows (or weight rows) per tile at least: thinner tiles run BLAS below its efficient size.
    MIN_TILE = 16


cdef pynn_set_threads_fn _blas_threads = pynn_find_blas_threads(<void*>sgemm)


def blas_thread_control():
    """True when every BLAS call runs single-threaded inside pynn's team (one thread pool)."""
    return _blas_threads != NULL


cdef inline void _blas_single() noexcept nogil:
    """The BLAS we call runs single-threaded (process-wide; see _blas_threads.h)."""
    if _blas_threads != NULL:
        _blas_threads(1)


cdef inline int _team(idx_t macs, idx_t rows, int n_threads) noexcept nogil:
    """Threads for a product of ``macs`` multiply-adds split over ``rows`` rows."""
    cdef idx_t nt = n_threads
    if _blas_threads == NULL or n_threads < 2 or macs < DENSE_PARALLEL_MIN_MACS:
        return 1
    if nt * MIN_TILE > rows:
        nt = rows // MIN_TILE
    return <int>nt if nt > 1 else 1


cdef inline idx_t _tile(idx_t t, idx_t nt, idx_t rows) noexcept nogil:
    """First row of tile t of nt over ``rows`` rows (tile t ends where t + 1 starts)."""
    return (rows * t) // nt


cdef int _check_blas_dims(idx_t a, idx_t b, idx_t c) except -1:
    # BLAS takes C ints: refuse sizes that would silently wrap around.
    if a > INT_MAX or b > INT_MAX or c > INT_MAX:
        raise ValueError(f"dense dimensions {(a, b, c)} exceed the BLAS int range")
    return 0


cdef inline void _forward_rows(const floating* X, const floating* W, const floating* b,
                               floating* Y, idx_t lo, idx_t hi, idx_t k, idx_t m, int kind,
                               floating p) noexcept nogil:
    """Rows lo..hi of Y := act(X @ W.T + b), BLAS single-threaded in this thread."""
    cdef idx_t i
    cdef floating beta = 0
    if hi <= lo:
        return
    if b != NULL and m > 0:
        beta = 1  # the GEMM adds onto the bias rows: no separate bias pass
        for i in range(lo, hi):
            memcpy(Y + i * m, b, m * sizeof(floating))
    _blas_single()
    # Y[lo:hi] = X[lo:hi] @ W.T + beta * Y[lo:hi]   (row-major: W enters transposed)
    gemm_rm(False, True, <int>(hi - lo), <int>m, <int>k, 1, X + lo * k, <int>k, W, <int>k,
            beta, Y + lo * m, <int>m)
    if kind != IDENTITY:
        act_forward_span(kind, p, Y + lo * m, Y + lo * m, (hi - lo) * m)


def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, object b,
                  floating[:, ::1] Y, int kind, double param, int n_threads):
    """Y := act(X @ W.T + b)  (b may be None)"""
    # b is an untyped object: Cython's fused dispatch cannot match None to a fused memoryview.
    cdef idx_t n = X.shape[0], k = X.shape[1], m = W.shape[0]
    cdef const floating[::1] bv
    cdef const floating* bp = NULL
    cdef floating p = <floating>param
    cdef floating* y = &Y[0, 0]
    cdef idx_t t
    cdef int nt = _team(n * m * k, n, n_threads)
    _check_blas_dims(n, m, k)
    if b is not None:
        bv = b
        if m > 0:
            bp = &bv[0]
    with nogil:
        if _blas_threads == NULL:
            # No per-thread BLAS control: one call, BLAS's threads; OpenMP only for the epilogue.
            _forward_rows(&X[0, 0], &W[0, 0], bp, y, 0, n, k, m, IDENTITY, p)
            if kind != IDENTITY and n * m > 0:
                act_forward_threads(kind, p, y, y, n * m,
                                    n_threads if n * m >= 1 << 20 else 1)
        elif nt == 1:
            _forward_rows(&X[0, 0], &W[0, 0], bp, y, 0, n, k, m, kind, p)
        else:
            for t in prange(nt, schedule="static", num_threads=nt):
                _forward_rows(&X[0, 0], &W[0, 0], bp, y, _tile(t, nt, n), _tile(t + 1, nt, n),
                              k, m, kind, p)


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


cdef inline void _backward_tile(int t, int nt, const floating* z, const floating* X,
                                const floating* W, floating* dW, floating* db,
                                const double* acc, int n_acc, floating* dX, idx_t n, idx_t m,
                                idx_t k) noexcept nogil:
    """Tile t of nt: db and dW for weight rows [m*t/nt, m*(t+1)/nt), dX for batch rows
    [n*t/nt, n*(t+1)/nt); BLAS single-threaded in this thread. ``acc`` holds n_acc rows of
    column partial sums of dZ, added in row order."""
    cdef idx_t lo = _tile(t, nt, m), hi = _tile(t + 1, nt, m)
    cdef idx_t j
    cdef int u
    cdef double s
    if db != NULL:
        for j in range(lo, hi):
            s = 0
            for u in range(n_acc):
                s = s + acc[u * m + j]
            db[j] += <floating>s
    _blas_single()
    if dW != NULL and hi > lo:
        # dW[lo:hi] += dZ[:, lo:hi].T @ X   (beta = 1: gradients accumulate until zero_grad)
        gemm_rm(True, False, <int>(hi - lo), <int>k, <int>n, 1, z + lo, <int>m, X, <int>k,
                1, dW + lo * k, <int>k)
    if dX != NULL:
        lo = _tile(t, nt, n)
        hi = _tile(t + 1, nt, n)
        if hi > lo:
            # dX[lo:hi] = dZ[lo:hi] @ W
            gemm_rm(False, False, <int>(hi - lo), <int>k, <int>m, 1, z + lo * m, <int>m, W,
                    <int>k, 0, dX + lo * k, <int>k)


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
    cdef floating p = <floating>param
    cdef const floating* dy = &dY[0, 0]
    cdef const floating* y = NULL
    cdef const floating* z
    cdef floating* dz = NULL
    cdef floating* dwp = NULL
    cdef floating* dbp = NULL
    cdef floating* dxp = NULL
    cdef double* acc = NULL
    cdef idx_t macs
    cdef int t, nt, n_acc
    _check_blas_dims(n, m, k)
    if need_dz:
        Yv = Y
        y = &Yv[0, 0]
    if dW is not None:
        dWv = dW
        dwp = &dWv[0, 0]
    if db is not None:
        dbv = db
        dbp = &dbv[0] if m > 0 else NULL
    if dX is not None:
        dXv = dX
        dxp = &dXv[0, 0]
    if dwp == NULL and db is None and dxp == NULL:
        return  # everything frozen and no dX wanted: not even dZ is needed
    macs = (n * m * k) * ((dwp != NULL) + (dxp != NULL))
    if _blas_threads != NULL:
        nt = _team(macs, min(n, m) if dwp != NULL else n, n_threads)
        n_acc = nt
    else:
        nt = 1  # BLAS threads the products itself; OpenMP only for the big elementwise pass
        n_acc = n_threads if n * m >= 1 << 20 and n_threads > 1 else 1
        if n_acc > n:
            n_acc = <int>n if n > 0 else 1
    try:
        if need_dz and n * m > 0:
            dz = <floating*>malloc(n * m * sizeof(floating))
            if dz == NULL:
                raise MemoryError()
        if dbp != NULL:
            # one row of double partial sums per row tile, added in tile order
            acc = <double*>calloc(n_acc * m, sizeof(double))
            if acc == NULL:
                raise MemoryError()
        z = <const floating*>dz if dz != NULL else dy
        with nogil:
            if nt == 1:
                if dz != NULL or acc != NULL:
                    if n_acc == 1:
                        _dz_rows(kind, p, dy, y, dz, acc, 0, n, m)
                    else:
                        for t in prange(n_acc, schedule="static", num_threads=n_acc):
                            _dz_rows(kind, p, dy, y, dz, acc + t * m if acc != NULL else NULL,
                                     _tile(t, n_acc, n), _tile(t + 1, n_acc, n), m)
                _backward_tile(0, 1, z, &X[0, 0], &W[0, 0], dwp, dbp, acc, n_acc, dxp, n, m, k)
            else:
                # One parallel region: dZ and its column sums by batch rows, then (after the
                # loop's barrier: dW and dX read all of dZ) each thread's dW and dX tiles.
                with parallel(num_threads=nt):
                    for t in prange(nt, schedule="static"):
                        if dz != NULL or acc != NULL:
                            _dz_rows(kind, p, dy, y, dz, acc + t * m if acc != NULL else NULL,
                                     _tile(t, nt, n), _tile(t + 1, nt, n), m)
                    for t in prange(nt, schedule="static"):
                        _backward_tile(t, nt, z, &X[0, 0], &W[0, 0], dwp, dbp, acc, n_acc, dxp,
                                       n, m, k)
    finally:
        free(dz)
        free(acc)
