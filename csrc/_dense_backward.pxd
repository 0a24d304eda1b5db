# The fully-connected layer's backward loops (the forward and the strategies: _dense.pxd),
# shared by pynn._kernels.dense and pynn._kernels.train_step: one copy, bit-identical results.
from cython.parallel cimport parallel, prange
from libc.string cimport memset

from _types cimport floating, idx_t
from _activations cimport act_backward_span
from _blas cimport gemm_rm
from _dense cimport (DENSE_BLAS_THREADS, DENSE_DIRECT, DENSE_ONE_THREAD, DENSE_TILES,
                     dense_team, dense_tile, dense_tiles_over, dense_tiles_team,
                     pynn_blas_control, pynn_blas_set, pynn_direct_d, pynn_direct_f)


cdef inline void _dz_rows(int kind, floating p, floating q, const floating* dy,
                          const floating* y, const floating* zs, floating* dz, double* acc,
                          idx_t lo, idx_t hi, idx_t m, idx_t c0, idx_t c1) noexcept nogil:
    """Rows lo..hi, columns c0..c1: dz := dy * act'(y) (act'(zs) from the kept pre-activation
    unless zs is NULL; unless dz is NULL: identity, dz is dy itself) and acc[j] += sum_i
    dz[i, j] in double (unless acc is NULL)."""
    cdef idx_t i, j
    cdef const floating* z
    for i in range(lo, hi):
        if dz != NULL:
            act_backward_span(kind, p, q, dy + i * m + c0,
                              zs + i * m + c0 if zs != NULL else NULL,
                              y + i * m + c0 if y != NULL else NULL, dz + i * m + c0, c1 - c0)
            z = dz + i * m
        else:
            z = dy + i * m
        if acc != NULL:
            # the row is still in L1 from the line above: summing here keeps it one pass
            for j in range(c0, c1):
                acc[j] += z[j]


cdef inline void dense_dz_cols(int kind, floating p, floating q, const floating* dy,
                               const floating* y, const floating* zs, floating* dz, double* acc,
                               int n_acc, idx_t n, idx_t m, idx_t c0, idx_t c1) noexcept nogil:
    """Columns c0..c1 of dZ = dY act'(Y) (unless dz is NULL: identity) and of the n_acc rows of
    bias partial sums (unless acc is NULL), each over the rows of one row tile, exactly as the
    backward's row tiles compute them: so one thread can take a column tile from the first row
    to the last (pynn._kernels.train_step fuses a first layer's backward with the update that way),
    with the same result."""
    cdef int u
    cdef idx_t j
    for u in range(n_acc):
        if acc != NULL:
            for j in range(c0, c1):
                acc[u * m + j] = 0.0
        _dz_rows(kind, p, q, dy, y, zs, dz, acc + u * m if acc != NULL else NULL,
                 dense_tile(u, n_acc, n), dense_tile(u + 1, n_acc, n), m, c0, c1)


cdef inline void dense_backward_tile(int t, int nt, const floating* z, const floating* X,
                                     const floating* W, floating* dW, floating* db,
                                     const double* acc, int n_acc, floating* dX, idx_t n,
                                     idx_t m, idx_t k, bint accumulate,
                                     int blas_nt) noexcept nogil:
    """Thread t of nt's share of the products; BLAS on ``blas_nt`` threads from this thread
    (1 inside a team), or pynn's own kernel for 0 (dense_backward_blas_nt).

    With both dW and dX wanted and an even number of threads, the team splits in two: threads
    [0, nt/2) tile db and dW, the others tile dX. The two products are the same size (n m k
    multiply-adds each), and each thread then packs one product's operands instead of both
    products' (packing the shared operand again is what a thread's tile of a small product
    mostly costs). Otherwise (an odd team would load its halves unevenly) every thread takes a
    tile of each product."""
    cdef int half = nt // 2
    if dW != NULL and dX != NULL and nt >= 2 and nt % 2 == 0:
        if t < half:
            _backward_tiles(t, half, z, X, W, dW, db, acc, n_acc, NULL, n, m, k, accumulate,
                            blas_nt)
        else:
            _backward_tiles(t - half, nt - half, z, X, W, NULL, NULL, acc, n_acc, dX, n, m, k,
                            accumulate, blas_nt)
    else:
        _backward_tiles(t, nt, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate, blas_nt)


