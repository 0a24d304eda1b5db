# The fully-connected layer's forward loops and the products' strategies, shared by
# pynn._kernels.dense (one kernel per call), pynn._kernels.train_step (a whole training step in
# one call) and pynn._kernels.inference: one copy of the tiling and epilogues, so they give
# bit-identical results. Arguments arrive checked; scratch comes from the caller. The backward
# is in _dense_backward.pxd.
#
# One thread pool by default. With n_threads > 1 and a product big enough to share, the work is
# split into one tile per thread of pynn's OpenMP team (rows of Y and dX, rows of dW), and each
# thread calls BLAS single-threaded on its tile, then runs the epilogue on the rows it just wrote
# while they are in its cache. BLAS's own threads are woken only for a product whose strategy
# says so (DENSE_BLAS_THREADS), which then holds the products lock exclusively
# (_products_lock.h): with two pools running at once, whichever spins after its work starves the
# other (how long libgomp spins is set when it loads, possibly by another library). Small
# products run whole on the calling thread. When the BLAS offers no per-thread thread count (see
# _blas_threads.h), one BLAS call with BLAS's own threads does every product.
#
# Strategies are data: the caller passes one (pynn.tune decides it, by timing the candidates or
# by dense_forward_estimate / dense_backward_estimate, the fixed rules: estimate mode is those
# rules bit for bit; until DENSE_DOT they were the rules this file had before the planner, and
# DENSE_DOT took over their few-rows shapes only). A strategy is how the product
# is threaded (the low two bits) and, for a forward, whether it runs in the transposed
# orientation (DENSE_TRANSPOSED, see _few_rows_product) or by pynn's own few-rows kernel
# (DENSE_DOT, see _dot.h: no BLAS, no packing). Strategies may round the last bits
# differently (OpenBLAS's kernels round a tile's edges, a transposed product and a
# matrix-vector product each their own way), so every caller of one product takes the same
# strategy: pynn.tune's choice for its key.
from cython.parallel cimport prange
from libc.string cimport memcpy

from _types cimport floating, idx_t
from _activations cimport IDENTITY, act_forward_span
from _activations_threads cimport act_forward_threads
from _blas cimport gemm_rm, gemv_rm


cdef extern from "_dot.h":
    void pynn_dot_rows_f(const float* X, const float* W, const float* b, float* Z, idx_t n,
                         idx_t k, idx_t j0, idx_t j1, idx_t ldz) noexcept nogil
    void pynn_dot_rows_d(const double* X, const double* W, const double* b, double* Z,
                         idx_t n, idx_t k, idx_t j0, idx_t j1, idx_t ldz) noexcept nogil


cdef extern from "_direct.h":
    void pynn_direct_f(const float* A, idx_t ar, idx_t ap, const float* B, idx_t ldb, float* C,
                       idx_t ldc, idx_t rows, idx_t cols, idx_t inner,
                       int accumulate) noexcept nogil
    void pynn_direct_d(const double* A, idx_t ar, idx_t ap, const double* B, idx_t ldb,
                       double* C, idx_t ldc, idx_t rows, idx_t cols, idx_t inner,
                       int accumulate) noexcept nogil


cdef extern from "_blas_threads.h":
    void pynn_blas_threads_init(void* symbol) noexcept nogil
    bint pynn_blas_control() noexcept nogil
    void pynn_blas_single() noexcept nogil
    void pynn_blas_set(int n) noexcept nogil


cdef extern from "_products_lock.h":
    void* pynn_products_lock_address() noexcept nogil
    void pynn_products_lock_adopt(void* address) noexcept nogil
    void pynn_products_acquire(int exclusive) noexcept nogil
    void pynn_products_release(int exclusive) noexcept nogil


