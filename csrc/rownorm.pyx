"""pynn._kernels.rownorm: LayerNorm and RMSNorm over the features of each row of a row-major
(N, F) array: per-row statistics, the normalization and its gradient in double, rounded once
on store. Threads take blocks of whole rows; the parameter gradients' column sums are added in
fixed blocks of rows, in block order: every result is the same for any thread count. The
per-row loops are C (_rownorm.h), cloned for AVX-512 and AVX2 without fused multiply-add; the
cores, _rownorm.pxd.
"""
from libc.stdlib cimport free, malloc

from _types cimport floating, idx_t
from _rownorm cimport rn_backward_core, rn_backward_scratch, rn_forward_core
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


cdef double* _doubles(idx_t count) except NULL:
    cdef double* p = <double*>malloc((count if count > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError("rownorm: cannot allocate its scratch")
    return p


cdef void _affine_in_double(object A, double fill, double* out, idx_t f):
    """A per-feature parameter (gamma or beta) in double, or ``fill`` where the layer has none."""
    cdef const float[::1] af
    cdef const double[::1] ad
    cdef idx_t j
    if A is None:
        for j in range(f):
            out[j] = fill
    elif A.dtype.itemsize == 4:
        af = A
        for j in range(f):
            out[j] = <double>af[j]
    else:
        ad = A
        for j in range(f):
            out[j] = ad[j]


def rownorm_forward(const floating[:, ::1] X, object gamma, object beta, double eps,
                    floating[:, ::1] Y, object mean, double[::1] invstd, int n_threads):
    """Per row: mean and invstd = 1 / sqrt(var + eps) (mean None: RMSNorm, invstd = 1 /
    sqrt(mean(x^2) + eps)); Y := (X - mean) invstd gamma + beta (gamma, beta None: 1, 0)."""
    cdef idx_t n = X.shape[0], f = X.shape[1]
    cdef double[::1] mv
    cdef double* mp = NULL
    cdef double* affine
    if n == 0 or f == 0:
        return
    if mean is not None:
        mv = mean
        mp = &mv[0]
    affine = _doubles(2 * f)
    try:
        _affine_in_double(gamma, 1.0, affine, f)
        _affine_in_double(beta, 0.0, affine + f, f)
        with nogil:
            rn_forward_core(&X[0, 0], &Y[0, 0], n, f, eps, affine, affine + f, mp, &invstd[0],
                            n_threads)
    finally:
        free(affine)


def rownorm_backward(const floating[:, ::1] dY, const floating[:, ::1] X, object gamma,
                     object mean, const double[::1] invstd, object dgamma, object dbeta,
                     floating[:, ::1] dX, int n_threads):
    """dX := invstd (g - mean(g) - xhat mean(g xhat)), g = dY gamma, xhat = (X - mean) invstd
    (mean None: RMSNorm, without the mean(g) term); dgamma += sum(dY xhat), dbeta += sum(dY)
    over the rows, each unless None."""
    cdef idx_t n = dY.shape[0], f = dY.shape[1]
    cdef const double[::1] mv
    cdef const double* mp = NULL
    cdef floating[::1] dgv
    cdef floating[::1] dbv
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
    cdef double* scratch
    if n == 0 or f == 0:
        return
    if mean is not None:
        mv = mean
        mp = &mv[0]
    if dgamma is not None:
        dgv = dgamma
        dgp = &dgv[0]
    if dbeta is not None:
        dbv = dbeta
        dbp = &dbv[0]
    scratch = _doubles(f + rn_backward_scratch(n, f))
    try:
        _affine_in_double(gamma, 1.0, scratch, f)
        with nogil:
            rn_backward_core(&dY[0, 0], &X[0, 0], &dX[0, 0], n, f, scratch, mp, &invstd[0],
                             dgp, dbp, scratch + f, n_threads, True)
    finally:
        free(scratch)


def backward_scratch(idx_t n, idx_t f):
    """Doubles of scratch a rownorm backward of n x f needs (the compiled training step
    allocates them once)."""
    return rn_backward_scratch(n, f)
