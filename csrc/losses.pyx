"""pynn._kernels.losses: loss value and gradient in one pass over the data.

Every kernel returns the *weighted sum* of the per-element (per-row for cross-entropy) losses,
sum_r w_r l_r, and writes the gradient of ``scale`` times that sum; the caller picks ``scale``
(1 / the mean's denominator, or 1 for a sum), so one loop serves every reduction. ``W`` holds
the row weights (sample weights times class weights) or is None (every weight 1); ``L``, unless
None, receives each weighted loss term (reduction="none").

Every sum is accumulated in double whatever the data dtype (float32 logits summed over 10^6
elements in float32 would lose digits). The gradient is computed in double and rounded once when
stored, exactly like the NumPy reference. ``G`` may be None: then only the value is computed.
"""
from cython.parallel cimport prange
from libc.math cimport exp, log, log1p, fabs

from _types cimport floating, idx_t
from _act cimport pynn_softmax_ce_rows_f
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


def mse_loss(const floating[:, ::1] Y, const floating[:, ::1] T, object W, object G, object L,
             double scale, int n_threads):
    """sum_rk w_r (y - t)**2; G := 2 (y - t) w_r scale unless None; L := w_r (y - t)**2."""
    cdef idx_t k = Y.shape[1]
    cdef idx_t size = Y.shape[0] * k
    cdef idx_t i
    cdef double d, wr, s = 0.0
    cdef const double[::1] w
    cdef const double* wp = NULL
    cdef floating[:, ::1] g
    cdef floating[:, ::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const floating* yp
    cdef const floating* tp
    if size == 0:
        return 0.0
    yp = &Y[0, 0]
    tp = &T[0, 0]
    if W is not None:
        w = W
        wp = &w[0]
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0, 0]
    # Flat loop: rows may be short (K = 1) or few (N = 1); the flat index splits evenly either way.
    with nogil:
        for i in prange(size, schedule="static", num_threads=n_threads):
            d = <double>yp[i] - <double>tp[i]
            wr = wp[i // k] if wp != NULL else 1.0
            if gp != NULL:
                gp[i] = <floating>(2.0 * d * wr * scale)
            if lp != NULL:
                lp[i] = <floating>(wr * d * d)
            s += wr * d * d
    return s


def bce_with_logits_loss(const floating[:, ::1] Z, const floating[:, ::1] T, object W,
                         object P, object G, object L, double scale, int n_threads):
    """sum_rk w_r l(z, t) with l = (1 - t) z + (1 + (p_k - 1) t) softplus(-z) (torch's
    pos_weight p, per column; P None: l = max(z, 0) - z t + log1p(exp(-|z|)));
    G := ((1 - t) - (1 + (p - 1) t) sigmoid(-z)) w_r scale unless None; L := w_r l."""
    cdef idx_t k = Z.shape[1]
    cdef idx_t size = Z.shape[0] * k
    cdef idx_t i
    cdef double z, t, e, sig, lw, sp, l, wr, s = 0.0
    cdef const double[::1] w
    cdef const double[::1] pw
    cdef const double* wp = NULL
    cdef const double* pp = NULL
    cdef floating[:, ::1] g
    cdef floating[:, ::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const floating* zp
    cdef const floating* tp
    if size == 0:
        return 0.0
    zp = &Z[0, 0]
    tp = &T[0, 0]
    if W is not None:
        w = W
        wp = &w[0]
    if P is not None:
        pw = P
        pp = &pw[0]
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0, 0]
    with nogil:
        for i in prange(size, schedule="static", num_threads=n_threads):
            z = <double>zp[i]
            t = <double>tp[i]
            wr = wp[i // k] if wp != NULL else 1.0
            # exp of a non-positive number only: no overflow for any logit, and the same e
            # serves the log term and the sigmoid (one exp per element).
            e = exp(-fabs(z))
            if pp == NULL:
                l = (z if z > 0.0 else 0.0) - z * t + log1p(e)
            else:
                # softplus(-z) = max(-z, 0) + log1p(exp(-|z|)), torch's stable form
                lw = 1.0 + (pp[i % k] - 1.0) * t
                sp = (-z if z < 0.0 else 0.0) + log1p(e)
                l = (1.0 - t) * z + lw * sp
            s += wr * l
            if lp != NULL:
                lp[i] = <floating>(wr * l)
            if gp != NULL:
                sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
                if pp == NULL:
                    gp[i] = <floating>((sig - t) * wr * scale)
                else:
                    # d/dz = (1 - t) - lw sigmoid(-z), and sigmoid(-z) = 1 - sigmoid(z)
                    gp[i] = <floating>(((1.0 - t) - lw * (1.0 - sig)) * wr * scale)
    return s


def softmax_cross_entropy_loss(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                               object W, object G, object L, double scale, int n_threads):
    """sum_r w_r (logsumexp(z_r) - z_r[label_r]); G := (softmax(z) - onehot(label)) w_r scale
    unless None; L[r] := w_r l_r unless None."""
    cdef idx_t n = Z.shape[0]
    cdef idx_t k = Z.shape[1]
    cdef idx_t r, j, lab
    cdef double m, e, sumexp, lse, inv, zl, l, wr, s = 0.0
    cdef const double[::1] w
    cdef const double* wp = NULL
    cdef floating[:, ::1] g
    cdef floating[::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef floating* grow
    cdef const floating* zrow
    cdef const floating* zp = &Z[0, 0]
    cdef idx_t c, b, hi
    cdef int t
    if n == 0:
        return 0.0
    if W is not None:
        w = W
        wp = &w[0]
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0]
    if floating is float:
        # float32: vectorized exp of the max-shifted logits (pynn_softmax_ce_rows_f), one
        # contiguous block of rows per thread
        with nogil:
            if n_threads <= 1:
                s = pynn_softmax_ce_rows_f(zp, &labels[0], wp, gp, lp, n, k, scale)
            else:
                c = (n + n_threads - 1) // n_threads
                for t in prange(n_threads, schedule="static", num_threads=n_threads):
                    b = t * c
                    hi = min(b + c, n)
                    if b < hi:
                        s += pynn_softmax_ce_rows_f(zp + b * k, &labels[0] + b,
                                                    wp + b if wp != NULL else NULL,
                                                    gp + b * k if gp != NULL else NULL,
                                                    lp + b if lp != NULL else NULL,
                                                    hi - b, k, scale)
    else:
        # float64: libm exp (1e-12 accuracy); a loop over rows
        with nogil:
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