cdef enum:
    # The strategies (pynn.tune names them; pynn.tune._strategies holds the same values).
    # Threading, the low two bits:
    DENSE_ONE_THREAD = 0    # the whole product on the calling thread, BLAS single-threaded
    DENSE_TILES = 1         # one tile per thread of pynn's team, BLAS single-threaded in each
    DENSE_BLAS_THREADS = 2  # one BLAS call on BLAS's own n_threads threads, then the epilogue
    DENSE_GEMV = 3          # forward only: one matrix-vector product per row, one thread
    DENSE_THREADING = 3     # (the mask of the threading bits)
    # Orientation (forward only): the transposed product of _few_rows_product
    DENSE_TRANSPOSED = 4
    DENSE_FEW_ROWS = 4      # DENSE_ONE_THREAD | DENSE_TRANSPOSED
    DENSE_STRATEGIES = 7    # the BLAS strategies are 0 .. DENSE_STRATEGIES - 1
    # pynn's own few-rows kernel (_dot.h), on the calling thread (DENSE_DOT) or on column tiles
    # (DENSE_DOT | DENSE_TILES); it rounds every output alike however the columns are split
    DENSE_DOT = 8
    # A backward's products by pynn's own kernel (_direct.h: no BLAS, no packing), on the
    # calling thread (DENSE_DIRECT) or on the team's tiles (DENSE_DIRECT | DENSE_TILES); it
    # rounds every element alike however the rows or columns are split. (The bit DENSE_DOT
    # sets for a forward: "pynn's own kernel".)
    DENSE_DIRECT = 8
    # The estimates' rules (dense_forward_estimate, dense_backward_estimate):
    # Multiply-adds below which a product runs on one thread: splitting a 32x64x32 product
    # costs a parallel-region wake-up (several us) for ~1 us of work.
    DENSE_PARALLEL_MIN_MACS = 1 << 18
    # Rows (or weight rows) per tile at least: thinner tiles run BLAS below its efficient size.
    MIN_TILE = 16
    # A forward of at most GEMV_ROWS rows, and one of at most DOT_ROWS rows against a weight
    # of at least DOT_MIN_WEIGHT elements, runs pynn's own kernel (DENSE_DOT, _dot.h): a GEMM
    # packs the whole weight first, which for one row of a 784 x 256 layer took ~150 us where
    # the arithmetic takes ~15 us, and ~50 of OpenBLAS's best 100 us for 16 rows (the
    # transposed orientation, _few_rows_product); a matrix-vector product per row reads the
    # weight once per row. The kernel reads both operands in place: 16 rows of 784 x 256
    # float32 on one thread 78-89 us (AMD EPYC Zen 3, OpenBLAS 0.3.30 Haswell kernel). Its
    # column tiles round alike, so its result is the same on any thread count. These are the
    # shapes the rules sent to the matrix-vector and the transposed products before DENSE_DOT
    # (GEMV_ROWS; FEW_ROWS of FEW_ROWS_MIN_WEIGHT), which round differently from the GEMM as
    # well; the others keep the GEMM, whose rows round alike whatever the batch around them, so
    # predict in batches of 7 rows of a small net still gives predict's bits on the whole.
    GEMV_ROWS = 4
    DOT_ROWS = 16
    DOT_MIN_WEIGHT = 1 << 15
    # pynn.tune still offers one matrix-vector product per row (DENSE_GEMV) and the transposed
    # product (DENSE_TRANSPOSED), which OpenBLAS runs faster than the usual orientation for a
    # few rows (16 rows of 784 x 256 on one thread 186 -> 110 us): the fixed rules took them for
    # at most GEMV_ROWS rows, and for at most FEW_ROWS of a weight of FEW_ROWS_MIN_WEIGHT.
    FEW_ROWS = 16
    FEW_ROWS_MIN_WEIGHT = 1 << 15


cdef inline bint dense_strategy_valid(int strategy, bint forward) noexcept nogil:
    """``strategy`` is one a forward (``forward``) or a backward takes."""
    if forward:
        return (0 <= strategy < DENSE_STRATEGIES or strategy == DENSE_DOT
                or strategy == DENSE_DOT | DENSE_TILES)
    return (0 <= strategy <= DENSE_BLAS_THREADS or strategy == DENSE_DIRECT
            or strategy == DENSE_DIRECT | DENSE_TILES)


cdef inline int dense_tiles_over(idx_t rows, int n_threads) noexcept nogil:
    """Tiles of at least MIN_TILE rows over ``rows`` rows, at most one per thread."""
    cdef idx_t nt = n_threads
    if nt * MIN_TILE > rows:
        nt = rows // MIN_TILE
    return <int>nt if nt > 1 else 1


