"""pynn._kernels.batchnorm: batch normalization over the rows of a row-major (N, F) array,
optionally fused with an activation (the Dense -> BatchNorm -> ReLU recipe in one pass).

Statistics are per column but the data is row-major, so no loop ever walks down one column
alone (a stride of F elements per step defeats the cache and the vectorizer). Instead the rows
are cut into blocks of STAT_ROWS rows; each block accumulates per-column partial sums in its own
row of a (blocks, F) double scratch, 32 columns at a time held in registers while the block's
rows stream past; the partials are added afterwards in block order. Threads take column tiles
(whole 64-byte lines of columns): a column's statistics, normalization and gradient are one
thread's work from the first pass to the last, so a training pass is one parallel region with
no barrier and no thread reads what another wrote, and the order of every sum is fixed by N
alone: results are bit-identical for 1 and 2 threads. Everything is accumulated and computed in
double and rounded once on store. The per-element loops are C (_batchnorm.h), cloned for AVX-512
and AVX2 without fused multiply-add, so they vectorize wider than the portable build's SSE2 and
still give the same bits on every CPU (bench/test_bench_batchnorm.py times the kernels).

The fused activation adds no pass over memory. Forward: each block of output rows is activated
in place right after it is written, while it is still in L1. Backward: dZ = dY * act'(Y) is
written into dX's own rows a statistics block at a time and summed while in L1; the dX pass
then turns it into dX in place. Both use the span loops of _activations.pxd, so fused results equal
batchnorm followed by the separate activation kernel.
"""
from libc.stdlib cimport malloc, free

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _batchnorm cimport (bn_backward_core, bn_backward_scratch, bn_eval_scratch,
                         bn_forward_eval_core, bn_forward_scratch, bn_forward_train_core)
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


cdef double* _scratch(idx_t count) except NULL:
    cdef double* p = <double*>malloc((count if count > 0 else 1) * sizeof(double))
    if p == NULL:
        raise MemoryError("batchnorm: cannot allocate the per-block partial sums")
    return p


def batchnorm_forward_train(const floating[:, ::1] X, const floating[::1] gamma,
                            const floating[::1] beta, floating[::1] running_mean,
                            floating[::1] running_var, double momentum, double eps,
                            floating[:, ::1] Y, double[::1] mean, double[::1] invstd,
                            int kind, double param, double param2, int n_threads):
    """mean = X.mean(0); var = X.var(0); Y := act((X - mean) / sqrt(var + eps) * gamma + beta)."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef double* scratch
    if n == 0 or f == 0:
        return
    scratch = _scratch(bn_forward_scratch(n, f))
    try:
        with nogil:
            bn_forward_train_core(&X[0, 0], &gamma[0], &beta[0], &running_mean[0],
                                  &running_var[0], momentum, eps, &Y[0, 0], &mean[0],
                                  &invstd[0], scratch, n, f, kind, <floating>param,
                                  <floating>param2, n_threads)
    finally:
        free(scratch)


def batchnorm_forward_eval(const floating[:, ::1] X, const floating[::1] gamma,
                           const floating[::1] beta, const floating[::1] running_mean,
                           const floating[::1] running_var, double eps, floating[:, ::1] Y,
                           int kind, double param, double param2, int n_threads):
    """Y := act((X - running_mean) / sqrt(running_var + eps) * gamma + beta)."""
    cdef idx_t n = X.shape[0]
    cdef idx_t f = X.shape[1]
    cdef double* scratch
    if n == 0 or f == 0:
        return
    scratch = _scratch(bn_eval_scratch(f))
    try:
        with nogil:
            bn_forward_eval_core(&X[0, 0], &gamma[0], &beta[0], &running_mean[0],
                                 &running_var[0], eps, &Y[0, 0], scratch, n, f, kind,
                                 <floating>param, <floating>param2, n_threads)
    finally:
        free(scratch)


def batchnorm_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                       const floating[::1] gamma, const double[::1] mean,
                       const double[::1] invstd, object Y, object dgamma, object dbeta,
                       floating[:, ::1] dX, int kind, double param, double param2,
                       int n_threads):
    """dZ = dY * act'(Y); xhat = (X - mean) invstd; dbeta += sum(dZ); dgamma += sum(dZ xhat);
    dX := gamma invstd / N (N dZ - sum(dZ) - xhat sum(dZ xhat)).

    Y is None for the identity (then dZ is dY); dgamma and dbeta may be None (frozen: the sums
    are still needed for dX, they are just not accumulated).
    """
    # Y, dgamma, dbeta are untyped objects: Cython's fused dispatch cannot match None to a
    # fused memoryview.
    cdef idx_t n = dY.shape[0]
    cdef idx_t f = dY.shape[1]
    cdef const floating[:, ::1] Yv
    cdef floating[::1] dgv
    cdef floating[::1] dbv
    cdef floating* dgp = NULL
    cdef floating* dbp = NULL
    cdef const floating* yp = NULL
    cdef double* scratch
    if n == 0 or f == 0:
        return
    if kind != IDENTITY:
        Yv = Y
        yp = &Yv[0, 0]
    if dgamma is not None:
        dgv = dgamma
        dgp = &dgv[0]
    if dbeta is not None:
        dbv = dbeta
        dbp = &dbv[0]
    scratch = _scratch(bn_backward_scratch(n, f))
    try:
        with nogil:
            bn_backward_core(&dY[0, 0], yp, &X[0, 0], &gamma[0], &mean[0], &invstd[0], dgp, dbp,
                             &dX[0, 0], scratch, n, f, kind, <floating>param, <floating>param2,
                             n_threads, True)
    finally:
        free(scratch)


def scratch_sizes(idx_t n, idx_t f):
    """(forward doubles, backward doubles) of scratch a training-mode batchnorm of n x f needs
    (the compiled training step allocates them once)."""
    return bn_forward_scratch(n, f), bn_backward_scratch(n, f)
