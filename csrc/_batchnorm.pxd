# Batch normalization's loops, shared by pynn._kernels.batchnorm (one kernel per call) and
# pynn._kernels.step (a whole training step in one call): one copy, so the two give
# bit-identical results. How the statistics are blocked, and why: batchnorm.pyx's docstring.
# Arguments arrive checked and non-empty; scratch comes from the caller (sizes below).
from cython.parallel cimport prange
from libc.math cimport sqrt

from _types cimport floating, idx_t
from _act cimport IDENTITY, act_backward_span, act_forward_span

cdef extern from "_bn_simd.h" nogil:
    # Rows of a block; cloned per CPU feature, see the header.
    void pynn_bn_colsum_f(const float* x, idx_t rows, idx_t f, double* acc) noexcept
    void pynn_bn_colsum_d(const double* x, idx_t rows, idx_t f, double* acc) noexcept
    void pynn_bn_colsqdev_f(const float* x, idx_t rows, idx_t f, const double* mean,
                            double* acc) noexcept
    void pynn_bn_colsqdev_d(const double* x, idx_t rows, idx_t f, const double* mean,
                            double* acc) noexcept
    void pynn_bn_normalize_f(const float* x, float* y, idx_t rows, idx_t f, const double* mean,
                             const double* invstd, const float* gamma,
                             const float* beta) noexcept
    void pynn_bn_normalize_d(const double* x, double* y, idx_t rows, idx_t f,
                             const double* mean, const double* invstd, const double* gamma,
                             const double* beta) noexcept
    void pynn_bn_gradsums_f(const float* dz, const float* x, idx_t rows, idx_t f,
                            const double* mean, const double* invstd, double* s1,
                            double* s2) noexcept
    void pynn_bn_gradsums_d(const double* dz, const double* x, idx_t rows, idx_t f,
                            const double* mean, const double* invstd, double* s1,
                            double* s2) noexcept
    void pynn_bn_dx_inplace_f(float* dx, const float* x, idx_t rows, idx_t f,
                              const double* mean, const double* invstd, const double* coef,
                              const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_inplace_d(double* dx, const double* x, idx_t rows, idx_t f,
                              const double* mean, const double* invstd, const double* coef,
                              const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_f(const float* dy, float* dx, const float* x, idx_t rows, idx_t f,
                      const double* mean, const double* invstd, const double* coef,
                      const double* s1, const double* s2, double n) noexcept
    void pynn_bn_dx_d(const double* dy, double* dx, const double* x, idx_t rows, idx_t f,
                      const double* mean, const double* invstd, const double* coef,
                      const double* s1, const double* s2, double n) noexcept


cdef enum:
    # Rows per statistics block. Fixed (not one block per thread) so that the order of every
    # sum, hence the result, does not depend on the thread count. 64 rows keep the partials
    # scratch at 1/64 of the data and their serial reduction at ~1.5% of a pass.
    STAT_ROWS = 64
    # Elements per fused-activation block: 2048 (8 KB float32, 16 KB float64) is still in L1
    # when the activation rewrites what the normalization just wrote.
    ACT_ELEMS = 2048


cdef inline idx_t _ceil_div(idx_t a, idx_t b) noexcept nogil:
    return (a + b - 1) // b


cdef inline idx_t _block_end(idx_t b, idx_t rows, idx_t n) noexcept nogil:
    """One past the last row of block b (blocks of ``rows`` rows; the last may be short)."""
    return min(b * rows + rows, n)


cdef inline idx_t _act_rows(idx_t f) noexcept nogil:
    """Rows per fused-activation block: as many as fit in ACT_ELEMS, at least one. Depends on
    F only, so each element goes through the same span call whatever the thread count."""
    return ACT_ELEMS // f if f < ACT_ELEMS else 1


cdef inline double _sum_blocks(const double* partial, idx_t nb, idx_t stride,
                               idx_t j) noexcept nogil:
    """Column j's total over the nb per-block partial sums, added in block order."""
    cdef double total = 0.0
    cdef idx_t b
    for b in range(nb):
        total = total + partial[b * stride + j]
    return total


cdef inline void _normalize(const floating* x, floating* y, const double* mp, const double* ip,
                            const floating* g, const floating* bt, idx_t n, idx_t f, int kind,
                            floating p, int n_threads) noexcept nogil:
    """y := act((x - mean) invstd gamma + beta), in blocks of _act_rows(f) rows: each block is
    normalized, then (unless identity) activated in place while still in cache."""
    cdef idx_t rows = _act_rows(f)
    cdef idx_t k, nk = _ceil_div(n, rows)
    if n_threads <= 1:  # the same blocks, without a one-thread region's futex calls
        for k in range(nk):
            _normalize_block(x, y, mp, ip, g, bt, k * rows, _block_end(k, rows, n), f, kind, p)
        return
    for k in prange(nk, schedule="static", num_threads=n_threads):
        _normalize_block(x, y, mp, ip, g, bt, k * rows, _block_end(k, rows, n), f, kind, p)


cdef inline void _normalize_block(const floating* x, floating* y, const double* mp,
                                  const double* ip, const floating* g, const floating* bt,
                                  idx_t lo, idx_t hi, idx_t f, int kind,
                                  floating p) noexcept nogil:
    if floating is float:
        pynn_bn_normalize_f(x + lo * f, y + lo * f, hi - lo, f, mp, ip, g, bt)
    else:
        pynn_bn_normalize_d(x + lo * f, y + lo * f, hi - lo, f, mp, ip, g, bt)
    if kind != IDENTITY:
        act_forward_span(kind, p, y + lo * f, y + lo * f, (hi - lo) * f)


cdef inline void _stat_block(const floating* xp, const double* mp, double* scratch, idx_t b,
                             idx_t n, idx_t f) noexcept nogil:
    """Block b's partial column sums into its scratch row: of x (mp NULL) or of (x - mp)^2."""
    cdef double* acc = scratch + b * f
    cdef idx_t j
    cdef idx_t lo = b * STAT_ROWS
    cdef idx_t rows = _block_end(b, STAT_ROWS, n) - lo
    for j in range(f):
        acc[j] = 0.0
    if floating is float:
        if mp == NULL:
            pynn_bn_colsum_f(xp + lo * f, rows, f, acc)
        else:
            pynn_bn_colsqdev_f(xp + lo * f, rows, f, mp, acc)
    else:
        if mp == NULL:
            pynn_bn_colsum_d(xp + lo * f, rows, f, acc)
        else:
            pynn_bn_colsqdev_d(xp + lo * f, rows, f, mp, acc)


cdef inline void _stat_pass(const floating* xp, const double* mp, double* scratch, idx_t nb,
                            idx_t n, idx_t f, int n_threads) noexcept nogil:
    """Every block's partial sums (``_stat_block``), the blocks shared out over the threads."""
    cdef idx_t b
    if n_threads <= 1:  # the same blocks, without a one-thread region's futex calls
        for b in range(nb):
            _stat_block(xp, mp, scratch, b, n, f)
    else:
        for b in prange(nb, schedule="static", num_threads=n_threads):
            _stat_block(xp, mp, scratch, b, n, f)


cdef inline idx_t bn_forward_scratch(idx_t n, idx_t f) noexcept nogil:
    """Doubles of scratch the training forward needs: one row of partial sums per block."""
    return _ceil_div(n, STAT_ROWS) * f


cdef inline void bn_forward_train_core(const floating* xp, const floating* g, const floating* bt,
                                       floating* rm, floating* rv, double momentum, double eps,
                                       floating* y, double* mp, double* ip, double* scratch,
                                       idx_t n, idx_t f, int kind, floating p,
                                       int n_threads) noexcept nogil:
    """mean = X.mean(0); var = X.var(0); Y := act((X - mean) / sqrt(var + eps) * gamma + beta);
    the running statistics move by ``momentum`` (torch's convention)."""
    cdef idx_t nb = _ceil_div(n, STAT_ROWS)
    cdef idx_t j
    cdef double var
    # Pass 1: column sums -> mean.
    _stat_pass(xp, NULL, scratch, nb, n, f, n_threads)
    for j in range(f):
        mp[j] = _sum_blocks(scratch, nb, f, j) / <double>n
    # Pass 2: sum of squared deviations from the mean (two-pass: no cancellation of
    # E[x^2] - E[x]^2 when |mean| >> std).
    _stat_pass(xp, mp, scratch, nb, n, f, n_threads)
    for j in range(f):
        var = _sum_blocks(scratch, nb, f, j) / <double>n
        ip[j] = 1.0 / sqrt(var + eps)
        # torch's convention: normalize with the biased variance, remember the unbiased one
        rm[j] = <floating>((1.0 - momentum) * <double>rm[j] + momentum * mp[j])
        rv[j] = <floating>((1.0 - momentum) * <double>rv[j]
                           + momentum * var * <double>n / <double>(n - 1))
    # Pass 3: normalize, scale, shift, activate.
    _normalize(xp, y, mp, ip, g, bt, n, f, kind, p, n_threads)


cdef inline void _block_sums(int kind, floating p, const floating* dy, const floating* y,
                             const floating* x, const double* mp, const double* ip,
                             floating* zb, idx_t zrows, double* acc1, double* acc2, idx_t lo,
                             idx_t hi, idx_t f) noexcept nogil:
    """acc1[j] := sum of dz[r, j] and acc2[j] := sum of dz[r, j] xhat[r, j] over rows lo..hi.

    dz = dy * act'(y), recomputed ``zrows`` rows at a time into the L1-sized scratch zb; y NULL
    means the identity: dz is dy itself and zb is not used."""
    cdef idx_t r0, r1, j
    cdef const floating* z
    for j in range(f):
        acc1[j] = 0.0
        acc2[j] = 0.0
    r0 = lo
    while r0 < hi:
        r1 = min(r0 + zrows, hi)
        if y != NULL:
            act_backward_span(kind, p, dy + r0 * f, NULL, y + r0 * f, zb, (r1 - r0) * f)
        z = zb if y != NULL else dy + r0 * f
        if floating is float:
            pynn_bn_gradsums_f(z, x + r0 * f, r1 - r0, f, mp, ip, acc1, acc2)
        else:
            pynn_bn_gradsums_d(z, x + r0 * f, r1 - r0, f, mp, ip, acc1, acc2)
        r0 = r1


cdef inline void _dx_rows(int kind, floating p, const floating* dy, const floating* y,
                          const floating* x, const double* mp, const double* ip,
                          const double* coef, const double* s1, const double* s2, double dn,
                          floating* dx, idx_t lo, idx_t hi, idx_t f) noexcept nogil:
    """Rows lo..hi: dx := coef (N dz - s1 - xhat s2). With an activation (y not NULL) dz is
    first written into dx's own rows and rewritten in place; each element is read before it
    is written."""
    if y != NULL:
        act_backward_span(kind, p, dy + lo * f, NULL, y + lo * f, dx + lo * f, (hi - lo) * f)
        if floating is float:
            pynn_bn_dx_inplace_f(dx + lo * f, x + lo * f, hi - lo, f, mp, ip, coef, s1, s2, dn)
        else:
            pynn_bn_dx_inplace_d(dx + lo * f, x + lo * f, hi - lo, f, mp, ip, coef, s1, s2, dn)
    elif floating is float:
        pynn_bn_dx_f(dy + lo * f, dx + lo * f, x + lo * f, hi - lo, f, mp, ip, coef, s1, s2, dn)
    else:
        pynn_bn_dx_d(dy + lo * f, dx + lo * f, x + lo * f, hi - lo, f, mp, ip, coef, s1, s2, dn)


cdef inline void _thread_sums(int t, idx_t bpt, idx_t nb, int kind, floating p,
                              const floating* dyp, const floating* yp, const floating* xp,
                              const double* mp, const double* ip, floating* zbuf, idx_t zrows,
                              double* scratch, idx_t n, idx_t f) noexcept nogil:
    """Thread t's statistics blocks (bpt of them) of the backward's sums pass."""
    cdef idx_t b
    for b in range(t * bpt, min(t * bpt + bpt, nb)):
        _block_sums(kind, p, dyp, yp, xp, mp, ip,
                    zbuf + t * zrows * f if zbuf != NULL else NULL, zrows,
                    scratch + 2 * b * f, scratch + 2 * b * f + f,
                    b * STAT_ROWS, _block_end(b, STAT_ROWS, n), f)


cdef inline int bn_backward_team(idx_t n, int n_threads) noexcept nogil:
    """Threads of the backward's sums pass: threads take whole statistics blocks."""
    cdef idx_t nb = _ceil_div(n, STAT_ROWS)
    cdef int nt = n_threads if n_threads < nb else <int>nb
    return nt if nt >= 1 else 1


cdef inline idx_t bn_backward_zrows(idx_t f) noexcept nogil:
    """Rows of dZ each backward thread recomputes at a time (its scratch: zrows * f elements)."""
    return min(_act_rows(f), <idx_t>STAT_ROWS)


cdef inline idx_t bn_backward_scratch(idx_t n, idx_t f) noexcept nogil:
    """Doubles of scratch the backward needs: per block sum(dZ) and sum(dZ xhat), and one more
    row for the per-column coefficient gamma invstd / N."""
    return 2 * _ceil_div(n, STAT_ROWS) * f + f


cdef inline void bn_backward_core(const floating* dyp, const floating* yp, const floating* xp,
                                  const floating* gamma, const double* mp, const double* ip,
                                  floating* dgp, floating* dbp, floating* dxp, double* scratch,
                                  floating* zbuf, idx_t n, idx_t f, int kind, floating p,
                                  int n_threads, bint accumulate) noexcept nogil:
    """dZ = dY * act'(Y); xhat = (X - mean) invstd; dbeta (+)= sum(dZ); dgamma (+)= sum(dZ xhat);
    dX := gamma invstd / N (N dZ - sum(dZ) - xhat sum(dZ xhat)).

    yp is NULL for the identity (dZ is dY), else zbuf holds bn_backward_team(n, n_threads) *
    bn_backward_zrows(f) * f elements; dgp and dbp may be NULL (frozen: the sums are still
    needed for dX, they are just not stored). ``accumulate``: the gradients add onto what they
    hold, else they are overwritten."""
    cdef idx_t nb = _ceil_div(n, STAT_ROWS)
    cdef int nt = bn_backward_team(n, n_threads)
    cdef idx_t bpt = _ceil_div(nb, nt)
    cdef idx_t zrows = bn_backward_zrows(f)
    cdef idx_t arows = _act_rows(f)
    cdef double dn = <double>n
    cdef double* coef = scratch + 2 * nb * f
    cdef idx_t b, k, j, lo, hi
    cdef int t
    # The sums pass: threads take whole statistics blocks (bpt each), so each thread's dZ
    # scratch is indexed by the prange variable, never by omp_get_thread_num().
    if nt <= 1:  # the same blocks, without a one-thread region's futex calls
        _thread_sums(0, bpt, nb, kind, p, dyp, yp, xp, mp, ip, zbuf, zrows, scratch, n, f)
    else:
        for t in prange(nt, schedule="static", num_threads=nt):
            _thread_sums(t, bpt, nb, kind, p, dyp, yp, xp, mp, ip, zbuf, zrows, scratch, n, f)
    # Reduce the partials into block 0's rows (read before written: block 0 comes first).
    for j in range(f):
        scratch[j] = _sum_blocks(scratch, nb, 2 * f, j)
        scratch[f + j] = _sum_blocks(scratch + f, nb, 2 * f, j)
    for j in range(f):
        if dbp != NULL:
            dbp[j] = <floating>(<double>dbp[j] + scratch[j]) if accumulate else <floating>scratch[j]
        if dgp != NULL:
            dgp[j] = (<floating>(<double>dgp[j] + scratch[f + j]) if accumulate
                      else <floating>scratch[f + j])
        coef[j] = <double>gamma[j] * ip[j] / dn
    if n_threads <= 1:
        for k in range(_ceil_div(n, arows)):
            _dx_rows(kind, p, dyp, yp, xp, mp, ip, coef, scratch, scratch + f, dn, dxp,
                     k * arows, _block_end(k, arows, n), f)
    else:
        for k in prange(_ceil_div(n, arows), schedule="static", num_threads=n_threads):
            lo = k * arows
            hi = _block_end(k, arows, n)
            _dx_rows(kind, p, dyp, yp, xp, mp, ip, coef, scratch, scratch + f, dn, dxp, lo, hi,
                     f)