cdef inline int dense_tiles_team(idx_t rows, int n_threads) noexcept nogil:
    """Threads of a tiled BLAS product split over ``rows`` rows: dense_tiles_over, and 1 when
    BLAS cannot run single-threaded in each (no thread setter: see _blas_threads.h)."""
    if not pynn_blas_control():
        return 1
    return dense_tiles_over(rows, n_threads)


cdef inline int dense_team(idx_t macs, idx_t rows, int n_threads) noexcept nogil:
    """The estimate's threads for a product of ``macs`` multiply-adds split over ``rows``
    rows: one below DENSE_PARALLEL_MIN_MACS, else dense_tiles_team."""
    if macs < DENSE_PARALLEL_MIN_MACS:
        return 1
    return dense_tiles_team(rows, n_threads)


cdef inline idx_t dense_tile(idx_t t, idx_t nt, idx_t rows) noexcept nogil:
    """First row of tile t of nt over ``rows`` rows (tile t ends where t + 1 starts)."""
    return (rows * t) // nt


cdef inline bint dense_forward_by_cols(idx_t n, idx_t m) noexcept nogil:
    """A forward's tiles split the output by columns (else by batch rows) when the weight is
    the larger operand (m > n): every thread packs the operand it shares with the others in
    full, so the smaller one should be the shared one. (On a tie, rows: columns would let a
    BatchNorm after the layer share the tiles, but each thread then reads all of the batch,
    half of it written by the other core, and the medium step's 128 x 256 x 128 layer measured
    up to 20% slower with its BatchNorm that way when the host's caches are contended.) A
    transposed forward always splits by columns: its product's first operand is W."""
    return m > n


cdef inline bint dense_forward_cols_tiled(idx_t n, idx_t m, int strategy) noexcept nogil:
    """A tiled forward with ``strategy`` splits by columns (else by rows): always for the
    transposed orientation and DENSE_DOT (their tiles are rows of W)."""
    return (strategy & (DENSE_TRANSPOSED | DENSE_DOT)) != 0 or dense_forward_by_cols(n, m)


cdef inline int dense_dot_team(idx_t macs, idx_t m, int n_threads) noexcept nogil:
    """The estimate's threads for a DENSE_DOT forward of ``macs`` multiply-adds into m
    columns: one below DENSE_PARALLEL_MIN_MACS, else its column tiles (dense_tiles_over: it
    calls no BLAS, so it needs no thread setter)."""
    if macs < DENSE_PARALLEL_MIN_MACS:
        return 1
    return dense_tiles_over(m, n_threads)


cdef inline int dense_forward_team(idx_t n, idx_t m, int strategy,
                                   int n_threads) noexcept nogil:
    """Threads of a forward of n rows into m columns with ``strategy``: its tiles for
    DENSE_TILES (1 when too thin to split), else 1 (BLAS's threads are not pynn's team)."""
    if strategy & DENSE_THREADING != DENSE_TILES:
        return 1
    if strategy & DENSE_DOT:
        return dense_tiles_over(m, n_threads)  # no BLAS: no thread setter needed
    return dense_tiles_team(m if dense_forward_cols_tiled(n, m, strategy) else n, n_threads)


cdef inline int dense_forward_estimate(idx_t n, idx_t k, idx_t m, int n_threads) noexcept nogil:
    """The fixed rules' strategy for a forward of n rows of k features into m (see the
    constants): pynn's kernel for a few rows (GEMV_ROWS, or DOT_ROWS of a big weight); tiles
    from DENSE_PARALLEL_MIN_MACS; BLAS's own threads without a thread setter."""
    if n <= GEMV_ROWS or (n <= DOT_ROWS and k * m >= DOT_MIN_WEIGHT):
        if dense_dot_team(n * k * m, m, n_threads) >= 2:
            return DENSE_DOT | DENSE_TILES
        return DENSE_DOT
    if not pynn_blas_control():
        return DENSE_BLAS_THREADS
    if dense_team(n * m * k, m if dense_forward_by_cols(n, m) else n, n_threads) >= 2:
        return DENSE_TILES
    return DENSE_ONE_THREAD


cdef inline idx_t dense_forward_scratch(idx_t n, idx_t k, idx_t m, int strategy) noexcept nogil:
    """Elements of scratch a forward of n rows of k features into m with ``strategy`` needs:
    n * m for a transposed product (see _few_rows_product), else 0. Every caller of
    dense_forward_core and dense_forward_cols passes that much."""
    if strategy & DENSE_TRANSPOSED:
        return n * m
    return 0


