# The fully-connected layer's loops, shared by pynn._kernels.dense (one kernel per call) and
# pynn._kernels.train_step (a whole training step in one call): one copy of the tiling and
# epilogues, so the two give bit-identical results. Arguments arrive checked; scratch comes from
# the caller.
#
# One thread pool. With n_threads > 1 and a product big enough to share, the work is split into
# one tile per thread of pynn's OpenMP team (rows of Y and dX, rows of dW), and each thread calls
# BLAS single-threaded on its tile, then runs the epilogue on the rows it just wrote while they
# are in its cache. BLAS's own threads are never woken, so no second pool competes for the cores
# (with two pools, whichever spins after its work starves the other; how long libgomp spins is set
# when it loads, possibly by another library). Small products run whole on the calling thread.
# When the BLAS offers no per-thread thread count (see _blas_threads.h), one BLAS call with BLAS's
# own threads does the product.
from cython.parallel cimport parallel, prange
from libc.string cimport memcpy, memset

from _types cimport floating, idx_t
from _activations cimport IDENTITY, act_backward_span, act_forward_span
from _activations_threads cimport act_forward_threads
from _blas cimport gemm_rm, gemv_rm


cdef extern from "_blas_threads.h":
    void pynn_blas_threads_init(void* symbol) noexcept nogil
    bint pynn_blas_control() noexcept nogil
    void pynn_blas_single() noexcept nogil


cdef enum:
    # Multiply-adds below which a product runs on one thread: splitting a 32x64x32 product
    # costs a parallel-region wake-up (several us) for ~1 us of work.
    DENSE_PARALLEL_MIN_MACS = 1 << 18
    # Rows (or weight rows) per tile at least: thinner tiles run BLAS below its efficient size.
    MIN_TILE = 16
    # A forward of at most this many rows is one matrix-vector product per row, on the calling
    # thread, whatever the thread count (so its result is too): a GEMM packs the whole weight
    # first, which for one row of a 784 x 256 layer took ~150 us where the product reads it in
    # ~15 us (this host's OpenBLAS).
    GEMV_ROWS = 4
    # A forward of more than GEMV_ROWS and at most FEW_ROWS rows against a weight of at least
    # FEW_ROWS_MIN_WEIGHT elements is one GEMM with the rows as BLAS's first operand and the
    # weight as its second (_few_rows_product), which OpenBLAS runs faster for a few rows
    # (measured, not traced: how it packs and tiles the operands differs with the orientation):
    # 16 rows of 784 x 256 on one thread 186 -> 110 us, 256 x 128 40 -> 30 (minima on a busy
    # AVX2 EPYC, OpenBLAS 0.3.30 Haswell kernel). From ~32 rows, or for a small weight
    # (64 x 32), the usual orientation is as fast or faster.
    FEW_ROWS = 16
    FEW_ROWS_MIN_WEIGHT = 1 << 15


cdef inline int dense_team(idx_t macs, idx_t rows, int n_threads) noexcept nogil:
    """Threads for a product of ``macs`` multiply-adds split over ``rows`` rows."""
    cdef idx_t nt = n_threads
    if not pynn_blas_control() or n_threads < 2 or macs < DENSE_PARALLEL_MIN_MACS:
        return 1
    if nt * MIN_TILE > rows:
        nt = rows // MIN_TILE
    return <int>nt if nt > 1 else 1


cdef inline idx_t dense_tile(idx_t t, idx_t nt, idx_t rows) noexcept nogil:
    """First row of tile t of nt over ``rows`` rows (tile t ends where t + 1 starts)."""
    return (rows * t) // nt


cdef inline idx_t dense_forward_scratch(idx_t n, idx_t k, idx_t m) noexcept nogil:
    """Elements of scratch a forward of n rows of k features into m needs: n * m for the
    few-rows product (see FEW_ROWS), else 0. Every caller of dense_forward_core and
    dense_forward_cols passes that much, so every path takes the same product."""
    if GEMV_ROWS < n <= FEW_ROWS and k * m >= FEW_ROWS_MIN_WEIGHT:
        return n * m
    return 0


