"""pynn._kernels.inference: a Sequential's eval-mode forward (``predict``) in one call without
the GIL.

The ops record the addresses of the layers' own arrays (weights, biases, BatchNorm's gamma, beta
and running statistics, a Standardizer's mean and scale) and read them in place on every run:
nothing is copied when the program is built, so a write into any of them shows in the next run
(pynn.nn.inference checks before each run that the arrays still live where they were recorded).
The layers run through the very loops their per-call kernels use (the .pxd cores of dense,
batchnorm, rownorm and activations), so an unfolded run is the layer-by-layer eval forward bit
for bit. A Residual's block runs between two ops: its begin copies the block's input aside (one
skip buffer per open residual), its end adds it to the block's output (Residual.infer's sum).

A folded run (``fold``, for many rows) first folds each BatchNorm into the Dense before it and a
Standardizer into the Dense after it, from the arrays as they are at that moment, in double and
rounded once (W' = W s per output row, b' = (b - running_mean) s + beta with s = gamma /
sqrt(running_var + eps); a Standardizer divides W's columns by its scale and takes W' mean off
b), into the run's own scratch. Every buffer of a run (the two activations between ops, the
folded weights, the kernels' scratch) is allocated for that run and freed after it, so any
number of threads may run one program at once.

``run_csr`` runs a CSR X (scikit-learn's sparse inputs) when the first op is a Dense: each
batch's rows go through the sparse product's core (_sparse.pxd, the eager kernel's), read from
the CSR's arrays in place (a batch is a range of indptr); the ops after it as for a dense X.

Each dense op's product runs with the strategy the caller passes for its batch size
(``strategies``: pynn.tune's, one for the full batches and one for the last, shorter one), so
a program's products are the eager kernel's on the same rows; a run that has one on BLAS's own
threads holds the products lock exclusively (_products_lock.h), any other run shares it.

This file is the Python side of the program: the builder's keyword methods, and each run's
set-up (its strategies, its buffers, the products lock) before the one nogil call. The op
records and the batch loop that call runs are csrc/_inference_run.pxd's, apart because they
are C alone: they read the records and nothing of Python's.
"""
cimport numpy as cnp
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm

from _types cimport idx_t
from _activations cimport IDENTITY
from _batchnorm cimport bn_eval_scratch
from _dense cimport (DENSE_BLAS_THREADS, DENSE_THREADING, dense_forward_estimate,
                     dense_strategy_valid, pynn_blas_threads_init, pynn_products_acquire,
                     pynn_products_lock_adopt, pynn_products_release)
from _inference_run cimport (INF_ACT, INF_BN, INF_DENSE, INF_RES_BEGIN, INF_RES_END,
                             INF_ROWNORM, INF_SOFTMAX, INF_STANDARDIZE, CsrRows, InfOp,
                             InfProgram, _run)
from _sparse cimport column_view_bytes
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)

from pynn._kernels.dense import products_lock_address

pynn_blas_threads_init(<void*>sgemm)
pynn_products_lock_adopt(<void*><uintptr_t>products_lock_address())
cnp.import_array()


