"""pynn._kernels.batchnorm: batch normalization over the rows of a row-major (N, F) array,
optionally fused with an activation (the Dense -> BatchNorm -> ReLU recipe in one pass).

Statistics are per column but the data is row-major, so no loop ever walks down a column (a
stride of F elements per step defeats the cache and the vectorizer). Instead the rows are cut
into blocks of STAT_ROWS rows; each block accumulates per-column partial sums in its own row of
a (blocks, F) double scratch, with the inner loop running over F contiguous columns; the
partials are added afterwards in block order. The blocks are fixed by N alone and threads take
whole blocks, so every sum is added in the same order for any thread count: results are
bit-identical for 1 and 2 threads. Everything is accumulated and computed in double and rounded
once on store.

The fused activation adds no pass over memory. Forward: each block of output rows is activated
in place right after it is written, while it is still in L1. Backward: dZ = dY * act'(Y) is
recomputed where it is needed instead of being stored: in the sums pass a few rows at a time
into an L1-sized scratch, in the dX pass straight into dX's rows, which the same loop then
turns into dX. Storing dZ would cost an N x F write and read-back to save one read of Y.
Both use the span loops of _act.pxd, so fused results equal batchnorm followed by the
separate activation kernel.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt
from libc.stdlib cimport malloc, free

from _types cimport floating, idx_t
from _act cimport IDENTITY, act_backward_span, act_forward_span
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


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


cdef double* _scratch(idx_t count) except NULL:
    cdef double* p = <double*>malloc((count if count > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError("batchnorm: cannot allocate the per-block partial sums")
    return p


cdef inline void _normalize(const floating* x, floating* y, const double* mp, const double* ip,
                            const floating* g, const floating* bt, idx_t n, idx_t f, int kind,
                            floating p, int n_threads) noexcept nogil:
    """y := act((x - mean) invstd gamma + beta), in blocks of _act_rows(f) rows: each block is
    normalized, then (unless identity) activated in place while still in cache."""
    cdef idx_t rows = _act_rows(f)
    cdef idx_t k, r, j, lo, hi
    cdef const floating* xr
    cdef floating* yr
    for k in prange(_ceil_div(n, rows), schedule="static", num_threads=n_threads):
        lo = k * rows
        hi = _block_end(k, rows, n)
        for r in range(lo, hi):
            xr = x + r * f
            yr = y + r * f
            for j in range(f):
                yr[j] = <floating>((<double>xr[j] - mp[j]) * ip[j] * <double>g[j]
                                   + <double>bt[j])
        if kind != IDENTITY:
            act_forward_span(kind, p, y + lo * f, y + lo * f, (hi - lo) * f)


def batchnorm_forward_train(const floating[:, ::1] X, const floating[::1] gamma,
                            const floating[::1] beta, floating[::1] running_mean,
                            floating[::1] running_var, double momentum, double eps,
                            floating[:, ::1] Y, double[::1] mean, double[::1] invstd,
                            int kind, double param, int n_threads):
    """mean = X.mean(0); var = X.var(0); Y := act((X - mean) / sqrt(var + eps) * gamma + beta)."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef idx_t nb, b, r, j
    cdef double d, var
    cdef double* scratch
    cdef double* acc
    cdef const floating* xp
    cdef const floating* xr
    cdef double* mp
    cdef double* ip
    cdef floating p = <floating>param  # rounded to the dtype first, as NumPy does
    if n == 0 or f == 0:
        return
    nb = _ceil_div(n, STAT_ROWS)
    xp = &X[0, 0]
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
                for r in range(b * STAT_ROWS, _block_end(b, STAT_ROWS, n)):
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
                for r in range(b * STAT_ROWS, _block_end(b, STAT_ROWS, n)):
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
            # Pass 3: normalize, scale, shift, activate.
            _normalize(xp, &Y[0, 0], mp, ip, &gamma[0], &beta[0], n, f, kind, p, n_threads)
    finally:
        free(scratch)