cdef inline void _few_rows_product(const floating* X, const floating* W, const floating* b,
                                   floating* Y, floating* Z, floating* T, idx_t n, idx_t k,
                                   idx_t m, idx_t ld, int kind, floating p,
                                   floating q) noexcept nogil:
    """Y[:n, :m] (rows ld apart) := act(X @ W.T + b) as T = W @ X.T (m x n, the bias rows
    first), then transposed into Z (the kept pre-activation, rows ld apart; Y itself when none
    is kept) and the activation read from there: BLAS's column-major view of T is X @ W.T
    with the rows as its first operand (see FEW_ROWS). BLAS single-threaded in this thread."""
    cdef idx_t i, j
    cdef floating beta = 0
    if m <= 0:
        return
    if b != NULL:
        beta = 1  # as _forward_rows: the GEMM adds onto the bias
        for j in range(m):
            for i in range(n):
                T[j * n + i] = b[j]
    pynn_blas_single()
    gemm_rm(False, True, <int>m, <int>n, <int>k, 1, W, <int>k, X, <int>k, beta, T, <int>n)
    for i in range(n):
        for j in range(m):
            Z[i * ld + j] = T[j * n + i]
        if kind != IDENTITY:
            act_forward_span(kind, p, q, Z + i * ld, Y + i * ld, m)


cdef inline void _forward_rows(const floating* X, const floating* W, const floating* b,
                               floating* Y, floating* scratch, idx_t lo, idx_t hi, idx_t k,
                               idx_t m, int kind, floating p, floating q,
                               floating* zs) noexcept nogil:
    """Rows lo..hi of Y := act(X @ W.T + b), BLAS single-threaded in this thread. ``zs``
    (unless NULL) keeps the pre-activation Z = X @ W.T + b: the product goes there and the
    activation reads it from there. ``scratch`` (dense_forward_scratch of the whole product,
    or NULL) only when lo..hi is all of it."""
    cdef idx_t i
    cdef floating beta = 0
    cdef floating* Z = zs if zs != NULL else Y
    if hi <= lo:
        return
    if scratch != NULL:
        _few_rows_product(X, W, b, Y, Z, scratch, hi - lo, k, m, m, kind, p, q)
        return
    if b != NULL and m > 0:
        beta = 1  # the GEMM adds onto the bias rows: no separate bias pass
        for i in range(lo, hi):
            memcpy(Z + i * m, b, m * sizeof(floating))
    pynn_blas_single()
    if hi - lo <= GEMV_ROWS:
        for i in range(lo, hi):  # Z[i] = W @ X[i] + beta * Z[i]
            gemv_rm(<int>m, <int>k, 1, W, X + i * k, beta, Z + i * m)
    else:
        # Z[lo:hi] = X[lo:hi] @ W.T + beta * Z[lo:hi]   (row-major: W enters transposed)
        gemm_rm(False, True, <int>(hi - lo), <int>m, <int>k, 1, X + lo * k, <int>k, W, <int>k,
                beta, Z + lo * m, <int>m)
    if kind != IDENTITY:
        act_forward_span(kind, p, q, Z + lo * m, Y + lo * m, (hi - lo) * m)


cdef inline void dense_forward_cols(const floating* X, const floating* W, const floating* b,
                                    floating* Y, floating* scratch, idx_t lo, idx_t hi,
                                    idx_t n, idx_t k, idx_t m, int kind, floating p,
                                    floating q, floating* zs) noexcept nogil:
    """Columns lo..hi of Y := act(X @ W.T + b), every row; BLAS single-threaded in this
    thread. ``zs``: as in _forward_rows. ``scratch``: dense_forward_scratch(n, k, m) elements
    or NULL (this tile uses its columns' share)."""
    cdef idx_t i
    cdef floating beta = 0
    cdef floating* Z = zs if zs != NULL else Y
    if hi <= lo or n <= 0:
        return
    if scratch != NULL:
        _few_rows_product(X, W + lo * k, b + lo if b != NULL else NULL, Y + lo, Z + lo,
                          scratch + lo * n, n, k, hi - lo, m, kind, p, q)
        return
    if b != NULL:
        beta = 1
        for i in range(n):
            memcpy(Z + i * m + lo, b + lo, (hi - lo) * sizeof(floating))
    pynn_blas_single()
    # Z[:, lo:hi] = X @ W[lo:hi].T + beta * Z[:, lo:hi]
    gemm_rm(False, True, <int>n, <int>(hi - lo), <int>k, 1, X, <int>k, W + lo * k, <int>k,
            beta, Z + lo, <int>m)
    if kind != IDENTITY:
        for i in range(n):
            act_forward_span(kind, p, q, Z + i * m + lo, Y + i * m + lo, hi - lo)


