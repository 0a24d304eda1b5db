# Batch normalization's loops, shared by pynn._kernels.batchnorm (one kernel per call) and
# pynn._kernels.train_step (a whole training step in one call): one copy, so the two give
# bit-identical results. How the statistics are blocked, and why: batchnorm.pyx's docstring.
# Arguments arrive checked and non-empty; scratch comes from the caller (sizes below).
from cython.parallel cimport prange
from libc.math cimport sqrt

from _types cimport floating, idx_t
from _activations cimport IDENTITY, act_backward_span, act_forward_span

cdef extern from "_batchnorm.h" nogil:
    # `rows` rows of `w` columns, rows `ld` elements apart; cloned per CPU feature, see there.
    void pynn_bn_colsum_f(const float* x, idx_t rows, idx_t w, idx_t ld, double* acc) noexcept
    void pynn_bn_colsum_d(const double* x, idx_t rows, idx_t w, idx_t ld, double* acc) noexcept
    void pynn_bn_colsqdev_f(const float* x, idx_t rows, idx_t w, idx_t ld, const double* mean,
                            double* acc) noexcept
    void pynn_bn_colsqdev_d(const double* x, idx_t rows, idx_t w, idx_t ld, const double* mean,
                            double* acc) noexcept
    void pynn_bn_normalize_f(const float* x, float* y, idx_t rows, idx_t w, idx_t ld,
                             const double* mean, const double* invstd, const double* gamma,
                             const double* beta) noexcept
    void pynn_bn_normalize_d(const double* x, double* y, idx_t rows, idx_t w, idx_t ld,
                             const double* mean, const double* invstd, const double* gamma,
                             const double* beta) noexcept
    void pynn_bn_gradsums_f(const float* dz, const float* x, idx_t rows, idx_t w, idx_t ld,
                            const double* mean, const double* invstd, double* s1,
                            double* s2) noexcept
    void pynn_bn_gradsums_d(const double* dz, const double* x, idx_t rows, idx_t w, idx_t ld,
                            const double* mean, const double* invstd, double* s1,
                            double* s2) noexcept
    void pynn_bn_dx_inplace_f(float* dx, const float* x, idx_t rows, idx_t w, idx_t ld,
                              const double* mean, const double* invstd, const double* coef,
                              const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_inplace_d(double* dx, const double* x, idx_t rows, idx_t w, idx_t ld,
                              const double* mean, const double* invstd, const double* coef,
                              const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_f(const float* dy, float* dx, const float* x, idx_t rows, idx_t w, idx_t ld,
                      const double* mean, const double* invstd, const double* coef,
                      const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_d(const double* dy, double* dx, const double* x, idx_t rows, idx_t w,
                      idx_t ld, const double* mean, const double* invstd, const double* coef,
                      const double* s1, const double* s2, double n) noexcept


cdef enum:
    # Rows per statistics block. Fixed (not one block per thread) so that the order of every
    # sum, hence the result, does not depend on the thread count. 64 rows keep the partials
    # scratch at 1/64 of the data and their serial reduction at ~1.5% of a pass.
    STAT_ROWS = 64
    # Elements per fused-activation block: 2048 (8 KB float32, 16 KB float64) is still in L1
    # when the activation rewrites what the normalization just wrote.
    ACT_ELEMS = 2048
    # Columns of a training pass's tile are a multiple of this: 16 columns are one 64-byte
    # cache line of float32 (two of float64), so two threads never write the same line.
    COL_UNIT = 16


cdef inline idx_t _ceil_div(idx_t a, idx_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline idx_t _block_end(idx_t b, idx_t rows, idx_t n) noexcept nogil:
    """One past the last row of block b (blocks of ``rows`` rows; the last may be short)."""
    return min(b * rows + rows, n)


cdef inline idx_t _act_rows(idx_t f) noexcept nogil:
    """Rows per fused-activation block: as many as fit in ACT_ELEMS, at least one."""
    return ACT_ELEMS // f if f < ACT_ELEMS else 1


cdef inline int bn_team(idx_t f, int n_threads) noexcept nogil:
    """Threads of a training pass over F columns: each takes a tile of whole COL_UNITs."""
    cdef idx_t units = _ceil_div(f, COL_UNIT)
    cdef int nt = n_threads if n_threads < units else <int>units
    return nt if nt >= 1 else 1


cdef inline idx_t _col_tile(idx_t t, idx_t nt, idx_t f) noexcept nogil:
    """First column of tile t of nt (tile t ends where t + 1 starts)."""
    return min((_ceil_div(f, COL_UNIT) * t // nt) * COL_UNIT, f)


cdef inline double _sum_blocks(const double* partial, idx_t nb, idx_t stride,
                               idx_t j) noexcept nogil:
    """Column j's total over the nb per-block partial sums, added in block order."""
    cdef double total = 0.0
    cdef idx_t b
    for b in range(nb):
        total = total + partial[b * stride + j]
    return total


cdef inline void _affine(const floating* g, const floating* bt, double* gd, double* bd,
                         idx_t lo, idx_t hi) noexcept nogil:
    """gamma and beta in double, columns lo..hi: converted once, not once per row."""
    cdef idx_t j
    for j in range(lo, hi):
        gd[j] = <double>g[j]
        bd[j] = <double>bt[j]


cdef inline void _normalize_rows(const floating* x, floating* y, const double* mp,
                                 const double* ip, const double* gd, const double* bd, idx_t lo,
                                 idx_t hi, idx_t c0, idx_t c1, idx_t f, int kind,
                                 floating p, floating q) noexcept nogil:
    """Rows lo..hi, columns c0..c1: y := act((x - mean) invstd gamma + beta) (gamma and beta
    in double), each row's segment activated right after it is written."""
    cdef idx_t r
    if floating is float:
        pynn_bn_normalize_f(x + lo * f + c0, y + lo * f + c0, hi - lo, c1 - c0, f, mp + c0,
                            ip + c0, gd + c0, bd + c0)
    else:
        pynn_bn_normalize_d(x + lo * f + c0, y + lo * f + c0, hi - lo, c1 - c0, f, mp + c0,
                            ip + c0, gd + c0, bd + c0)
    if kind == IDENTITY:
        return
    if c1 - c0 == f:  # whole rows: one span
        act_forward_span(kind, p, q, y + lo * f, y + lo * f, (hi - lo) * f)
    else:
        for r in range(lo, hi):
            act_forward_span(kind, p, q, y + r * f + c0, y + r * f + c0, c1 - c0)


cdef inline void _normalize(const floating* x, floating* y, const double* mp, const double* ip,
                            const floating* g, const floating* bt, double* affine, idx_t n,
                            idx_t f, int kind, floating p, floating q,
                            int n_threads) noexcept nogil:
    """y := act((x - mean) invstd gamma + beta) with given statistics (the evaluation
    forward), in blocks of _act_rows(f) whole rows shared out over the threads. ``affine``:
    2 f doubles of scratch for gamma and beta in double."""
    cdef idx_t rows = _act_rows(f)
    cdef idx_t k, nk = _ceil_div(n, rows)
    _affine(g, bt, affine, affine + f, 0, f)
    if n_threads <= 1:  # the same blocks, without a one-thread region's futex calls
        for k in range(nk):
            _normalize_rows(x, y, mp, ip, affine, affine + f, k * rows, _block_end(k, rows, n),
                            0, f, f, kind, p, q)
        return
    for k in prange(nk, schedule="static", num_threads=n_threads):
        _normalize_rows(x, y, mp, ip, affine, affine + f, k * rows, _block_end(k, rows, n), 0,
                        f, f, kind, p, q)


cdef inline idx_t bn_eval_scratch(idx_t f) noexcept nogil:
    """Doubles of scratch the evaluation forward needs: the running statistics as mean and
    invstd, and gamma and beta, all in double."""
    return 4 * f


cdef inline void bn_forward_eval_core(const floating* x, const floating* g, const floating* bt,
                                      const floating* rm, const floating* rv, double eps,
                                      floating* y, double* scratch, idx_t n, idx_t f, int kind,
                                      floating p, floating q, int n_threads) noexcept nogil:
    """Y := act((X - running_mean) / sqrt(running_var + eps) * gamma + beta), the statistics
    read as they are now: in double, 1/sqrt once per column, not once per element."""
    cdef double* mp = scratch
    cdef double* ip = scratch + f
    cdef idx_t j
    for j in range(f):
        mp[j] = <double>rm[j]
        ip[j] = 1.0 / sqrt(<double>rv[j] + eps)
    _normalize(x, y, mp, ip, g, bt, scratch + 2 * f, n, f, kind, p, q, n_threads)


cdef inline void _stat_pass(const floating* xp, const double* mp, double* scratch, idx_t nb,
                            idx_t n, idx_t f, idx_t c0, idx_t c1) noexcept nogil:
    """Columns c0..c1: every block's partial column sums into its scratch row, of x (mp NULL)
    or of (x - mp)^2."""
    cdef double* acc
    cdef const floating* x
    cdef idx_t b, j, rows
    cdef idx_t w = c1 - c0
    for b in range(nb):
        acc = scratch + b * f + c0
        x = xp + b * STAT_ROWS * f + c0
        rows = _block_end(b, STAT_ROWS, n) - b * STAT_ROWS
        for j in range(w):
            acc[j] = 0.0
        if floating is float:
            if mp == NULL:
                pynn_bn_colsum_f(x, rows, w, f, acc)
            else:
                pynn_bn_colsqdev_f(x, rows, w, f, mp + c0, acc)
        elif mp == NULL:
            pynn_bn_colsum_d(x, rows, w, f, acc)
        else:
            pynn_bn_colsqdev_d(x, rows, w, f, mp + c0, acc)


cdef inline idx_t bn_forward_scratch(idx_t n, idx_t f) noexcept nogil:
    """Doubles of scratch the training forward needs: one row of partial sums per block, and
    two rows for gamma and beta in double."""
    return (_ceil_div(n, STAT_ROWS) + 2) * f


cdef inline void bn_forward_cols(const floating* xp, const floating* g, const floating* bt,
                                 floating* rm, floating* rv, double momentum, double eps,
                                 floating* y, double* mp, double* ip, double* scratch, idx_t n,
                                 idx_t f, idx_t c0, idx_t c1, int kind, floating p,
                                 floating q) noexcept nogil:
    """The training forward of columns c0..c1: their statistics, running statistics and
    output, all from this thread (no other thread reads or writes these columns)."""
    cdef idx_t nb = _ceil_div(n, STAT_ROWS)
    cdef idx_t rows = _act_rows(c1 - c0)
    cdef double* gd = scratch + nb * f
    cdef double* bd = gd + f
    cdef idx_t j, k
    cdef double var
    # Pass 1: column sums -> mean.
    _stat_pass(xp, NULL, scratch, nb, n, f, c0, c1)
    for j in range(c0, c1):
        mp[j] = _sum_blocks(scratch, nb, f, j) / <double>n
    # Pass 2: sum of squared deviations from the mean (two-pass: no cancellation of
    # E[x^2] - E[x]^2 when |mean| >> std).
    _stat_pass(xp, mp, scratch, nb, n, f, c0, c1)
    for j in range(c0, c1):
        var = _sum_blocks(scratch, nb, f, j) / <double>n
        ip[j] = 1.0 / sqrt(var + eps)
        # torch's convention: normalize with the biased variance, remember the unbiased one
        rm[j] = <floating>((1.0 - momentum) * <double>rm[j] + momentum * mp[j])
        rv[j] = <floating>((1.0 - momentum) * <double>rv[j]
                           + momentum * var * <double>n / <double>(n - 1))
    _affine(g, bt, gd, bd, c0, c1)
    # Pass 3: normalize, scale, shift, activate, a few rows at a time while they are in L1.
    for k in range(_ceil_div(n, rows)):
        _normalize_rows(xp, y, mp, ip, gd, bd, k * rows, _block_end(k, rows, n), c0, c1, f,
                        kind, p, q)


cdef inline void bn_forward_train_core(const floating* xp, const floating* g, const floating* bt,
                                       floating* rm, floating* rv, double momentum, double eps,
                                       floating* y, double* mp, double* ip, double* scratch,
                                       idx_t n, idx_t f, int kind, floating p, floating q,
                                       int n_threads) noexcept nogil:
    """mean = X.mean(0); var = X.var(0); Y := act((X - mean) / sqrt(var + eps) * gamma + beta);
    the running statistics move by ``momentum`` (torch's convention). Threads take column
    tiles: each column's statistics are one thread's, so the passes need no barrier between
    them and no thread reads what another wrote."""
    cdef int nt = bn_team(f, n_threads)
    cdef int t
    if nt <= 1:  # one tile, without a one-thread region's futex calls
        bn_forward_cols(xp, g, bt, rm, rv, momentum, eps, y, mp, ip, scratch, n, f, 0, f, kind,
                        p, q)
        return
    for t in prange(nt, schedule="static", num_threads=nt):
        bn_forward_cols(xp, g, bt, rm, rv, momentum, eps, y, mp, ip, scratch, n, f,
                        _col_tile(t, nt, f), _col_tile(t + 1, nt, f), kind, p, q)


cdef inline idx_t bn_backward_scratch(idx_t n, idx_t f) noexcept nogil:
    """Doubles of scratch the backward needs: per block sum(dZ) and sum(dZ xhat), and one more
    row for the per-column coefficient gamma invstd / N."""
    return 2 * _ceil_div(n, STAT_ROWS) * f + f


cdef inline void bn_backward_cols(const floating* dyp, const floating* yp,
                                  const floating* xp, const floating* gamma, const double* mp,
                                  const double* ip, floating* dgp, floating* dbp, floating* dxp,
                                  double* scratch, idx_t n, idx_t f, idx_t c0, idx_t c1,
                                  int kind, floating p, floating q,
                                  bint accumulate) noexcept nogil:
    """The backward of columns c0..c1, all from this thread."""
    cdef idx_t nb = _ceil_div(n, STAT_ROWS)
    cdef idx_t w = c1 - c0
    cdef double dn = <double>n
    cdef double* coef = scratch + 2 * nb * f
    cdef const floating* z = dyp if yp == NULL else dxp
    cdef double* s1
    cdef double* s2
    cdef idx_t b, j, r, lo, hi
    # The sums pass, block by block: dZ = dY * act'(Y) is written into dX's own rows (the dX
    # pass turns it into dX in place), then summed while those rows are in L1.
    for b in range(nb):
        lo = b * STAT_ROWS
        hi = _block_end(b, STAT_ROWS, n)
        s1 = scratch + 2 * b * f + c0
        s2 = s1 + f
        for j in range(w):
            s1[j] = 0.0
            s2[j] = 0.0
        if yp != NULL:
            for r in range(lo, hi):
                act_backward_span(kind, p, q, dyp + r * f + c0, NULL, yp + r * f + c0,
                                  dxp + r * f + c0, w)
        if floating is float:
            pynn_bn_gradsums_f(z + lo * f + c0, xp + lo * f + c0, hi - lo, w, f, mp + c0,
                               ip + c0, s1, s2)
        else:
            pynn_bn_gradsums_d(z + lo * f + c0, xp + lo * f + c0, hi - lo, w, f, mp + c0,
                               ip + c0, s1, s2)
    # Reduce the partials into block 0's rows (column by column: read before written).
    for j in range(c0, c1):
        scratch[j] = _sum_blocks(scratch, nb, 2 * f, j)
        scratch[f + j] = _sum_blocks(scratch + f, nb, 2 * f, j)
        if dbp != NULL:
            dbp[j] = <floating>(<double>dbp[j] + scratch[j]) if accumulate else <floating>scratch[j]
        if dgp != NULL:
            dgp[j] = (<floating>(<double>dgp[j] + scratch[f + j]) if accumulate
                      else <floating>scratch[f + j])
        coef[j] = <double>gamma[j] * ip[j] / dn
    if yp != NULL:
        if floating is float:
            pynn_bn_dx_inplace_f(dxp + c0, xp + c0, n, w, f, mp + c0, ip + c0, coef + c0,
                                 scratch + c0, scratch + f + c0, dn)
        else:
            pynn_bn_dx_inplace_d(dxp + c0, xp + c0, n, w, f, mp + c0, ip + c0, coef + c0,
                                 scratch + c0, scratch + f + c0, dn)
    elif floating is float:
        pynn_bn_dx_f(dyp + c0, dxp + c0, xp + c0, n, w, f, mp + c0, ip + c0, coef + c0,
                     scratch + c0, scratch + f + c0, dn)
    else:
        pynn_bn_dx_d(dyp + c0, dxp + c0, xp + c0, n, w, f, mp + c0, ip + c0, coef + c0,
                     scratch + c0, scratch + f + c0, dn)


cdef inline void bn_backward_core(const floating* dyp, const floating* yp, const floating* xp,
                                  const floating* gamma, const double* mp, const double* ip,
                                  floating* dgp, floating* dbp, floating* dxp, double* scratch,
                                  idx_t n, idx_t f, int kind, floating p, floating q,
                                  int n_threads, bint accumulate) noexcept nogil:
    """dZ = dY * act'(Y); xhat = (X - mean) invstd; dbeta (+)= sum(dZ); dgamma (+)= sum(dZ xhat);
    dX := gamma invstd / N (N dZ - sum(dZ) - xhat sum(dZ xhat)).

    yp is NULL for the identity (dZ is dY); dgp and dbp may be NULL (frozen: the sums are still
    needed for dX, they are just not stored). ``accumulate``: the gradients add onto what they
    hold, else they are overwritten. Threads take column tiles, as in the forward."""
    cdef int nt = bn_team(f, n_threads)
    cdef int t
    if nt <= 1:  # one tile, without a one-thread region's futex calls
        bn_backward_cols(dyp, yp, xp, gamma, mp, ip, dgp, dbp, dxp, scratch, n, f, 0, f, kind,
                         p, q, accumulate)
        return
    for t in prange(nt, schedule="static", num_threads=nt):
        bn_backward_cols(dyp, yp, xp, gamma, mp, ip, dgp, dbp, dxp, scratch, n, f,
                         _col_tile(t, nt, f), _col_tile(t + 1, nt, f), kind, p, q, accumulate)
