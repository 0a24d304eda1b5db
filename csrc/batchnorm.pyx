"""pynn._kernels.batchnorm: batch normalization over the rows of a row-major (N, F) array.

Statistics are per column but the data is row-major, so no loop ever walks down a column (a
stride of F elements per step defeats the cache and the vectorizer). Instead the rows are cut
into one block per thread; each block accumulates per-column partial sums in its own row of a
(blocks, F) double scratch, with the inner loop running over F contiguous columns; the partials
are added afterwards in block order, so the result depends on the thread count only through
that fixed order. Everything is accumulated and computed in double and rounded once on store.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

from _types cimport floating, idx_t
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


cdef inline idx_t _num_blocks(idx_t n, int n_threads) noexcept nogil:
    # One row block per thread (prange's static schedule hands block b to one thread), never
    # more blocks than rows. Indexing the scratch by block rather than by omp_get_thread_num()
    # keeps it correct even when the runtime grants fewer threads than asked.
    if n_threads < 1:
        return 1
    if n < n_threads:
        return n if n > 0 else 1
    return n_threads


cdef inline idx_t _block_end(idx_t b, idx_t chunk, idx_t n) noexcept nogil:
    """One past the last row of block b (blocks of ``chunk`` rows; the last may be short)."""
    return min(b * chunk + chunk, n)


cdef inline double _sum_blocks(const double* partial, idx_t nb, idx_t stride,
                               idx_t j) noexcept nogil:
    """Column j's total over the nb per-block partial sums, added in block order (so the
    result depends on the thread count only through that fixed order)."""
    cdef double total = 0.0
    cdef idx_t b
    for b in range(nb):
        total = total + partial[b * stride + j]
    return total


cdef double* _scratch(idx_t count) except NULL:
    cdef double* p = <double*>malloc((count if count > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError("batchnorm: cannot allocate the per-thread partial sums")
    return p


def batchnorm_forward_train(const floating[:, ::1] X, const floating[::1] gamma,
                            const floating[::1] beta, floating[::1] running_mean,
                            floating[::1] running_var, double momentum, double eps,
                            floating[:, ::1] Y, double[::1] mean, double[::1] invstd,
                            int n_threads):
    """mean = X.mean(0); var = X.var(0); Y := (X - mean) / sqrt(var + eps) * gamma + beta."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef idx_t nb, chunk, b, r, j
    cdef double d, var
    cdef double* scratch
    cdef double* acc
    cdef const floating* xp
    cdef const floating* xr
    cdef floating* yp
    cdef floating* yr
    cdef double* mp
    cdef double* ip
    if n == 0 or f == 0:
        return
    nb = _num_blocks(n, n_threads)
    chunk = (n + nb - 1) // nb
    xp = &X[0, 0]
    yp = &Y[0, 0]
    mp = &mean[0]
    ip = &invstd[0]
    scratch = _scratch(nb * f)
    try:
        with nogil:
            # Pass 1: column sums -> mean.
            for b in prange(nb, schedule="static", num_threads=n_threads):
                acc = scratch + b * f
                for j in range(f):
                    acc[j] = 0.0
                for r in range(b * chunk, _block_end(b, chunk, n)):
                    xr = xp + r * f
                    for j in range(f):
                        acc[j] = acc[j] + <double>xr[j]
            for j in range(f):
                mp[j] = _sum_blocks(scratch, nb, f, j) / <double>n
            # Pass 2: sum of squared deviations from the mean (two-pass: no cancellation of
            # E[x^2] - E[x]^2 when |mean| >> std).
            for b in prange(nb, schedule="static", num_threads=n_threads):
                acc = scratch + b * f
                for j in range(f):
                    acc[j] = 0.0
                for r in range(b * chunk, _block_end(b, chunk, n)):
                    xr = xp + r * f
                    for j in range(f):
                        d = <double>xr[j] - mp[j]
                        acc[j] = acc[j] + d * d
            for j in range(f):
                var = _sum_blocks(scratch, nb, f, j) / <double>n
                ip[j] = 1.0 / sqrt(var + eps)
                # torch's convention: normalize with the biased variance, remember the unbiased one
                running_mean[j] = <floating>((1.0 - momentum) * <double>running_mean[j]
                                             + momentum * mp[j])
                running_var[j] = <floating>((1.0 - momentum) * <double>running_var[j]
                                            + momentum * var * <double>n / <double>(n - 1))
            # Pass 3: normalize, scale, shift.
            for r in prange(n, schedule="static", num_threads=n_threads):
                xr = xp + r * f
                yr = yp + r * f
                for j in range(f):
                    yr[j] = <floating>((<double>xr[j] - mp[j]) * ip[j] * <double>gamma[j]
                                       + <double>beta[j])
    finally:
        free(scratch)