cdef inline bint dense_forward_tiled(idx_t n) noexcept nogil:
    """A forward of n rows may be split into tiles (more rows than GEMV_ROWS)."""
    return n > GEMV_ROWS


cdef inline bint dense_forward_by_cols(idx_t n, idx_t m) noexcept nogil:
    """A forward's tiles split the output by columns (else by batch rows) when the weight is
    the larger operand (m > n): every thread packs the operand it shares with the others in
    full, so the smaller one should be the shared one. (On a tie, rows: columns would let a
    BatchNorm after the layer share the tiles, but each thread then reads all of the batch,
    half of it written by the other core, and the medium step's 128 x 256 x 128 layer measured
    up to 20% slower with its BatchNorm that way when the host's caches are contended.)"""
    return m > n


cdef inline void dense_forward_core(const floating* X, const floating* W, const floating* b,
                                    floating* y, floating* scratch, idx_t n, idx_t k, idx_t m,
                                    int kind, floating p, floating q, floating* zs,
                                    int n_threads) noexcept nogil:
    """Y := act(X @ W.T + b); b may be NULL; zs (unless NULL) keeps the pre-activation (see
    _forward_rows). Sizes checked against the BLAS int range. Tiles by batch rows or output
    columns: dense_forward_by_cols. ``scratch``: dense_forward_scratch(n, k, m) elements (NULL
    when that is 0)."""
    cdef idx_t t
    cdef bint by_cols = dense_forward_by_cols(n, m)
    cdef int nt = dense_team(n * m * k, m if by_cols else n, n_threads)
    if dense_forward_scratch(n, k, m) == 0:
        scratch = NULL
    if n <= GEMV_ROWS:
        # one product per row, this thread
        _forward_rows(X, W, b, y, NULL, 0, n, k, m, kind, p, q, zs)
    elif not pynn_blas_control():
        # No per-thread BLAS control: one call, BLAS's threads; OpenMP only for the epilogue.
        _forward_rows(X, W, b, zs if zs != NULL else y, scratch, 0, n, k, m, IDENTITY, p, q,
                      NULL)
        if kind != IDENTITY and n * m > 0:
            act_forward_threads(kind, p, q, zs if zs != NULL else y, y, n * m,
                                n_threads if n * m >= 1 << 20 else 1)
    elif nt == 1:
        _forward_rows(X, W, b, y, scratch, 0, n, k, m, kind, p, q, zs)
    elif by_cols:
        for t in prange(nt, schedule="static", num_threads=nt):
            dense_forward_cols(X, W, b, y, scratch, dense_tile(t, nt, m),
                               dense_tile(t + 1, nt, m), n, k, m, kind, p, q, zs)
    else:  # (never a few-rows product: a row tile is at least MIN_TILE rows)
        for t in prange(nt, schedule="static", num_threads=nt):
            _forward_rows(X, W, b, y, NULL, dense_tile(t, nt, n), dense_tile(t + 1, nt, n), k,
                          m, kind, p, q, zs)


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
                                     idx_t m, idx_t k, bint accumulate) noexcept nogil:
    """Thread t of nt's share of the products; BLAS single-threaded in this thread.

    With both dW and dX wanted and an even number of threads, the team splits in two: threads
    [0, nt/2) tile db and dW, the others tile dX. The two products are the same size (n m k
    multiply-adds each), and each thread then packs one product's operands instead of both
    products' (packing the shared operand again is what a thread's tile of a small product
    mostly costs). Otherwise (an odd team would load its halves unevenly) every thread takes a
    tile of each product."""
    cdef int half = nt // 2
    if dW != NULL and dX != NULL and nt >= 2 and nt % 2 == 0:
        if t < half:
            _backward_tiles(t, half, z, X, W, dW, db, acc, n_acc, NULL, n, m, k, accumulate)
        else:
            _backward_tiles(t - half, nt - half, z, X, W, NULL, NULL, acc, n_acc, dX, n, m, k,
                            accumulate)
    else:
        _backward_tiles(t, nt, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate)


