# The losses' loops (value and gradient in one pass), shared by pynn._kernels.losses (one kernel
# per call) and pynn._kernels.train_step (a whole training step in one call): one copy, so the two
# give bit-identical results. Arguments arrive checked and non-empty.
#
# Each core returns the *weighted sum* of the loss terms, sum_r w_r l_r (w_r = wp[r], or 1 when
# wp is NULL), and writes gp := scale * its gradient and lp := the weighted terms, each unless
# NULL; the caller picks scale (1 / the mean's denominator, or 1 for a sum) and divides the
# value, so one loop serves every reduction and weighting.
from cython.parallel cimport prange
from libc.math cimport exp, log, log1p, fabs

from _types cimport floating, idx_t
from _activations cimport pynn_softmax_ce_rows_f


cdef inline double _mse_term(const floating* yp, const floating* tp, const double* wp,
                             floating* gp, floating* lp, idx_t i, idx_t k,
                             double scale) noexcept nogil:
    """Element i of mse_core: its weighted term, and its gradient and term written."""
    cdef double d = <double>yp[i] - <double>tp[i]
    cdef double wr = wp[i // k] if wp != NULL else 1.0
    if gp != NULL:
        gp[i] = <floating>(2.0 * d * wr * scale)
    if lp != NULL:
        lp[i] = <floating>(wr * d * d)
    return wr * d * d


cdef inline double mse_core(const floating* yp, const floating* tp, const double* wp,
                            floating* gp, floating* lp, idx_t size, idx_t k, double scale,
                            int n_threads) noexcept nogil:
    """sum w_r (y - t)**2 over the size = N k elements; G := 2 (y - t) w_r scale;
    L := w_r (y - t)**2. Flat loops: rows may be short (K = 1) or few (N = 1); the flat index
    splits evenly either way."""
    cdef idx_t i
    cdef double s = 0.0
    if n_threads <= 1:
        # the same sum in the same order as a one-thread reduction (0 + its partial), without
        # a parallel region's barrier wake-ups (~0.6 us, a small model's whole loss)
        for i in range(size):
            s += _mse_term(yp, tp, wp, gp, lp, i, k, scale)
        return s
    for i in prange(size, schedule="static", num_threads=n_threads):
        s += _mse_term(yp, tp, wp, gp, lp, i, k, scale)
    return s


cdef inline double _bce_term(const floating* zp, const floating* tp, const double* wp,
                             const double* pp, floating* gp, floating* lp, idx_t i, idx_t k,
                             double scale) noexcept nogil:
    """Element i of bce_core: its weighted term, and its gradient and term written."""
    cdef double z = <double>zp[i]
    cdef double t = <double>tp[i]
    cdef double wr = wp[i // k] if wp != NULL else 1.0
    # exp of a non-positive number only: no overflow for any logit, and the same e serves the
    # log term and the sigmoid (one exp per element).
    cdef double e = exp(-fabs(z))
    cdef double sig, lw = 1.0, l
    if pp == NULL:
        l = (z if z > 0.0 else 0.0) - z * t + log1p(e)
    else:
        # softplus(-z) = max(-z, 0) + log1p(exp(-|z|)), torch's stable form
        lw = 1.0 + (pp[i % k] - 1.0) * t
        l = (1.0 - t) * z + lw * ((-z if z < 0.0 else 0.0) + log1p(e))
    if lp != NULL:
        lp[i] = <floating>(wr * l)
    if gp != NULL:
        sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
        if pp == NULL:
            gp[i] = <floating>((sig - t) * wr * scale)
        else:
            # d/dz = (1 - t) - lw sigmoid(-z), and sigmoid(-z) = 1 - sigmoid(z)
            gp[i] = <floating>(((1.0 - t) - lw * (1.0 - sig)) * wr * scale)
    return wr * l


cdef inline double bce_core(const floating* zp, const floating* tp, const double* wp,
                            const double* pp, floating* gp, floating* lp, idx_t size, idx_t k,
                            double scale, int n_threads) noexcept nogil:
    """sum w_r l(z, t), l = (1 - t) z + (1 + (p_c - 1) t) softplus(-z) with torch's pos_weight
    p (per column c; pp NULL: l = max(z, 0) - z t + log1p(exp(-|z|))); G := dl/dz w_r scale;
    L := w_r l."""
    cdef idx_t i
    cdef double s = 0.0
    if n_threads <= 1:  # as in mse_core
        for i in range(size):
            s += _bce_term(zp, tp, wp, pp, gp, lp, i, k, scale)
        return s
    for i in prange(size, schedule="static", num_threads=n_threads):
        s += _bce_term(zp, tp, wp, pp, gp, lp, i, k, scale)
    return s


cdef inline double softmax_ce_core(const floating* zp, const Py_ssize_t* labels,
                                   const double* wp, floating* gp, floating* lp, idx_t n,
                                   idx_t k, double scale, int n_threads) noexcept nogil:
    """sum_r w_r (logsumexp(z_r) - z_r[label_r]); G := (softmax(z) - onehot(label)) w_r scale;
    L[r] := w_r l_r."""
    cdef idx_t r, j, lab
    cdef double m, e, sumexp, lse, inv, zl, l, wr, s = 0.0
    cdef floating* grow
    cdef const floating* zrow
    cdef idx_t c, lo, hi
    cdef int t
    if floating is float:
        # float32: vectorized exp of the max-shifted logits (pynn_softmax_ce_rows_f), one
        # contiguous block of rows per thread
        if n_threads <= 1:
            s = pynn_softmax_ce_rows_f(zp, labels, wp, gp, lp, n, k, scale)
        else:
            c = (n + n_threads - 1) // n_threads
            for t in prange(n_threads, schedule="static", num_threads=n_threads):
                lo = t * c
                hi = min(lo + c, n)
                if lo < hi:
                    s += pynn_softmax_ce_rows_f(zp + lo * k, labels + lo,
                                                wp + lo if wp != NULL else NULL,
                                                gp + lo * k if gp != NULL else NULL,
                                                lp + lo if lp != NULL else NULL,
                                                hi - lo, k, scale)
    else:
        # float64: libm exp (1e-12 accuracy); a loop over rows
        for r in prange(n, schedule="static", num_threads=n_threads):
            zrow = zp + r * k
            lab = labels[r]
            wr = wp[r] if wp != NULL else 1.0
            m = <double>zrow[0]
            for j in range(1, k):
                if <double>zrow[j] > m:
                    m = <double>zrow[j]
            sumexp = 0.0
            if gp != NULL:
                grow = gp + r * k
                # One exp per element: park exp(z - max) in G, rescale once the row sum
                # is known.
                for j in range(k):
                    e = exp(<double>zrow[j] - m)
                    sumexp = sumexp + e
                    grow[j] = <floating>e
                inv = wr * scale / sumexp
                for j in range(k):
                    grow[j] = <floating>(<double>grow[j] * inv)
            else:
                for j in range(k):
                    sumexp = sumexp + exp(<double>zrow[j] - m)
            lse = log(sumexp)
            zl = <double>zrow[lab] - m
            l = wr * (lse - zl)
            s += l
            if lp != NULL:
                lp[r] = <floating>l
            if gp != NULL:
                # The label entry recomputed in double: p - 1 cancels when p is close to
                # 1, so it must not start from the value parked above.
                grow[lab] = <floating>((exp(zl - lse) - 1.0) * wr * scale)
    return s


# The robust regression losses' kinds (pynn/backend/codes.py's ROBUST_LOSSES, mirrored).
cdef enum:
    ROBUST_L1 = 0
    ROBUST_HUBER = 1
    ROBUST_SMOOTH_L1 = 2


cdef inline double _sign(double d) noexcept nogil:
    """sign(d), 0 at 0, NaN at NaN (as np.sign: the gradient of a NaN term stays NaN)."""
    if d != d:
        return d
    return (d > 0.0) - (d < 0.0)


cdef inline double _robust_term(int kind, double c, const floating* yp, const floating* tp,
                                const double* wp, floating* gp, floating* lp, idx_t i, idx_t k,
                                double scale) noexcept nogil:
    """Element i of robust_core: its weighted term, and its gradient and term written. torch's
    formulas, d = y - t: L1 |d|; Huber (c = delta) d^2 / 2 below delta, delta (|d| - delta / 2)
    from it; smooth L1 (c = beta > 0) d^2 / (2 beta) below beta, |d| - beta / 2 from it."""
    cdef double d = <double>yp[i] - <double>tp[i]
    cdef double a = fabs(d)
    cdef double wr = wp[i // k] if wp != NULL else 1.0
    cdef double l, g
    if kind == ROBUST_L1:
        l = a
        g = _sign(d)
    elif kind == ROBUST_HUBER:
        l = 0.5 * d * d if a < c else c * (a - 0.5 * c)
        g = d if a <= c else c * _sign(d)
    else:
        l = 0.5 * d * d / c if a < c else a - 0.5 * c
        g = d / c if a < c else _sign(d)
    if gp != NULL:
        gp[i] = <floating>(g * wr * scale)
    if lp != NULL:
        lp[i] = <floating>(wr * l)
    return wr * l


cdef inline double robust_core(int kind, double c, const floating* yp, const floating* tp,
                               const double* wp, floating* gp, floating* lp, idx_t size, idx_t k,
                               double scale, int n_threads) noexcept nogil:
    """sum w_r l(y - t) over the size = N k elements, l the robust loss ``kind`` with its
    parameter c (Huber's delta, smooth L1's beta); G := dl/dy w_r scale; L := w_r l. Flat
    loops, as mse_core's."""
    cdef idx_t i
    cdef double s = 0.0
    if n_threads <= 1:  # as in mse_core
        for i in range(size):
            s += _robust_term(kind, c, yp, tp, wp, gp, lp, i, k, scale)
        return s
    for i in prange(size, schedule="static", num_threads=n_threads):
        s += _robust_term(kind, c, yp, tp, wp, gp, lp, i, k, scale)
    return s


cdef inline double _smooth_ce_row(const floating* zrow, idx_t lab, double sr, const double* cw,
                                  double cw_sum, double eps, floating* grow, floating* lrow,
                                  idx_t k, double scale) noexcept nogil:
    """One row of softmax_ce_smooth_core: its term, and its gradient and term written."""
    cdef idx_t j
    cdef double m = <double>zrow[0], sumexp = 0.0, lse, smooth = 0.0, cy, p, gscale, l
    for j in range(1, k):
        if <double>zrow[j] > m:
            m = <double>zrow[j]
    for j in range(k):
        sumexp = sumexp + exp(<double>zrow[j] - m)
    lse = log(sumexp)  # logsumexp - m; every -log p_c is lse - (z_c - m)
    for j in range(k):
        smooth = smooth + (cw[j] if cw != NULL else 1.0) * (lse - (<double>zrow[j] - m))
    cy = cw[lab] if cw != NULL else 1.0
    l = sr * ((1.0 - eps) * cy * (lse - (<double>zrow[lab] - m)) + eps / <double>k * smooth)
    if lrow != NULL:
        lrow[0] = <floating>l
    if grow != NULL:
        gscale = sr * scale
        for j in range(k):
            p = exp((<double>zrow[j] - m) - lse)
            grow[j] = <floating>(gscale * ((1.0 - eps) * cy * p
                                           + eps / <double>k * (cw_sum * p
                                                                 - (cw[j] if cw != NULL else 1.0))))
        # the label entry, its p - 1 as -(the others' exps) / sumexp: no cancellation
        p = exp((<double>zrow[lab] - m) - lse)
        grow[lab] = <floating>(gscale * ((1.0 - eps) * cy
                                         * -((sumexp - exp(<double>zrow[lab] - m)) / sumexp)
                                         + eps / <double>k * (cw_sum * p - cy)))
    return l


cdef inline double softmax_ce_smooth_core(const floating* zp, const Py_ssize_t* labels,
                                          const double* sp, const double* cw, double eps,
                                          floating* gp, floating* lp, idx_t n, idx_t k,
                                          double scale, int n_threads) noexcept nogil:
    """Softmax cross-entropy with label smoothing eps, as torch computes it: row r's term is
    s_r ((1 - eps) c_y (lse_r - z_ry) + eps / k sum_c c_c (lse_r - z_rc)), s_r its sample
    weight (sp, or 1), c the class weights (cw, or 1), y its label; G := its gradient times
    ``scale``, s_r ((1 - eps) c_y (p - onehot) + eps / k (sum(c) p - c)); L[r] := the term.
    Returns the sum of the terms. In double with libm exp, both dtypes."""
    cdef idx_t r, j
    cdef double s = 0.0, cw_sum = 0.0
    if cw != NULL:
        for j in range(k):
            cw_sum = cw_sum + cw[j]
    else:
        cw_sum = <double>k
    if n_threads <= 1:
        for r in range(n):
            s += _smooth_ce_row(zp + r * k, labels[r], sp[r] if sp != NULL else 1.0, cw, cw_sum,
                                eps, gp + r * k if gp != NULL else NULL,
                                lp + r if lp != NULL else NULL, k, scale)
        return s
    for r in prange(n, schedule="static", num_threads=n_threads):
        s += _smooth_ce_row(zp + r * k, labels[r], sp[r] if sp != NULL else 1.0, cw, cw_sum, eps,
                            gp + r * k if gp != NULL else NULL, lp + r if lp != NULL else NULL,
                            k, scale)
    return s