cdef inline void _backward_tiles(int t, int nt, const floating* z, const floating* X,
                                 const floating* W, floating* dW, floating* db,
                                 const double* acc, int n_acc, floating* dX, idx_t n, idx_t m,
                                 idx_t k, bint accumulate, int blas_nt) noexcept nogil:
    """Tile t of nt: db and dW for weight rows [m*t/nt, m*(t+1)/nt), dX for batch rows
    [n*t/nt, n*(t+1)/nt) (or its columns [k*t/nt, k*(t+1)/nt) when k > n); BLAS on
    ``blas_nt`` threads from this thread. ``acc`` holds n_acc rows of
    column partial sums of dZ, added in row order. ``accumulate``: dW and db add onto what they
    hold (torch's semantics until zero_grad), else they are overwritten (a step that zeroes the
    gradients first: the same values, without the memset)."""
    cdef idx_t lo = dense_tile(t, nt, m), hi = dense_tile(t + 1, nt, m)
    cdef idx_t j
    cdef int u
    cdef double s
    if db != NULL:
        for j in range(lo, hi):
            s = 0
            for u in range(n_acc):
                s = s + acc[u * m + j]
            db[j] = db[j] + <floating>s if accumulate else <floating>s
    if blas_nt > 0:
        pynn_blas_set(blas_nt)
    if dW != NULL and hi > lo:
        # dW[lo:hi] (+)= dZ[:, lo:hi].T @ X
        _product(True, hi - lo, k, n, z + lo, m, X, k, accumulate, dW + lo * k, blas_nt)
    if dX != NULL and k > n:
        # by columns of dX when W (m x k) is larger than dZ (n x m): see dense_forward_core
        lo = dense_tile(t, nt, k)
        hi = dense_tile(t + 1, nt, k)
        if hi > lo:
            # dX[:, lo:hi] = dZ @ W[:, lo:hi]
            _product(False, n, hi - lo, m, z, m, W + lo, k, False, dX + lo, blas_nt)
    elif dX != NULL:
        lo = dense_tile(t, nt, n)
        hi = dense_tile(t + 1, nt, n)
        if hi > lo:
            # dX[lo:hi] = dZ[lo:hi] @ W
            _product(False, hi - lo, k, m, z + lo * m, m, W, k, False, dX + lo * k, blas_nt)


cdef inline void _product(bint trans_a, idx_t rows, idx_t cols, idx_t inner, const floating* A,
                          idx_t lda, const floating* B, idx_t ldb, bint accumulate,
                          floating* C, int blas_nt) noexcept nogil:
    """C (rows x cols, row-major, ld ldb) (+)= op(A) @ B, op(A) = A.T (A inner x rows, ld lda)
    with ``trans_a``, else A (rows x inner); by BLAS (on the threads the caller set), or by
    pynn's own kernel (_direct.h) when ``blas_nt`` is 0."""
    cdef idx_t ar = 1 if trans_a else lda
    cdef idx_t ap = lda if trans_a else 1
    if blas_nt == 0:
        if floating is float:
            pynn_direct_f(A, ar, ap, B, ldb, C, ldb, rows, cols, inner, accumulate)
        else:
            pynn_direct_d(A, ar, ap, B, ldb, C, ldb, rows, cols, inner, accumulate)
        return
    gemm_rm(trans_a, False, <int>rows, <int>cols, <int>inner, 1, A, <int>lda, B, <int>ldb,
            1 if accumulate else 0, C, <int>ldb)


cdef inline idx_t _backward_rows(idx_t n, idx_t m, idx_t k, bint has_dw,
                                 bint has_dx) noexcept nogil:
    """The rows a tiled backward splits (what dense_backward_tile splits dW and dX by)."""
    cdef idx_t dx_rows = k if k > n else n
    return (min(dx_rows, m) if has_dx else m) if has_dw else dx_rows


cdef inline int dense_backward_estimate(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx,
                                        int n_threads) noexcept nogil:
    """The fixed rules' strategy for a backward (see _dense.pxd): tiles from
    DENSE_PARALLEL_MIN_MACS, BLAS's own threads without a thread setter."""
    cdef idx_t macs = (n * m * k) * (has_dw + has_dx)
    if not pynn_blas_control():
        return DENSE_BLAS_THREADS
    if dense_team(macs, _backward_rows(n, m, k, has_dw, has_dx), n_threads) >= 2:
        return DENSE_TILES
    return DENSE_ONE_THREAD