def batchnorm_forward_eval(const floating[:, ::1] X, const floating[::1] gamma,
                           const floating[::1] beta, const floating[::1] running_mean,
                           const floating[::1] running_var, double eps, floating[:, ::1] Y,
                           int n_threads):
    """Y := (X - running_mean) / sqrt(running_var + eps) * gamma + beta."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef idx_t r, j
    cdef double* ip
    cdef const floating* xp
    cdef const floating* xr
    cdef floating* yp
    cdef floating* yr
    if n == 0 or f == 0:
        return
    xp = &X[0, 0]
    yp = &Y[0, 0]
    # 1/sqrt once per column, not once per element.
    ip = _scratch(f)
    try:
        with nogil:
            for j in range(f):
                ip[j] = 1.0 / sqrt(<double>running_var[j] + eps)
            for r in prange(n, schedule="static", num_threads=n_threads):
                xr = xp + r * f
                yr = yp + r * f
                for j in range(f):
                    yr[j] = <floating>((<double>xr[j] - <double>running_mean[j]) * ip[j]
                                       * <double>gamma[j] + <double>beta[j])
    finally:
        free(ip)


def batchnorm_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                       const floating[::1] gamma, const double[::1] mean,
                       const double[::1] invstd, floating[::1] dgamma, floating[::1] dbeta,
                       floating[:, ::1] dX, int n_threads):
    """xhat = (X - mean) invstd; dbeta += sum(dY); dgamma += sum(dY xhat);
    dX := gamma invstd / N (N dY - sum(dY) - xhat sum(dY xhat))."""
    cdef idx_t n = dY.shape[0]
    cdef idx_t f = dY.shape[1]
    cdef idx_t nb, chunk, b, r, j
    cdef double dy, xhat
    cdef double dn = <double>n
    cdef double* scratch
    cdef double* acc1
    cdef double* acc2
    cdef double* coef
    cdef const floating* dyp
    cdef const floating* xp
    cdef const floating* dyr
    cdef const floating* xr
    cdef floating* dxp
    cdef floating* dxr
    cdef const double* mp
    cdef const double* ip
    if n == 0 or f == 0:
        return
    nb = _num_blocks(n, n_threads)
    chunk = (n + nb - 1) // nb
    dyp = &dY[0, 0]
    xp = &X[0, 0]
    dxp = &dX[0, 0]
    mp = &mean[0]
    ip = &invstd[0]
    # Per block: sum(dY) in the first F entries, sum(dY xhat) in the next F; one more F for the
    # per-column coefficient gamma invstd / N of the second pass.
    scratch = _scratch(2 * nb * f + f)
    coef = scratch + 2 * nb * f
    try:
        with nogil:
            for b in prange(nb, schedule="static", num_threads=n_threads):
                acc1 = scratch + 2 * b * f
                acc2 = acc1 + f
                for j in range(f):
                    acc1[j] = 0.0
                    acc2[j] = 0.0
                for r in range(b * chunk, _block_end(b, chunk, n)):
                    dyr = dyp + r * f
                    xr = xp + r * f
                    for j in range(f):
                        dy = <double>dyr[j]
                        acc1[j] = acc1[j] + dy
                        acc2[j] = acc2[j] + dy * ((<double>xr[j] - mp[j]) * ip[j])
            # Reduce the partials into block 0's rows (read before written: block 0 comes first).
            for j in range(f):
                scratch[j] = _sum_blocks(scratch, nb, 2 * f, j)
                scratch[f + j] = _sum_blocks(scratch + f, nb, 2 * f, j)
            for j in range(f):
                dbeta[j] = <floating>(<double>dbeta[j] + scratch[j])
                dgamma[j] = <floating>(<double>dgamma[j] + scratch[f + j])
                coef[j] = <double>gamma[j] * ip[j] / dn
            for r in prange(n, schedule="static", num_threads=n_threads):
                dyr = dyp + r * f
                xr = xp + r * f
                dxr = dxp + r * f
                for j in range(f):
                    xhat = (<double>xr[j] - mp[j]) * ip[j]
                    dxr[j] = <floating>(coef[j] * (dn * <double>dyr[j] - scratch[j]
                                                   - xhat * scratch[f + j]))
    finally:
        free(scratch)
