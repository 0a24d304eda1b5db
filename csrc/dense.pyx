"""pynn._kernels.dense: fully-connected layer, GEMMs plus fused bias/activation epilogues.

Weights are (out_features, in_features) and applied as X @ W.T. Arguments arrive validated from
pynn.backend.base. The loops, their strategies (how a product is threaded and oriented: pynn.tune
picks one per product) and the reasons for them are in _dense.pxd and _dense_backward.pxd,
shared with pynn._kernels.train_step and pynn._kernels.inference. This module owns the products
lock (_products_lock.h) the others adopt: ``products_lock_address``.
"""
from libc.limits cimport INT_MAX
from libc.stdint cimport uintptr_t
from libc.stdlib cimport free, malloc
from scipy.linalg.cython_blas cimport sgemm

from _types cimport floating, idx_t
from _activations cimport IDENTITY as _IDENTITY
from _dense cimport (DENSE_BLAS_THREADS, DENSE_DIRECT, DENSE_DOT, DENSE_FEW_ROWS, DENSE_GEMV,
                     DENSE_ONE_THREAD, DENSE_PARALLEL_MIN_MACS, DENSE_THREADING, DENSE_TILES,
                     DENSE_TRANSPOSED, dense_forward_core, dense_forward_estimate,
                     dense_forward_scratch, dense_forward_team, dense_strategy_valid,
                     pynn_blas_control, pynn_blas_threads_init, pynn_products_acquire,
                     pynn_products_lock_address, pynn_products_release)
from _dense_backward cimport (dense_backward_blas_nt, dense_backward_core,
                              dense_backward_estimate, dense_backward_team)
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)

pynn_blas_threads_init(<void*>sgemm)
# the activation kind "none" as the kernels take it (pynn.tune times the bare products with it;
# pynn.backend.codes.IDENTITY is the same value, a floor above)
IDENTITY = _IDENTITY


def blas_thread_control():
    """True when every BLAS call runs single-threaded inside pynn's team (one thread pool)."""
    return pynn_blas_control()


def strategy_codes():
    """{name: value} of the strategies' codes as the loops read them (_dense.pxd): what
    pynn.tune._strategies must equal."""
    return {"ONE_THREAD": DENSE_ONE_THREAD, "TILES": DENSE_TILES,
            "BLAS_THREADS": DENSE_BLAS_THREADS, "GEMV": DENSE_GEMV,
            "THREADING": DENSE_THREADING, "TRANSPOSED": DENSE_TRANSPOSED,
            "FEW_ROWS": DENSE_FEW_ROWS, "DOT": DENSE_DOT, "DIRECT": DENSE_DIRECT}


def parallel_min_macs():
    """Multiply-adds below which the fixed rules run a product on one thread (and pynn.tune
    times no threaded candidate: pynn.tune._planner._candidates)."""
    return DENSE_PARALLEL_MIN_MACS


def products_lock_address():
    """The address of the process's products lock (the other kernel modules adopt it)."""
    return <uintptr_t>pynn_products_lock_address()


def forward_estimate(idx_t n, idx_t k, idx_t m, int n_threads):
    """The fixed rules' strategy of a forward of n rows of k features into m (_dense.pxd)."""
    return dense_forward_estimate(n, k, m, n_threads)


def backward_estimate(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx, int n_threads):
    """The fixed rules' strategy of a backward (n rows, m outputs, k inputs)."""
    return dense_backward_estimate(n, m, k, has_dw, has_dx, n_threads)


def forward_team(idx_t n, idx_t m, int strategy, int n_threads):
    """Threads of pynn's team a forward of n rows into m runs on with ``strategy``."""
    _check_strategy(strategy, True)
    return dense_forward_team(n, m, strategy, n_threads)


def backward_team(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx, int strategy,
                  int n_threads):
    """(threads of pynn's team, rows of bias partial sums) of a backward with ``strategy``:
    what it runs on and what its scratch must hold."""
    cdef int nt, n_acc
    _check_strategy(strategy, False)
    dense_backward_team(n, m, k, has_dw, has_dx, n_threads, strategy, &nt, &n_acc)
    return nt, n_acc


def forward_scratch(idx_t n, idx_t k, idx_t m, int strategy):
    """Elements (of the product's dtype) of scratch a forward of n x k -> m needs with
    ``strategy``."""
    _check_strategy(strategy, True)
    return dense_forward_scratch(n, k, m, strategy)