cdef inline void dense_backward_team(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx,
                                     int n_threads, int strategy, int* nt,
                                     int* n_acc) noexcept nogil:
    """The threads (``nt``) of a backward with ``strategy`` (checked: dense_strategy_valid)
    and its rows of bias partial sums (``n_acc``): the caller allocates n_acc * m doubles for
    them, and n * m elements of dZ unless the identity."""
    if strategy == DENSE_TILES:
        nt[0] = dense_tiles_team(_backward_rows(n, m, k, has_dw, has_dx), n_threads)
        n_acc[0] = nt[0]
    elif strategy == DENSE_DIRECT | DENSE_TILES:
        nt[0] = dense_tiles_over(_backward_rows(n, m, k, has_dw, has_dx), n_threads)  # no BLAS
        n_acc[0] = nt[0]
    elif strategy == DENSE_BLAS_THREADS:
        nt[0] = 1  # BLAS threads the products itself; OpenMP only for the big elementwise pass
        n_acc[0] = n_threads if n * m >= 1 << 20 and n_threads > 1 else 1
        if n_acc[0] > n:
            n_acc[0] = <int>n if n > 0 else 1
    else:
        nt[0] = 1
        n_acc[0] = 1


cdef inline int dense_backward_blas_nt(int strategy, int n_threads) noexcept nogil:
    """The ``blas_nt`` of a backward with ``strategy`` (dense_backward_core): BLAS's own
    n_threads for DENSE_BLAS_THREADS, 0 (no BLAS: pynn's kernel) for DENSE_DIRECT, else 1."""
    if strategy == DENSE_BLAS_THREADS:
        return n_threads
    return 0 if strategy & DENSE_DIRECT else 1


cdef inline void dense_backward_core(const floating* dy, const floating* X, const floating* W,
                                     const floating* y, const floating* zs, floating* dz,
                                     double* acc, floating* dW, floating* db, floating* dX,
                                     idx_t n, idx_t m, idx_t k, int kind, floating p,
                                     floating q, int nt, int n_acc, bint accumulate,
                                     int blas_nt) noexcept nogil:
    """dZ = dY * act'(Y) (act'(Z) from the kept pre-activation zs unless NULL); db (+)=
    colsum(dZ); dW (+)= dZ.T @ X; dX := dZ @ W.

    ``nt``/``n_acc`` from dense_backward_team; ``blas_nt`` from dense_backward_blas_nt: the
    BLAS threads of its products, 0 for pynn's own kernel (the caller holds the products lock,
    exclusively for DENSE_BLAS_THREADS). y, zs and dz are NULL for the identity (dZ is
    dY, no copy), else dz is n * m scratch; acc is n_acc * m doubles of scratch when db is given.
    dW, db and dX may each be NULL (a frozen parameter, no bias, the first layer): that product
    is skipped, not computed and dropped."""
    cdef const floating* z = dy
    cdef int t
    if dz != NULL:
        z = dz
    if dW == NULL and db == NULL and dX == NULL:
        return  # everything frozen and no dX wanted: not even dZ is needed
    if acc != NULL:
        memset(acc, 0, n_acc * m * sizeof(double))
    if nt == 1:
        if dz != NULL or acc != NULL:
            if n_acc == 1:
                _dz_rows(kind, p, q, dy, y, zs, dz, acc, 0, n, m, 0, m)
            else:
                for t in prange(n_acc, schedule="static", num_threads=n_acc):
                    _dz_rows(kind, p, q, dy, y, zs, dz, acc + t * m if acc != NULL else NULL,
                             dense_tile(t, n_acc, n), dense_tile(t + 1, n_acc, n), m, 0, m)
        dense_backward_tile(0, 1, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate,
                            blas_nt)
    else:
        # One parallel region: dZ and its column sums by batch rows, then (after the loop's
        # barrier: dW and dX read all of dZ) each thread's dW and dX tiles.
        with parallel(num_threads=nt):
            for t in prange(nt, schedule="static"):
                if dz != NULL or acc != NULL:
                    _dz_rows(kind, p, q, dy, y, zs, dz, acc + t * m if acc != NULL else NULL,
                             dense_tile(t, nt, n), dense_tile(t + 1, nt, n), m, 0, m)
            for t in prange(nt, schedule="static"):
                # (blas_nt: 1, BLAS single-threaded in each tile, or 0, pynn's own kernel)
                dense_backward_tile(t, nt, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate,
                                    blas_nt)
