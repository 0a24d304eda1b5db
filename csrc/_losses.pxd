# The losses' loops (value and gradient in one pass), shared by pynn._kernels.losses (one kernel
# per call) and pynn._kernels.step (a whole training step in one call): one copy, so the two
# give bit-identical results. Arguments arrive checked and non-empty; g may be NULL (value only).
from cython.parallel cimport prange
from libc.math cimport exp, log, log1p, fabs

from _types cimport floating, idx_t
from _act cimport pynn_softmax_ce_rows_f


cdef inline double mse_core(const floating* yp, const floating* tp, floating* gp, idx_t size,
                            int n_threads) noexcept nogil:
    """loss = mean((Y - T)**2); G := 2 (Y - T) / size unless gp is NULL."""
    cdef idx_t i
    cdef double d, s = 0.0
    # Flat loop: rows may be short (K = 1) or few (N = 1); the flat index splits evenly either way.
    if gp != NULL:
        for i in prange(size, schedule="static", num_threads=n_threads):
            d = <double>yp[i] - <double>tp[i]
            gp[i] = <floating>(2.0 * d / <double>size)
            s += d * d
    else:
        for i in prange(size, schedule="static", num_threads=n_threads):
            d = <double>yp[i] - <double>tp[i]
            s += d * d
    return s / <double>size


cdef inline double bce_core(const floating* zp, const floating* tp, floating* gp, idx_t size,
                            int n_threads) noexcept nogil:
    """loss = mean(max(z, 0) - z t + log1p(exp(-|z|))); G := (sigmoid(z) - t) / size unless NULL."""
    cdef idx_t i
    cdef double z, t, e, sig, s = 0.0
    for i in prange(size, schedule="static", num_threads=n_threads):
        z = <double>zp[i]
        t = <double>tp[i]
        # exp of a non-positive number only: no overflow for any logit, and the same e
        # serves the log term and the sigmoid (one exp per element).
        e = exp(-fabs(z))
        s += (z if z > 0.0 else 0.0) - z * t + log1p(e)
        if gp != NULL:
            sig = 1.0 / (1.0 + e) if z >= 0.0 else e / (1.0 + e)
            gp[i] = <floating>((sig - t) / <double>size)
    return s / <double>size


cdef inline double softmax_ce_core(const floating* zp, const Py_ssize_t* labels, floating* gp,
                                   idx_t n, idx_t k, int n_threads) noexcept nogil:
    """loss = mean_r(logsumexp(z_r) - z_r[label_r]); G := (softmax(z) - onehot(label)) / N."""
    cdef idx_t r, j, lab
    cdef double m, e, sumexp, lse, inv, zl, s = 0.0
    cdef double inv_n = 1.0 / <double>n
    cdef floating* grow
    cdef const floating* zrow
    cdef idx_t c, lo, hi
    cdef int t
    if floating is float:
        # float32: vectorized exp of the max-shifted logits (pynn_softmax_ce_rows_f), one
        # contiguous block of rows per thread
        if n_threads <= 1:
            s = pynn_softmax_ce_rows_f(zp, labels, gp, n, k, inv_n)
        else:
            c = (n + n_threads - 1) // n_threads
            for t in prange(n_threads, schedule="static", num_threads=n_threads):
                lo = t * c
                hi = min(lo + c, n)
                if lo < hi:
                    s += pynn_softmax_ce_rows_f(zp + lo * k, labels + lo,
                                                gp + lo * k if gp != NULL else NULL,
                                                hi - lo, k, inv_n)
    else:
        # float64: libm exp (1e-12 accuracy); a loop over rows
        for r in prange(n, schedule="static", num_threads=n_threads):
            zrow = zp + r * k
            lab = labels[r]
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
                inv = inv_n / sumexp
                for j in range(k):
                    grow[j] = <floating>(<double>grow[j] * inv)
            else:
                for j in range(k):
                    sumexp = sumexp + exp(<double>zrow[j] - m)
            lse = log(sumexp)
            zl = <double>zrow[lab] - m
            s += lse - zl
            if gp != NULL:
                # The label entry recomputed in double: p - 1 cancels when p is close to
                # 1, so it must not start from the value parked above.
                grow[lab] = <floating>((exp(zl - lse) - 1.0) / <double>n)
    return s * inv_n