cdef inline void _few_rows_product(const floating* X, const floating* W, const floating* b,
                                   floating* Y, floating* Z, floating* T, idx_t n, idx_t k,
                                   idx_t m, idx_t ld, int kind, floating p, floating q,
                                   int blas_nt) noexcept nogil:
    """Y[:n, :m] (rows ld apart) := act(X @ W.T + b) as T = W @ X.T (m x n, the bias rows
    first), then transposed into Z (the kept pre-activation, rows ld apart; Y itself when none
    is kept) and the activation read from there: BLAS's column-major view of T is X @ W.T
    with the rows as its first operand (see FEW_ROWS). BLAS on ``blas_nt`` threads."""
    cdef idx_t i, j
    cdef floating beta = 0
    if m <= 0:
        return
    if b != NULL:
        beta = 1  # as _forward_rows: the GEMM adds onto the bias
        for j in range(m):
            for i in range(n):
                T[j * n + i] = b[j]
    pynn_blas_set(blas_nt)
    gemm_rm(False, True, <int>m, <int>n, <int>k, 1, W, <int>k, X, <int>k, beta, T, <int>n)
    for i in range(n):
        for j in range(m):
            Z[i * ld + j] = T[j * n + i]
        if kind != IDENTITY:
            act_forward_span(kind, p, q, Z + i * ld, Y + i * ld, m)


cdef inline void _forward_rows(const floating* X, const floating* W, const floating* b,
                               floating* Y, floating* scratch, idx_t lo, idx_t hi, idx_t k,
                               idx_t m, int kind, floating p, floating q, floating* zs,
                               int blas_nt) noexcept nogil:
    """Rows lo..hi of Y := act(X @ W.T + b), BLAS on ``blas_nt`` threads from this thread.
    ``zs`` (unless NULL) keeps the pre-activation Z = X @ W.T + b: the product goes there and
    the activation reads it from there. ``scratch`` (a transposed product's, or NULL) only
    when lo..hi is all of it."""
    cdef idx_t i
    cdef floating beta = 0
    cdef floating* Z = zs if zs != NULL else Y
    if hi <= lo:
        return
    if scratch != NULL:
        _few_rows_product(X, W, b, Y, Z, scratch, hi - lo, k, m, m, kind, p, q, blas_nt)
        return
    if b != NULL and m > 0:
        beta = 1  # the GEMM adds onto the bias rows: no separate bias pass
        for i in range(lo, hi):
            memcpy(Z + i * m, b, m * sizeof(floating))
    pynn_blas_set(blas_nt)
    # Z[lo:hi] = X[lo:hi] @ W.T + beta * Z[lo:hi]   (row-major: W enters transposed)
    gemm_rm(False, True, <int>(hi - lo), <int>m, <int>k, 1, X + lo * k, <int>k, W, <int>k,
            beta, Z + lo * m, <int>m)
    if kind != IDENTITY:
        act_forward_span(kind, p, q, Z + lo * m, Y + lo * m, (hi - lo) * m)


cdef inline void _gemv_rows(const floating* X, const floating* W, const floating* b,
                            floating* Y, idx_t n, idx_t k, idx_t m, int kind, floating p,
                            floating q, floating* zs) noexcept nogil:
    """Y := act(X @ W.T + b) as one matrix-vector product per row (see GEMV_ROWS), BLAS
    single-threaded in this thread; ``zs``: as in _forward_rows."""
    cdef idx_t i
    cdef floating beta = 0
    cdef floating* Z = zs if zs != NULL else Y
    if n <= 0:
        return
    if b != NULL and m > 0:
        beta = 1
        for i in range(n):
            memcpy(Z + i * m, b, m * sizeof(floating))
    pynn_blas_single()
    for i in range(n):  # Z[i] = W @ X[i] + beta * Z[i]
        gemv_rm(<int>m, <int>k, 1, W, X + i * k, beta, Z + i * m)
    if kind != IDENTITY:
        act_forward_span(kind, p, q, Z, Y, n * m)


