# Row normalization's loops (LayerNorm, RMSNorm): per-row statistics over the features, shared
# by pynn._kernels.rownorm and, later, a compiled step: one copy. Arguments arrive checked and
# non-empty; scratch comes from the caller (sizes below).
#
# Threads take blocks of STAT_ROWS whole rows (a static share each): a row's statistics,
# output and input gradient are one thread's, computed by the same loop whatever the thread
# count. The parameter gradients are column sums over the rows: each block adds its rows into
# its own row of partial sums, and the partials are added in block order, so those too are the
# same for any thread count.
from cython.parallel cimport prange

from _types cimport floating, idx_t

cdef extern from "_rownorm.h" nogil:
    void pynn_rn_forward_f(const float* x, float* y, idx_t rows, idx_t f, double eps,
                           int center, const double* gd, const double* bd, double* mean,
                           double* invstd) noexcept
    void pynn_rn_forward_d(const double* x, double* y, idx_t rows, idx_t f, double eps,
                           int center, const double* gd, const double* bd, double* mean,
                           double* invstd) noexcept
    void pynn_rn_backward_f(const float* dy, const float* x, float* dx, idx_t rows, idx_t f,
                            int center, const double* gd, const double* mean,
                            const double* invstd, double* s1, double* s2) noexcept
    void pynn_rn_backward_d(const double* dy, const double* x, double* dx, idx_t rows,
                            idx_t f, int center, const double* gd, const double* mean,
                            const double* invstd, double* s1, double* s2) noexcept


cdef enum:
    # Rows per block: the unit of the threads' shares and of the parameter gradients' partial
    # sums (fixed, so the order of every sum depends on N alone).
    STAT_ROWS = 64


cdef inline idx_t rn_blocks(idx_t n) noexcept nogil:
    return (n + STAT_ROWS - 1) // STAT_ROWS


cdef inline idx_t rn_backward_scratch(idx_t n, idx_t f) noexcept nogil:
    """Doubles of scratch the backward needs: per block a row of partial sums of dbeta and one
    of dgamma."""
    return 2 * rn_blocks(n) * f


cdef inline void _forward_block(const floating* x, floating* y, idx_t b, idx_t n, idx_t f,
                                double eps, bint center, const double* gd, const double* bd,
                                double* mean, double* invstd) noexcept nogil:
    cdef idx_t lo = b * STAT_ROWS
    cdef idx_t rows = min(lo + STAT_ROWS, n) - lo
    if floating is float:
        pynn_rn_forward_f(x + lo * f, y + lo * f, rows, f, eps, center, gd, bd,
                          mean + lo if center else NULL, invstd + lo)
    else:
        pynn_rn_forward_d(x + lo * f, y + lo * f, rows, f, eps, center, gd, bd,
                          mean + lo if center else NULL, invstd + lo)


cdef inline void rn_forward_core(const floating* x, floating* y, idx_t n, idx_t f, double eps,
                                 const double* gd, const double* bd, double* mean,
                                 double* invstd, int n_threads) noexcept nogil:
    """Per row r: mean[r] and invstd[r] = 1 / sqrt(var_r + eps) (mean NULL: RMSNorm, invstd =
    1 / sqrt(mean(x_r^2) + eps)); y := (x - mean) invstd gamma + beta (gd, bd: gamma and beta in
    double)."""
    cdef idx_t b, nb = rn_blocks(n)
    cdef bint center = mean != NULL
    if n_threads <= 1 or nb == 1:  # the same blocks, without a parallel region
        for b in range(nb):
            _forward_block(x, y, b, n, f, eps, center, gd, bd, mean, invstd)
        return
    for b in prange(nb, schedule="static", num_threads=n_threads):
        _forward_block(x, y, b, n, f, eps, center, gd, bd, mean, invstd)


cdef inline void _backward_block(const floating* dy, const floating* x, floating* dx, idx_t b,
                                 idx_t n, idx_t f, bint center, const double* gd,
                                 const double* mean, const double* invstd, double* scratch,
                                 bint sum_db, bint sum_dg) noexcept nogil:
    cdef idx_t lo = b * STAT_ROWS
    cdef idx_t rows = min(lo + STAT_ROWS, n) - lo
    cdef double* s1 = scratch + 2 * b * f
    cdef double* s2 = s1 + f
    cdef idx_t j
    for j in range(2 * f):
        s1[j] = 0.0
    if floating is float:
        pynn_rn_backward_f(dy + lo * f, x + lo * f, dx + lo * f, rows, f, center, gd,
                           mean + lo if center else NULL, invstd + lo,
                           s1 if sum_db else NULL, s2 if sum_dg else NULL)
    else:
        pynn_rn_backward_d(dy + lo * f, x + lo * f, dx + lo * f, rows, f, center, gd,
                           mean + lo if center else NULL, invstd + lo,
                           s1 if sum_db else NULL, s2 if sum_dg else NULL)


cdef inline void rn_backward_core(const floating* dy, const floating* x, floating* dx, idx_t n,
                                  idx_t f, const double* gd, const double* mean,
                                  const double* invstd, floating* dg, floating* db,
                                  double* scratch, int n_threads,
                                  bint accumulate) noexcept nogil:
    """With xhat = (x - mean) invstd (mean NULL: RMSNorm, xhat = x invstd) and g = dy gamma:
    dx := invstd (g - mean(g) - xhat mean(g xhat)) (RMSNorm: no mean(g) term); dgamma (+)=
    sum over rows of dy xhat, dbeta (+)= sum of dy (dg, db NULL: not wanted). ``accumulate``:
    the gradients add onto what they hold, else they are overwritten."""
    cdef idx_t b, j, nb = rn_blocks(n)
    cdef bint center = mean != NULL
    cdef double s1, s2
    if n_threads <= 1 or nb == 1:
        for b in range(nb):
            _backward_block(dy, x, dx, b, n, f, center, gd, mean, invstd, scratch, db != NULL,
                            dg != NULL)
    else:
        for b in prange(nb, schedule="static", num_threads=n_threads):
            _backward_block(dy, x, dx, b, n, f, center, gd, mean, invstd, scratch, db != NULL,
                            dg != NULL)
    if dg == NULL and db == NULL:
        return
    for j in range(f):  # the blocks' partials, in block order
        s1 = 0.0
        s2 = 0.0
        for b in range(nb):
            s1 = s1 + scratch[2 * b * f + j]
            s2 = s2 + scratch[2 * b * f + f + j]
        if db != NULL:
            db[j] = <floating>(<double>db[j] + s1) if accumulate else <floating>s1
        if dg != NULL:
            dg[j] = <floating>(<double>dg[j] + s2) if accumulate else <floating>s2