cdef inline void _backward_tiles(int t, int nt, const floating* z, const floating* X,
                                 const floating* W, floating* dW, floating* db,
                                 const double* acc, int n_acc, floating* dX, idx_t n, idx_t m,
                                 idx_t k, bint accumulate) noexcept nogil:
    """Tile t of nt: db and dW for weight rows [m*t/nt, m*(t+1)/nt), dX for batch rows
    [n*t/nt, n*(t+1)/nt) (or its columns [k*t/nt, k*(t+1)/nt) when k > n); BLAS
    single-threaded in this thread. ``acc`` holds n_acc rows of
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
    pynn_blas_single()
    if dW != NULL and hi > lo:
        # dW[lo:hi] (+)= dZ[:, lo:hi].T @ X
        gemm_rm(True, False, <int>(hi - lo), <int>k, <int>n, 1, z + lo, <int>m, X, <int>k,
                1 if accumulate else 0, dW + lo * k, <int>k)
    if dX != NULL and k > n:
        # by columns of dX when W (m x k) is larger than dZ (n x m): see dense_forward_core
        lo = dense_tile(t, nt, k)
        hi = dense_tile(t + 1, nt, k)
        if hi > lo:
            # dX[:, lo:hi] = dZ @ W[:, lo:hi]
            gemm_rm(False, False, <int>n, <int>(hi - lo), <int>m, 1, z, <int>m, W + lo,
                    <int>k, 0, dX + lo, <int>k)
    elif dX != NULL:
        lo = dense_tile(t, nt, n)
        hi = dense_tile(t + 1, nt, n)
        if hi > lo:
            # dX[lo:hi] = dZ[lo:hi] @ W
            gemm_rm(False, False, <int>(hi - lo), <int>k, <int>m, 1, z + lo * m, <int>m, W,
                    <int>k, 0, dX + lo * k, <int>k)


cdef inline void dense_backward_team(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx,
                                     int n_threads, int* nt, int* n_acc) noexcept nogil:
    """The backward's threads (``nt``) and rows of bias partial sums (``n_acc``): the caller
    allocates n_acc * m doubles for them, and n * m elements of dZ unless the identity."""
    cdef idx_t macs = (n * m * k) * (has_dw + has_dx)
    cdef idx_t dx_rows = k if k > n else n  # what dense_backward_tile splits dX by
    if pynn_blas_control():
        nt[0] = dense_team(macs, (min(dx_rows, m) if has_dx else m) if has_dw else dx_rows,
                           n_threads)
        n_acc[0] = nt[0]
    else:
        nt[0] = 1  # BLAS threads the products itself; OpenMP only for the big elementwise pass
        n_acc[0] = n_threads if n * m >= 1 << 20 and n_threads > 1 else 1
        if n_acc[0] > n:
            n_acc[0] = <int>n if n > 0 else 1


cdef inline void dense_backward_core(const floating* dy, const floating* X, const floating* W,
                                     const floating* y, const floating* zs, floating* dz,
                                     double* acc, floating* dW, floating* db, floating* dX,
                                     idx_t n, idx_t m, idx_t k, int kind, floating p,
                                     floating q, int nt, int n_acc,
                                     bint accumulate) noexcept nogil:
    """dZ = dY * act'(Y) (act'(Z) from the kept pre-activation zs unless NULL); db (+)=
    colsum(dZ); dW (+)= dZ.T @ X; dX := dZ @ W.

    ``nt``/``n_acc`` from dense_backward_team. y, zs and dz are NULL for the identity (dZ is
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
        dense_backward_tile(0, 1, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate)
    else:
        # One parallel region: dZ and its column sums by batch rows, then (after the loop's
        # barrier: dW and dX read all of dZ) each thread's dW and dX tiles.
        with parallel(num_threads=nt):
            for t in prange(nt, schedule="static"):
                if dz != NULL or acc != NULL:
                    _dz_rows(kind, p, q, dy, y, zs, dz, acc + t * m if acc != NULL else NULL,
                             dense_tile(t, nt, n), dense_tile(t + 1, nt, n), m, 0, m)
            for t in prange(nt, schedule="static"):
                dense_backward_tile(t, nt, z, X, W, dW, db, acc, n_acc, dX, n, m, k, accumulate)