cdef class InferenceProgram:
    """The eval-mode ops of one Sequential (see the module doc), built by keyword methods."""
    cdef InfProgram prog  # the ops, and what the batch loop reads besides (_inference_run.pxd)
    cdef int cap_ops, depth, max_depth
    cdef bint is_float
    cdef idx_t fold_elems

    def __cinit__(self, bint is_float, int max_ops, idx_t min_parallel):
        """``min_parallel``: elements below which an elementwise op runs on one thread (the
        backends' threshold)."""
        self.is_float = is_float
        self.prog.min_parallel = min_parallel
        self.prog.ops = <InfOp*>calloc(max_ops if max_ops > 0 else 1, sizeof(InfOp))
        if self.prog.ops == NULL:
            raise MemoryError()
        self.cap_ops = max_ops

    def __dealloc__(self):
        free(self.prog.ops)

    cdef InfOp* _new_op(self, int kind, int act, double param, double param2, idx_t k,
                        idx_t m) except NULL:
        if self.prog.n_ops >= self.cap_ops:
            raise ValueError("more ops than the program was made for")
        cdef InfOp* o = &self.prog.ops[self.prog.n_ops]
        memset(o, 0, sizeof(InfOp))
        o.kind, o.act, o.param, o.param2, o.k, o.m = kind, act, param, param2, k, m
        o.pre = o.post = -1
        self.prog.n_ops += 1
        self.prog.widest = max(self.prog.widest, m)
        return o

    def add_dense(self, *, int act, double param, idx_t k, idx_t m, uintptr_t W, uintptr_t b,
                  int pre=-1, int post=-1, double param2=0.0):
        """A Dense: X (k wide) times W.T plus b (0: no bias), ``act`` (parameters param,
        param2) in the epilogue. ``pre``, ``post``: indices of the Standardizer op before it
        and the BatchNorm op after it (added later) that a folded run folds into it, or -1."""
        cdef InfOp* o = self._new_op(INF_DENSE, act, param, param2, k, m)
        o.W, o.b, o.pre, o.post = <void*>W, <void*>b, pre, post
        if pre >= 0 or post >= 0:
            o.fold_at = self.fold_elems
            self.fold_elems += m * k + m

    def add_batchnorm(self, *, int act, double param, idx_t features, double eps,
                      uintptr_t gamma, uintptr_t beta, uintptr_t running_mean,
                      uintptr_t running_var, bint foldable, double param2=0.0):
        """An eval-mode BatchNorm with its running statistics, ``act`` in the epilogue;
        ``foldable``: a folded run folds it into the dense op before it (whose ``post`` it is),
        which then applies ``act``."""
        cdef InfOp* o = self._new_op(INF_BN, act, param, param2, features, features)
        o.eps, o.folded = eps, foldable
        o.W, o.b, o.rm, o.rv = <void*>gamma, <void*>beta, <void*>running_mean, <void*>running_var

    def add_activation(self, *, int act, double param, idx_t width, double param2=0.0):
        self._new_op(INF_ACT, act, param, param2, width, width)

    def add_softmax(self, *, idx_t width):
        self._new_op(INF_SOFTMAX, IDENTITY, 0.0, 0.0, width, width)

    def add_standardize(self, *, idx_t width, uintptr_t mean, uintptr_t scale, bint foldable):
        """(X - mean) / scale; ``foldable``: a folded run folds it into the dense op after it."""
        cdef InfOp* o = self._new_op(INF_STANDARDIZE, IDENTITY, 0.0, 0.0, width, width)
        o.W, o.b, o.folded = <void*>mean, <void*>scale, foldable

    def add_rownorm(self, *, idx_t features, double eps, uintptr_t gamma, uintptr_t beta,
                    bint center):
        """A LayerNorm (``center``) or RMSNorm over ``features``, ``eps`` as its kernel takes it;
        gamma, beta: 0 where the layer has none."""
        cdef InfOp* o = self._new_op(INF_ROWNORM, IDENTITY, 0.0, 0.0, features, features)
        o.eps, o.center, o.W, o.b = eps, center, <void*>gamma, <void*>beta

    def add_residual_begin(self, *, idx_t width):
        """A Residual's block begins here (its ops follow, then ``add_residual_end``)."""
        cdef InfOp* o = self._new_op(INF_RES_BEGIN, IDENTITY, 0.0, 0.0, width, width)
        o.slot = self.depth
        self.depth += 1
        self.max_depth = max(self.max_depth, self.depth)

    def add_residual_end(self, *, idx_t width):
        """The innermost open Residual's block ends: its input plus the block's output."""
        if self.depth == 0:
            raise ValueError("a residual's end without its begin")
        self.depth -= 1
        cdef InfOp* o = self._new_op(INF_RES_END, IDENTITY, 0.0, 0.0, width, width)
        o.slot = self.depth

    def run_csr(self, cnp.ndarray data, cnp.ndarray indices, cnp.ndarray indptr,
                cnp.ndarray out, idx_t batch_rows, int n_threads, object strategies=None):
        """``run`` (unfolded) on X = CSR(data, indices, indptr), checked by the caller
        (csr_arrays: C-contiguous, data of the program's dtype, int32/int64 indices in range,
        indptr of their type), for a program whose first op is a Dense (the sparse product:
        its entries in ``strategies`` are not read)."""
        cdef CsrRows csr
        cdef idx_t n = cnp.PyArray_DIM(indptr, 0) - 1
        cdef idx_t rows = batch_rows if batch_rows < n else n
        cdef idx_t most = 0, view, lo = 0, hi
        if n <= 0:
            return
        if self.prog.n_ops == 0 or self.prog.ops[0].kind != INF_DENSE:
            raise ValueError("run_csr needs a program whose first op is a dense op")
        # the batch with the most stored values sizes the view's scratch
        while lo < n:
            hi = min(lo + rows, n)
            most = max(most, <idx_t>(indptr[hi] - indptr[lo]))
            lo = hi
        csr.arrays.data = cnp.PyArray_DATA(data)
        csr.arrays.indices = cnp.PyArray_DATA(indices)
        csr.arrays.indptr = cnp.PyArray_DATA(indptr)
        csr.arrays.wide = cnp.PyArray_ITEMSIZE(indices) == 8
        view = (column_view_bytes(self.prog.ops[0].k, most) + 7) // 8 * 8
        csr.scratch = <char*>malloc(view + n_threads * rows * sizeof(double))
        if csr.scratch == NULL:
            raise MemoryError()
        csr.acc = <double*>(csr.scratch + view)
        try:
            self._execute(NULL, n, out, rows, n_threads, False, &csr, strategies)
        finally:
            free(csr.scratch)

    def run(self, cnp.ndarray X, cnp.ndarray out, idx_t batch_rows, int n_threads, bint fold,
            object strategies=None):
        """Every row of X through the ops into ``out``, ``batch_rows`` rows at a time, the
        products on ``n_threads``; ``fold``: the folded run (see the module doc).
        ``strategies``: None (the fixed rules' estimates) or an int32 array of two entries per
        op, a dense op's forward strategy (pynn.tune) for the full batches and for the last one
        when it is shorter (others' entries are not read).

        The caller has checked X (C-contiguous, aligned, the program's dtype and input width)
        and allocated ``out`` (C-contiguous, X's rows by the last op's width)."""
        cdef idx_t n = cnp.PyArray_DIM(X, 0)
        self._execute(cnp.PyArray_DATA(X), n, out, batch_rows if batch_rows < n else n,
                      n_threads, fold, NULL, strategies)

    cdef int _strategies(self, object strategies, idx_t rows, idx_t tail, int n_threads,
                         int* dest) except -1:
        """Two strategies per op into dest (see run): ``strategies``' or the estimates'.
        Returns 1 when some product runs on BLAS's own threads (the run is exclusive)."""
        cdef int i, j
        cdef int exclusive = 0
        cdef cnp.ndarray given
        cdef const int* codes = NULL
        cdef InfOp* o
        if strategies is not None:
            given = strategies
            if (cnp.PyArray_TYPE(given) != cnp.NPY_INT32 or not cnp.PyArray_IS_C_CONTIGUOUS(given)
                    or cnp.PyArray_SIZE(given) != 2 * self.prog.n_ops):
                raise ValueError(f"strategies must be a C-contiguous int32 array of "
                                 f"{2 * self.prog.n_ops} entries (two per op)")
            codes = <const int*>cnp.PyArray_DATA(given)
        for i in range(self.prog.n_ops):
            o = &self.prog.ops[i]
            for j in range(2):
                if o.kind != INF_DENSE:
                    dest[2 * i + j] = 0
                elif strategies is not None:
                    dest[2 * i + j] = codes[2 * i + j]
                    if not dense_strategy_valid(dest[2 * i + j], True):
                        raise ValueError(f"strategies[{2 * i + j}]: not a forward strategy "
                                         f"code, got {dest[2 * i + j]}")
                else:
                    dest[2 * i + j] = dense_forward_estimate(rows if j == 0 else tail, o.k,
                                                             o.m, n_threads)
                if dest[2 * i + j] & DENSE_THREADING == DENSE_BLAS_THREADS:
                    exclusive = 1
        return exclusive

    cdef _execute(self, const void* xp, idx_t n, cnp.ndarray out, idx_t rows, int n_threads,
                  bint fold, const CsrRows* csr, object strategies):
        """A run's buffers, then its batches without the GIL: n rows of the dense X at xp, or
        of ``csr`` (xp NULL)."""
        cdef size_t item = sizeof(float) if self.is_float else sizeof(double)
        cdef void* op = cnp.PyArray_DATA(out)
        cdef void* buffers
        cdef void* dense_scratch
        cdef double* bn_scratch
        cdef void* folds = NULL
        cdef void* skips = NULL
        cdef double* rn_scratch
        cdef int* codes
        cdef int exclusive
        if n <= 0 or self.prog.n_ops == 0:
            return
        if self.depth != 0:
            raise ValueError("a residual begun and not ended")
        codes = <int*>malloc(2 * self.prog.n_ops * sizeof(int))
        if codes == NULL:
            raise MemoryError()
        try:
            exclusive = self._strategies(strategies, rows, n % rows if n % rows else rows,
                                         n_threads, codes)
        except BaseException:
            free(codes)
            raise
        # two activations between ops, a transposed product's scratch (at most rows x widest:
        # dense_forward_scratch), BatchNorm's statistics in double
        buffers = malloc(3 * rows * self.prog.widest * item)
        bn_scratch = <double*>malloc(bn_eval_scratch(self.prog.widest) * sizeof(double))
        # rownorm's gamma and beta in double, its per-row mean and invstd
        rn_scratch = <double*>malloc((2 * self.prog.widest + 2 * rows) * sizeof(double))
        if fold and self.fold_elems > 0:
            folds = malloc(self.fold_elems * item)
        if self.max_depth > 0:
            skips = malloc(self.max_depth * rows * self.prog.widest * item)
        try:
            if buffers == NULL or bn_scratch == NULL or rn_scratch == NULL or (
                    fold and self.fold_elems > 0 and folds == NULL) or (
                    self.max_depth > 0 and skips == NULL):
                raise MemoryError()
            dense_scratch = <char*>buffers + 2 * rows * self.prog.widest * item
            with nogil:
                pynn_products_acquire(exclusive)
                if self.is_float:
                    _run[float](&self.prog, <const float*>xp, <float*>op, n, rows, n_threads,
                                fold, <float*>buffers, <float*>dense_scratch, bn_scratch,
                                <float*>folds, rn_scratch, <float*>skips, csr, codes)
                else:
                    _run[double](&self.prog, <const double*>xp, <double*>op, n, rows,
                                 n_threads, fold, <double*>buffers, <double*>dense_scratch,
                                 bn_scratch, <double*>folds, rn_scratch, <double*>skips, csr,
                                 codes)
                pynn_products_release(exclusive)
        finally:
            free(codes)
            free(buffers)
            free(bn_scratch)
            free(folds)
            free(rn_scratch)
            free(skips)
