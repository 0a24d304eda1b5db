"""pynn._kernels.dense: fully-connected layer, GEMMs plus fused bias/activation epilogues.

Weights are (out_features, in_features) and applied as X @ W.T. Arguments arrive validated from
pynn.backend.base. The loops, their tiling over pynn's one thread pool and the reasons for it
are in _dense.pxd, shared with pynn._kernels.train_step.
"""
from libc.limits cimport INT_MAX
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport sgemm

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _dense cimport (dense_backward_core, dense_backward_team, dense_forward_core,
                     dense_forward_scratch, pynn_blas_control, pynn_blas_threads_init)
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)

pynn_blas_threads_init(<void*>sgemm)


def blas_thread_control():
    """True when every BLAS call runs single-threaded inside pynn's team (one thread pool)."""
    return pynn_blas_control()


cdef int _check_blas_dims(idx_t a, idx_t b, idx_t c) except -1:
    # BLAS takes C ints: refuse sizes that would silently wrap around.
    if a > INT_MAX or b > INT_MAX or c > INT_MAX:
        raise ValueError(f"dense dimensions {(a, b, c)} exceed the BLAS int range")
    return 0


def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, object b,
                  floating[:, ::1] Y, int kind, double param, double param2, int n_threads,
                  object Z=None):
    """Y := act(X @ W.T + b)  (b may be None); Z (unless None) := X @ W.T + b, the
    pre-activation kept for the backward"""
    # b is an untyped object: Cython's fused dispatch cannot match None to a fused memoryview.
    cdef idx_t n = X.shape[0], k = X.shape[1], m = W.shape[0]
    cdef const floating[::1] bv
    cdef const floating* bp = NULL
    cdef idx_t count = dense_forward_scratch(n, k, m)
    cdef floating* scratch = NULL
    cdef floating[:, ::1] Zv
    cdef floating* zp = NULL
    _check_blas_dims(n, m, k)
    if b is not None:
        bv = b
        if m > 0:
            bp = &bv[0]
    if Z is not None:
        Zv = Z
        zp = &Zv[0, 0]
    if count > 0:
        scratch = <floating*>malloc(count * sizeof(floating))
        if scratch == NULL:
            raise MemoryError()
    try:
        with nogil:
            dense_forward_core(&X[0, 0], &W[0, 0], bp, &Y[0, 0], scratch, n, k, m, kind,
                               <floating>param, <floating>param2, zp, n_threads)
    finally:
        free(scratch)


def dense_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                   const floating[:, ::1] W, object Y, object dW, object db,
                   object dX, int kind, double param, double param2, int n_threads,
                   object Z=None):
    """dZ = dY * act'(Y) (act'(Z) from the kept pre-activation Z unless None); db +=
    colsum(dZ); dW += dZ.T @ X; dX := dZ @ W

    Y is None for the identity (then dZ is dY, no copy) and may be None with Z; dW, db and dX
    may each be None (a frozen parameter, no bias, the first layer): that product is skipped,
    not computed and dropped.
    """
    cdef idx_t n = dY.shape[0], m = dY.shape[1], k = X.shape[1]
    cdef const floating[:, ::1] Yv
    cdef const floating[:, ::1] Zv
    cdef const floating* zp = NULL
    cdef floating[:, ::1] dWv
    cdef floating[::1] dbv
    cdef floating[:, ::1] dXv
    cdef const floating* y = NULL
    cdef floating* dz = NULL
    cdef floating* dwp = NULL
    cdef floating* dbp = NULL
    cdef floating* dxp = NULL
    cdef double* acc = NULL
    cdef int nt, n_acc
    _check_blas_dims(n, m, k)
    if kind != IDENTITY and Y is not None:
        Yv = Y
        y = &Yv[0, 0]
    if kind != IDENTITY and Z is not None:
        Zv = Z
        zp = &Zv[0, 0]
    if dW is not None:
        dWv = dW
        dwp = &dWv[0, 0]
    if db is not None:
        dbv = db
        dbp = &dbv[0] if m > 0 else NULL
    if dX is not None:
        dXv = dX
        dxp = &dXv[0, 0]
    if dwp == NULL and db is None and dxp == NULL:
        return  # everything frozen and no dX wanted: not even dZ is needed
    dense_backward_team(n, m, k, dwp != NULL, dxp != NULL, n_threads, &nt, &n_acc)
    try:
        if kind != IDENTITY and n * m > 0:
            dz = <floating*>malloc(n * m * sizeof(floating))
            if dz == NULL:
                raise MemoryError()
        if dbp != NULL:
            # one row of double partial sums per row tile, added in tile order
            acc = <double*>malloc(n_acc * m * sizeof(double))
            if acc == NULL:
                raise MemoryError()
        with nogil:
            dense_backward_core(&dY[0, 0], &X[0, 0], &W[0, 0], y if dz != NULL else NULL,
                                zp if dz != NULL else NULL, dz, acc, dwp, dbp, dxp, n, m, k,
                                kind, <floating>param, <floating>param2, nt, n_acc, True)
    finally:
        free(dz)
        free(acc)