cdef inline void _dot_cols(const floating* X, const floating* W, const floating* b,
                           floating* Y, idx_t lo, idx_t hi, idx_t n, idx_t k, idx_t m, int kind,
                           floating p, floating q, floating* zs) noexcept nogil:
    """Columns lo..hi of Y := act(X @ W.T + b), every row, by pynn's own kernel (_dot.h: no
    BLAS); ``zs``: as in _forward_rows."""
    cdef idx_t i
    cdef floating* Z = zs if zs != NULL else Y
    if floating is float:
        pynn_dot_rows_f(X, W, b, Z, n, k, lo, hi, m)
    else:
        pynn_dot_rows_d(X, W, b, Z, n, k, lo, hi, m)
    if kind != IDENTITY:
        for i in range(n):
            act_forward_span(kind, p, q, Z + i * m + lo, Y + i * m + lo, hi - lo)


cdef inline void dense_forward_cols(const floating* X, const floating* W, const floating* b,
                                    floating* Y, floating* scratch, idx_t lo, idx_t hi,
                                    idx_t n, idx_t k, idx_t m, int kind, floating p,
                                    floating q, floating* zs, int strategy) noexcept nogil:
    """Columns lo..hi of Y := act(X @ W.T + b), every row, on this thread: by pynn's kernel
    for DENSE_DOT, else BLAS single-threaded. ``zs``: as in _forward_rows. ``scratch``: a
    transposed product's n * m elements or NULL (this tile uses its columns' share)."""
    cdef idx_t i
    cdef floating beta = 0
    cdef floating* Z = zs if zs != NULL else Y
    if hi <= lo or n <= 0:
        return
    if strategy & DENSE_DOT:
        _dot_cols(X, W, b, Y, lo, hi, n, k, m, kind, p, q, zs)
        return
    if scratch != NULL:
        _few_rows_product(X, W + lo * k, b + lo if b != NULL else NULL, Y + lo, Z + lo,
                          scratch + lo * n, n, k, hi - lo, m, kind, p, q, 1)
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


cdef inline void dense_forward_core(const floating* X, const floating* W, const floating* b,
                                    floating* y, floating* scratch, idx_t n, idx_t k, idx_t m,
                                    int kind, floating p, floating q, floating* zs,
                                    int n_threads, int strategy) noexcept nogil:
    """Y := act(X @ W.T + b) with ``strategy`` (checked: dense_strategy_valid); b may be NULL;
    zs (unless NULL) keeps the pre-activation (see _forward_rows). Sizes checked against the
    BLAS int range. ``scratch``: dense_forward_scratch(n, k, m, strategy) elements (NULL when
    that is 0). The caller holds the products lock (exclusively for DENSE_BLAS_THREADS)."""
    cdef idx_t t
    cdef int how = strategy & DENSE_THREADING
    cdef int nt = dense_forward_team(n, m, strategy, n_threads)
    cdef floating* Z = zs if zs != NULL else y
    if not strategy & DENSE_TRANSPOSED:
        scratch = NULL
    if strategy & DENSE_DOT and nt == 1:
        if n > 0:
            _dot_cols(X, W, b, y, 0, m, n, k, m, kind, p, q, zs)
    elif how == DENSE_GEMV:
        _gemv_rows(X, W, b, y, n, k, m, kind, p, q, zs)
    elif how == DENSE_BLAS_THREADS:
        # one call on BLAS's threads; OpenMP only for the epilogue
        _forward_rows(X, W, b, Z, scratch, 0, n, k, m, IDENTITY, p, q, NULL, n_threads)
        if kind != IDENTITY and n * m > 0:
            act_forward_threads(kind, p, q, Z, y, n * m, n_threads if n * m >= 1 << 20 else 1)
    elif nt == 1:
        _forward_rows(X, W, b, y, scratch, 0, n, k, m, kind, p, q, zs, 1)
    elif dense_forward_cols_tiled(n, m, strategy):
        for t in prange(nt, schedule="static", num_threads=nt):
            dense_forward_cols(X, W, b, y, scratch, dense_tile(t, nt, m),
                               dense_tile(t + 1, nt, m), n, k, m, kind, p, q, zs, strategy)
    else:  # (never transposed: dense_forward_cols_tiled)
        for t in prange(nt, schedule="static", num_threads=nt):
            _forward_rows(X, W, b, y, NULL, dense_tile(t, nt, n), dense_tile(t + 1, nt, n), k,
                          m, kind, p, q, zs, 1)