def batchnorm_forward_eval(const floating[:, ::1] X, const floating[::1] gamma,
                           const floating[::1] beta, const floating[::1] running_mean,
                           const floating[::1] running_var, double eps, floating[:, ::1] Y,
                           int kind, double param, int n_threads):
    """Y := act((X - running_mean) / sqrt(running_var + eps) * gamma + beta)."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef idx_t j
    cdef double* mp
    cdef double* ip
    cdef floating p = <floating>param
    if n == 0 or f == 0:
        return
    # The running statistics in double, and 1/sqrt once per column, not once per element.
    mp = _scratch(2 * f)
    ip = mp + f
    try:
        with nogil:
            for j in range(f):
                mp[j] = <double>running_mean[j]
                ip[j] = 1.0 / sqrt(<double>running_var[j] + eps)
            _normalize(&X[0, 0], &Y[0, 0], mp, ip, &gamma[0], &beta[0], n, f, kind, p,
                       n_threads)
    finally:
        free(mp)


cdef inline void _block_sums(int kind, floating p, const floating* dy, const floating* y,
                             const floating* x, const double* mp, const double* ip,
                             floating* zb, idx_t zrows, double* acc1, double* acc2, idx_t lo,
                             idx_t hi, idx_t f) noexcept nogil:
    """acc1[j] := sum of dz[r, j] and acc2[j] := sum of dz[r, j] xhat[r, j] over rows lo..hi.

    dz = dy * act'(y), recomputed ``zrows`` rows at a time into the L1-sized scratch zb; y NULL
    means the identity: dz is dy itself and zb is not used."""
    cdef idx_t r0, r1, r, j
    cdef const floating* zr
    cdef const floating* xr
    cdef double dz
    for j in range(f):
        acc1[j] = 0.0
        acc2[j] = 0.0
    r0 = lo
    while r0 < hi:
        r1 = min(r0 + zrows, hi)
        if y != NULL:
            act_backward_span(kind, p, dy + r0 * f, NULL, y + r0 * f, zb, (r1 - r0) * f)
        for r in range(r0, r1):
            zr = zb + (r - r0) * f if y != NULL else dy + r * f
            xr = x + r * f
            for j in range(f):
                dz = <double>zr[j]
                acc1[j] = acc1[j] + dz
                acc2[j] = acc2[j] + dz * ((<double>xr[j] - mp[j]) * ip[j])
        r0 = r1


cdef inline void _dx_rows(int kind, floating p, const floating* dy, const floating* y,
                          const floating* x, const double* mp, const double* ip,
                          const double* coef, const double* s1, const double* s2, double dn,
                          floating* dx, idx_t lo, idx_t hi, idx_t f) noexcept nogil:
    """Rows lo..hi: dx := coef (N dz - s1 - xhat s2). With an activation (y not NULL) dz is
    first written into dx's own rows and rewritten in place; each element is read before it
    is written."""
    cdef idx_t r, j
    cdef const floating* xr
    cdef const floating* dyr
    cdef floating* dxr
    cdef double xhat
    if y != NULL:
        act_backward_span(kind, p, dy + lo * f, NULL, y + lo * f, dx + lo * f, (hi - lo) * f)
        for r in range(lo, hi):
            xr = x + r * f
            dxr = dx + r * f
            for j in range(f):
                xhat = (<double>xr[j] - mp[j]) * ip[j]
                dxr[j] = <floating>(coef[j] * (dn * <double>dxr[j] - s1[j] - xhat * s2[j]))
    else:
        for r in range(lo, hi):
            xr = x + r * f
            dyr = dy + r * f
            dxr = dx + r * f
            for j in range(f):
                xhat = (<double>xr[j] - mp[j]) * ip[j]
                dxr[j] = <floating>(coef[j] * (dn * <double>dyr[j] - s1[j] - xhat * s2[j]))


def batchnorm_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                       const floating[::1] gamma, const double[::1] mean,
                       const double[::1] invstd, object Y, object dgamma, object dbeta,
                       floating[:, ::1] dX, int kind, double param, int n_threads):
    """dZ = dY * act'(Y); xhat = (X - mean) invstd; dbeta += sum(dZ); dgamma += sum(dZ xhat);
    dX := gamma invstd / N (N dZ - sum(dZ) - xhat sum(dZ xhat)).

    Y is None for the identity (then dZ is dY); dgamma and dbeta may be None (frozen: the sums
    are still needed for dX, they are just not accumulated).
    """
    # Y, dgamma, dbeta are untyped objects: Cython's fused dispatch cannot match None to a
    # fused memoryview.
    cdef idx_t n = dY.shape[0]
    cdef idx_t f = dY.shape[1]
    cdef idx_t nb, bpt, zrows, arows, b, k, j, lo, hi
    cdef int t, nt
    cdef double dn = <double>n
    cdef const floating[:, ::1] Yv
    cdef floating[::1] dgv
    cdef floating[::1] dbv
    cdef bint has_dg = dgamma is not None
    cdef bint has_db = dbeta is not None
    cdef floating p = <floating>param
    cdef double* scratch
    cdef double* coef
    cdef floating* zbuf = NULL
    cdef const floating* dyp
    cdef const floating* yp = NULL
    cdef const floating* xp
    cdef floating* dxp
    cdef const double* mp
    cdef const double* ip
    if n == 0 or f == 0:
        return
    if kind != IDENTITY:
        Yv = Y
        yp = &Yv[0, 0]
    if has_dg:
        dgv = dgamma
    if has_db:
        dbv = dbeta
    nb = _ceil_div(n, STAT_ROWS)
    # The sums pass: threads take whole statistics blocks (bpt each), so each thread's dZ
    # scratch is indexed by the prange variable, never by omp_get_thread_num().
    nt = n_threads if n_threads < nb else <int>nb
    if nt < 1:
        nt = 1
    bpt = _ceil_div(nb, nt)
    zrows = min(_act_rows(f), <idx_t>STAT_ROWS)
    arows = _act_rows(f)
    dyp = &dY[0, 0]
    xp = &X[0, 0]
    dxp = &dX[0, 0]
    mp = &mean[0]
    ip = &invstd[0]
    # Per block: sum(dZ) in the first F entries, sum(dZ xhat) in the next F; one more F for the
    # per-column coefficient gamma invstd / N of the second pass.
    scratch = _scratch(2 * nb * f + f)
    coef = scratch + 2 * nb * f
    try:
        if yp != NULL:
            zbuf = <floating*>malloc(nt * zrows * f * sizeof(floating))
            if zbuf == NULL:
                raise MemoryError("batchnorm: cannot allocate the dZ scratch rows")
        with nogil:
            for t in prange(nt, schedule="static", num_threads=nt):
                for b in range(t * bpt, min(t * bpt + bpt, nb)):
                    _block_sums(kind, p, dyp, yp, xp, mp, ip,
                                zbuf + t * zrows * f if zbuf != NULL else NULL, zrows,
                                scratch + 2 * b * f, scratch + 2 * b * f + f,
                                b * STAT_ROWS, _block_end(b, STAT_ROWS, n), f)
            # Reduce the partials into block 0's rows (read before written: block 0 comes first).
            for j in range(f):
                scratch[j] = _sum_blocks(scratch, nb, 2 * f, j)
                scratch[f + j] = _sum_blocks(scratch + f, nb, 2 * f, j)
            for j in range(f):
                if has_db:
                    dbv[j] = <floating>(<double>dbv[j] + scratch[j])
                if has_dg:
                    dgv[j] = <floating>(<double>dgv[j] + scratch[f + j])
                coef[j] = <double>gamma[j] * ip[j] / dn
            for k in prange(_ceil_div(n, arows), schedule="static", num_threads=n_threads):
                lo = k * arows
                hi = _block_end(k, arows, n)
                _dx_rows(kind, p, dyp, yp, xp, mp, ip, coef, scratch, scratch + f, dn, dxp,
                         lo, hi, f)
    finally:
        free(zbuf)
        free(scratch)