cdef int _check_strategy(int strategy, bint forward) except -1:
    if not dense_strategy_valid(strategy, forward):
        raise ValueError(f"strategy must be a {'forward' if forward else 'backward'} "
                         f"strategy code (pynn.tune), got {strategy}")
    return 0


cdef int _check_blas_dims(idx_t a, idx_t b, idx_t c) except -1:
    # BLAS takes C ints: refuse sizes that would silently wrap around.
    if a > INT_MAX or b > INT_MAX or c > INT_MAX:
        raise ValueError(f"dense dimensions {(a, b, c)} exceed the BLAS int range")
    return 0


def dense_forward(const floating[:, ::1] X, const floating[:, ::1] W, object b,
                  floating[:, ::1] Y, int kind, double param, double param2, int n_threads,
                  object Z=None, int strategy=-1):
    """Y := act(X @ W.T + b)  (b may be None); Z (unless None) := X @ W.T + b, the
    pre-activation kept for the backward; ``strategy``: the product's (pynn.tune; -1: the
    fixed rules' estimate)"""
    # b is an untyped object: Cython's fused dispatch cannot match None to a fused memoryview.
    cdef idx_t n = X.shape[0], k = X.shape[1], m = W.shape[0]
    cdef const floating[::1] bv
    cdef const floating* bp = NULL
    cdef idx_t count
    cdef floating* scratch = NULL
    cdef floating[:, ::1] Zv
    cdef floating* zp = NULL
    cdef bint exclusive
    _check_blas_dims(n, m, k)
    if strategy == -1:
        strategy = dense_forward_estimate(n, k, m, n_threads)
    _check_strategy(strategy, True)
    exclusive = strategy & DENSE_THREADING == DENSE_BLAS_THREADS
    count = dense_forward_scratch(n, k, m, strategy)
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
            pynn_products_acquire(exclusive)
            dense_forward_core(&X[0, 0], &W[0, 0], bp, &Y[0, 0], scratch, n, k, m, kind,
                               <floating>param, <floating>param2, zp, n_threads, strategy)
            pynn_products_release(exclusive)
    finally:
        free(scratch)


def dense_backward(const floating[:, ::1] dY, const floating[:, ::1] X,
                   const floating[:, ::1] W, object Y, object dW, object db,
                   object dX, int kind, double param, double param2, int n_threads,
                   object Z=None, int strategy=-1):
    """dZ = dY * act'(Y) (act'(Z) from the kept pre-activation Z unless None); db +=
    colsum(dZ); dW += dZ.T @ X; dX := dZ @ W

    Y is None for the identity (then dZ is dY, no copy) and may be None with Z; dW, db and dX
    may each be None (a frozen parameter, no bias, the first layer): that product is skipped,
    not computed and dropped. ``strategy``: the products' (pynn.tune; -1: the fixed rules'
    estimate).
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
    cdef bint exclusive
    _check_blas_dims(n, m, k)
    if kind != _IDENTITY and Y is not None:
        Yv = Y
        y = &Yv[0, 0]
    if kind != _IDENTITY and Z is not None:
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
    if strategy == -1:
        strategy = dense_backward_estimate(n, m, k, dwp != NULL, dxp != NULL, n_threads)
    _check_strategy(strategy, False)
    exclusive = strategy == DENSE_BLAS_THREADS
    dense_backward_team(n, m, k, dwp != NULL, dxp != NULL, n_threads, strategy, &nt, &n_acc)
    try:
        if kind != _IDENTITY and n * m > 0:
            dz = <floating*>malloc(n * m * sizeof(floating))
            if dz == NULL:
                raise MemoryError()
        if dbp != NULL:
            # one row of double partial sums per row tile, added in tile order
            acc = <double*>malloc(n_acc * m * sizeof(double))
            if acc == NULL:
                raise MemoryError()
        with nogil:
            pynn_products_acquire(exclusive)
            dense_backward_core(&dY[0, 0], &X[0, 0], &W[0, 0], y if dz != NULL else NULL,
                                zp if dz != NULL else NULL, dz, acc, dwp, dbp, dxp, n, m, k,
                                kind, <floating>param, <floating>param2, nt, n_acc, True,
                                dense_backward_blas_nt(strategy, n_threads))
            pynn_products_release(exclusive)
    finally:
        free(dz)
        free(acc)
