"""pynn._kernels.train_step: a whole training step of a Sequential in one call without the GIL.

forward, loss, backward and the optimizer update run back to back over buffers the Python side
(pynn.nn.train_step) allocated once, through the very loops the per-call kernels use (the .pxd
cores of dense, batchnorm, losses and activations; the optimizers' loops by address from
pynn._kernels.optim, compiled there with that module's flags), so the results are bit-identical
to the eager step. Python is entered once per step instead of ~10-30 times, and nothing is
validated or allocated per step but the caller's batch and labels (checked by the caller).

Each op records raw addresses: the Python side owns the arrays and keeps them alive while the
program exists, and re-checks before every run that none has moved. The builder's methods take
keywords (``add_dense``, ``add_batchnorm``, ``add_activation``, ``add_rownorm``,
``add_dropout``, ``add_residual_begin``/``add_residual_end``, ``add_sparse_dense``, ``set_loss``,
``add_update``, ``set_adam``, ``set_sgd``); the kinds they name are ``step_kinds()``. A program
whose first op is a sparse dense one runs on a CSR batch's arrays (``run_csr``).

A Residual is two marker ops around its block's ops (nested ones nest): the begin op passes its
input on and, in the backward, adds the gradient that reached the residual's output (the skip
path's) to the block's input gradient; the end op adds the residual's input to the block's
output and passes its gradient down unchanged (its dX is its dY's address). Dropout draws its
mask from the key ``set_keys``' array holds for its op (the layer's counter, moved by Python
once per step as the eager layer moves it).

This file is the program as Python sees it: the builder's methods and ``run``/``run_csr``/
``run_batches``, which hand a step its arrays (the sizes of the scratch the Python side
allocates are each kernel family's: ``dense.backward_team``, ``dense.forward_scratch``,
``batchnorm.scratch_sizes``, ``rownorm.backward_scratch``). The records and
the step itself (the lock, the fusion's plan, the phases) are csrc/_train_step_run.pxd's, apart
because they are C alone and change with how a step runs, not with what Python hands over.
"""
cimport numpy as cnp
from libc.limits cimport INT_MAX
from libc.stdint cimport uint64_t, uintptr_t
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset
from scipy.linalg.cython_blas cimport sgemm

from _types cimport idx_t
from _activations cimport IDENTITY
from _dense cimport (DENSE_BLAS_THREADS, DENSE_THREADING, dense_strategy_valid,
                     pynn_blas_threads_init, pynn_products_lock_adopt)
from _train_step cimport (BACKWARD, FORWARD, LOSS_BCE, LOSS_CE, LOSS_MSE, OP_ACT, OP_BN,
                          OP_DENSE, OP_DROPOUT, OP_RES_BEGIN, OP_RES_END, OP_ROWNORM, OP_SOFTMAX,
                          OP_SPARSE_DENSE, UPD_ADAM, UPD_SGD, UPDATE, Op, Update)
from _train_step_sparse cimport csr_batch_set
from _train_step_run cimport (Batches, Program, adam_step_scalars, plan_step, run_batches,
                              run_step)
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)

from pynn._kernels.dense import products_lock_address

pynn_blas_threads_init(<void*>sgemm)
pynn_products_lock_adopt(<void*><uintptr_t>products_lock_address())
cnp.import_array()


def step_kinds():
    """{name: value} of the step kinds as the program reads them (_train_step.pxd): what
    pynn.backend.codes.STEP_KINDS must equal."""
    return {"OP_DENSE": OP_DENSE, "OP_BN": OP_BN, "OP_ACT": OP_ACT, "OP_SOFTMAX": OP_SOFTMAX,
            "OP_DROPOUT": OP_DROPOUT, "OP_ROWNORM": OP_ROWNORM, "OP_RES_BEGIN": OP_RES_BEGIN,
            "OP_RES_END": OP_RES_END, "OP_SPARSE_DENSE": OP_SPARSE_DENSE, "LOSS_CE": LOSS_CE, "LOSS_MSE": LOSS_MSE,
            "LOSS_BCE": LOSS_BCE, "UPD_ADAM": UPD_ADAM, "UPD_SGD": UPD_SGD, "FORWARD": FORWARD,
            "BACKWARD": BACKWARD, "UPDATE": UPDATE}

cdef class StepProgram:
    """The ops of one (model, loss, optimizer, input shape, dtype); see the module doc."""
    cdef Program prog  # its records, as a run reads them (_train_step_run.pxd)
    cdef int cap_ops, cap_upd  # what prog.ops and prog.upd have room for

    def __cinit__(self, bint is_float, int max_ops, int max_updates, bint accumulate,
                  dict loops):
        self.prog.is_float = is_float
        self.prog.accumulate = accumulate
        self.prog.ops = <Op*>calloc(max_ops if max_ops > 0 else 1, sizeof(Op))
        self.prog.upd = <Update*>calloc(max_updates if max_updates > 0 else 1, sizeof(Update))
        if self.prog.ops == NULL or self.prog.upd == NULL:
            raise MemoryError()
        self.cap_ops, self.cap_upd = max_ops, max(max_updates, 1)
        self.prog.fused.tail = -1
        suffix = "_f" if is_float else "_d"
        self.prog.loops.adam = <void*><uintptr_t>loops["adam" + suffix]
        self.prog.loops.sgd = <void*><uintptr_t>loops["sgd" + suffix]

    def __dealloc__(self):
        free(self.prog.ops)
        free(self.prog.upd)
        free(self.prog.fused.rest)
        free(self.prog.csr.scratch)

    cdef Op* _new_op(self, int kind, int act, double param, double param2, idx_t n, idx_t k,
                     idx_t m, int nt, uintptr_t X, uintptr_t Y, uintptr_t dX) except NULL:
        """The next op, its common fields set and the rest zero (NULL)."""
        if self.prog.n_ops >= self.cap_ops:
            raise ValueError("more ops than the program was made for")
        cdef Op* o = &self.prog.ops[self.prog.n_ops]
        memset(o, 0, sizeof(Op))
        o.kind, o.act, o.param, o.param2 = kind, act, param, param2
        o.n, o.k, o.m, o.nt = n, k, m, nt
        o.X, o.Y, o.dX = <void*>X, <void*>Y, <void*>dX
        self.prog.n_ops += 1
        self.prog.planned = False
        return o

    def add_dense(self, *, int act, double param, idx_t n, idx_t k, idx_t m, int n_threads,
                  int backward_threads, int bias_rows, uintptr_t X, uintptr_t Y, uintptr_t dX,
                  uintptr_t W, uintptr_t b, uintptr_t dW, uintptr_t db, uintptr_t dz,
                  uintptr_t bias_sums, uintptr_t forward_scratch, int forward_strategy,
                  int backward_strategy, double param2=0.0, uintptr_t Z=0):
        """A Dense op: X (n x k; 0: the batch handed to run()) times W.T plus b, its activation
        ``act`` (parameters param, param2) in the epilogue, into Y (n x m), with the product's
        ``forward_strategy`` (pynn.tune) and its ``dense.forward_scratch`` elements of forward
        scratch (0: none needed). Backward into dW, db (0: frozen) and dX (0: no input
        gradient) with ``backward_strategy`` on ``backward_threads`` with ``bias_rows`` rows of
        bias partial sums (``dense.backward_team``) in ``bias_sums``; dz: the dZ scratch (0: no
        activation); Z: where the pre-activation is kept for an activation whose derivative
        needs it (0: none)."""
        if not dense_strategy_valid(forward_strategy, True):
            raise ValueError(f"forward_strategy: not a forward strategy code, got "
                             f"{forward_strategy}")
        if not dense_strategy_valid(backward_strategy, False):
            raise ValueError(f"backward_strategy: not a backward strategy code, got "
                             f"{backward_strategy}")
        cdef Op* o = self._new_op(OP_DENSE, act, param, param2, n, k, m, n_threads, X, Y, dX)
        o.bnt, o.n_acc = backward_threads, bias_rows
        o.fstrat, o.bstrat = forward_strategy, backward_strategy
        if (forward_strategy & DENSE_THREADING == DENSE_BLAS_THREADS
                or backward_strategy == DENSE_BLAS_THREADS):
            self.prog.exclusive = True
        o.W, o.b, o.dW, o.db, o.dz = <void*>W, <void*>b, <void*>dW, <void*>db, <void*>dz
        o.fwd = <void*>forward_scratch
        o.zs = <void*>Z
        o.acc = <double*>bias_sums

    def add_sparse_dense(self, *, int act, double param, double param2, idx_t n, idx_t k,
                         idx_t m, int n_threads, uintptr_t Y, uintptr_t W, uintptr_t b,
                         uintptr_t dW, uintptr_t db, uintptr_t dz, uintptr_t Z,
                         uintptr_t thread_rows):
        """The first op, a Dense on the CSR batch of run_csr (n x k): act(X W.T + b) into Y
        (n x m), Z: the kept pre-activation (0: none); backward into dW, db (0: frozen) with
        dz (the dZ scratch; 0: no activation); ``thread_rows``: n doubles per thread (float64
        scratch of n_threads * n). No dX."""
        if self.prog.n_ops != 0:
            raise ValueError("a sparse dense op must be the program's first")
        cdef Op* o = self._new_op(OP_SPARSE_DENSE, act, param, param2, n, k, m, n_threads, 0, Y,
                                  0)
        o.W, o.b, o.dW, o.db, o.dz = <void*>W, <void*>b, <void*>dW, <void*>db, <void*>dz
        o.zs = <void*>Z
        o.acc = <double*>thread_rows

    def add_batchnorm(self, *, int act, double param, idx_t n, idx_t features, int n_threads,
                      double eps, uintptr_t X, uintptr_t Y, uintptr_t dX, uintptr_t gamma,
                      uintptr_t beta, uintptr_t dgamma, uintptr_t dbeta,
                      uintptr_t backward_scratch, uintptr_t forward_scratch, uintptr_t mean,
                      uintptr_t invstd, uintptr_t running_mean, uintptr_t running_var,
                      double param2=0.0):
        """A training-mode BatchNorm op over n rows of ``features``, its activation in the
        epilogue; the batch statistics go to mean and invstd (float64), the running ones move
        by run()'s momenta; the scratch sizes are ``batchnorm.scratch_sizes``'s."""
        cdef Op* o = self._new_op(OP_BN, act, param, param2, n, features, features, n_threads,
                                  X, Y, dX)
        o.eps = eps
        o.W, o.b, o.dW, o.db = <void*>gamma, <void*>beta, <void*>dgamma, <void*>dbeta
        o.acc, o.fscratch = <double*>backward_scratch, <double*>forward_scratch
        o.mean, o.invstd = <double*>mean, <double*>invstd
        o.rm, o.rv = <void*>running_mean, <void*>running_var

    def add_activation(self, *, int act, double param, idx_t n, idx_t width, int n_threads,
                       uintptr_t X, uintptr_t Y, uintptr_t dX, double param2=0.0):
        """An activation alone, elementwise over n x width."""
        self._new_op(OP_ACT, act, param, param2, n, width, width, n_threads, X, Y, dX)

    def add_rownorm(self, *, idx_t n, idx_t features, int n_threads, double eps, uintptr_t X,
                    uintptr_t Y, uintptr_t dX, uintptr_t gamma, uintptr_t beta,
                    uintptr_t dgamma, uintptr_t dbeta, uintptr_t mean, uintptr_t invstd,
                    uintptr_t affine_scratch, uintptr_t backward_scratch):
        """A LayerNorm (``mean``: n doubles) or RMSNorm (mean 0) op over n rows of
        ``features``: gamma, beta 0 when the layer has none; ``affine_scratch``: 2 * features
        doubles (gamma and beta in double, refreshed each forward); the backward scratch's size
        is ``rownorm.backward_scratch``'s; dX always (the kernel computes it with the sums)."""
        if dX == 0:
            raise ValueError("a rownorm op needs its dX buffer")
        cdef Op* o = self._new_op(OP_ROWNORM, IDENTITY, 0.0, 0.0, n, features, features,
                                  n_threads, X, Y, dX)
        o.eps = eps
        o.W, o.b, o.dW, o.db = <void*>gamma, <void*>beta, <void*>dgamma, <void*>dbeta
        o.mean, o.invstd = <double*>mean, <double*>invstd
        o.fscratch, o.acc = <double*>affine_scratch, <double*>backward_scratch

    def add_dropout(self, *, idx_t n, idx_t width, int n_threads, unsigned long long threshold,
                    double scale, uintptr_t X, uintptr_t Y, uintptr_t dX, uintptr_t mask):
        """A training-mode dropout op over n x width (``codes.dropout_threshold``, scale
        1 / (1 - p)); its key per step comes from ``set_keys``' array at its index."""
        cdef Op* o = self._new_op(OP_DROPOUT, IDENTITY, scale, 0.0, n, width, width, n_threads,
                                  X, Y, dX)
        o.threshold, o.mask = threshold, <unsigned char*>mask

    def add_residual_begin(self, *, idx_t n, idx_t width, int n_threads, uintptr_t X,
                           uintptr_t dX, uintptr_t skip_grad):
        """A residual's start: the ops after it read its input X (its Y is X); backward dX :=
        dY + skip_grad (its end op's dY; dX 0: no input gradient)."""
        cdef Op* o = self._new_op(OP_RES_BEGIN, IDENTITY, 0.0, 0.0, n, width, width, n_threads,
                                  X, X, dX)
        o.skip = <void*>skip_grad

    def add_residual_end(self, *, idx_t n, idx_t width, int n_threads, uintptr_t X,
                         uintptr_t Y, uintptr_t skip, uintptr_t dY):
        """A residual's end: Y := X + skip (its begin op's input; 0: the batch); backward
        passes ``dY`` (the address its gradient arrives at) down as its dX."""
        cdef Op* o = self._new_op(OP_RES_END, IDENTITY, 0.0, 0.0, n, width, width, n_threads,
                                  X, Y, dY)
        o.skip = <void*>skip

    def set_keys(self, uintptr_t keys):
        """The uint64 array (one entry per op, alive while the program is) whose entry i is
        dropout op i's key in the next run."""
        self.prog.keys = <const uint64_t*>keys

    def op_kinds(self):
        """The kind (step_kinds()) of each op, in order: what the program runs."""
        return [self.prog.ops[i].kind for i in range(self.prog.n_ops)]

    def set_loss(self, *, int kind, uintptr_t G, idx_t n, idx_t k, int n_threads):
        """The loss (LOSS_*) of the last op's n x k output, its gradient into G."""
        self.prog.loss_kind, self.prog.G, self.prog.loss_nt = kind, <void*>G, n_threads
        self.prog.n_out, self.prog.k_out = n, k
        self.prog.grad_rows = <double>n

    def set_gradient_rows(self, double rows):
        """The loss gradient becomes that of a mean over ``rows`` rows (the value stays the
        batch's own mean): under data parallelism the global batch's, so the backward gives
        this rank's part of the global gradient and the ranks' parts add up to it."""
        if not rows > 0:
            raise ValueError(f"rows must be positive, got {rows}")
        self.prog.grad_rows = rows

    def add_update(self, *, int kind, idx_t size, int n_threads, uintptr_t param,
                   uintptr_t grad, uintptr_t state1=0, uintptr_t state2=0, uintptr_t state3=0):
        """An optimizer run over ``size`` elements: UPD_ADAM (states: exp_avg, exp_avg_sq,
        max_exp_avg_sq or 0) or UPD_SGD (state1: the momentum buffer or 0); its scalars come
        from set_adam() or set_sgd() before the next run."""
        cdef Update* grown
        if self.prog.n_upd >= self.cap_upd:  # the optimizer's runs changed (a parameter was frozen)
            grown = <Update*>realloc(self.prog.upd, 2 * self.cap_upd * sizeof(Update))
            if grown == NULL:
                raise MemoryError()
            self.prog.upd, self.cap_upd = grown, 2 * self.cap_upd
        cdef Update* u = &self.prog.upd[self.prog.n_upd]
        u.kind, u.size, u.nt = kind, size, n_threads
        u.p, u.g = <void*>param, <void*>grad
        u.s1, u.s2, u.s3 = <void*>state1, <void*>state2, <void*>state3
        self.prog.n_upd += 1
        self.prog.tied_ok = False

    def clear_updates(self):
        self.prog.n_upd = 0
        self.prog.tied_ok = False

    def fusion(self):
        """What runs fused (for tests): the dense ops whose forward runs the BatchNorm after
        it; the ops whose backwards run by column tiles with the update (the first dense op
        and the BatchNorm after it; empty: none); and how many parameters are updated on
        that region's column tiles."""
        plan_step(&self.prog)
        cdef int tail = self.prog.fused.tail
        return ([i for i in range(self.prog.n_ops) if self.prog.ops[i].fused_nt > 0],
                [tail - 1, tail] if tail >= 0 else [], self.prog.fused.n_tied)

    def set_adam(self, int i, *, double beta1, double beta2, double eps, double weight_decay,
                 double l1, double decay, double step_size, double bc2_sqrt, double lr,
                 bint eps_before_correction):
        """Adam update i's loop scalars (``adam_loop_scalars``: beta1 .. bc2_sqrt), and what
        ``set_step`` derives the next steps' from: lr and the form (eps placed before the
        correction or after it)."""
        cdef Update* u = &self.prog.upd[i]
        u.a[0], u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7] = (
            beta1, beta2, eps, weight_decay, l1, decay, step_size, bc2_sqrt)
        u.lr, u.eps_before = lr, eps_before_correction

    def set_sgd(self, int i, *, double lr, double momentum, double dampening,
                double weight_decay, double l1, int mode, bint nesterov):
        """SGD update i's loop scalars; ``mode``: the loop's variant (plain, first or momentum,
        ``pynn._kernels.optim.update_loops``)."""
        cdef Update* u = &self.prog.upd[i]
        u.a[0], u.a[1], u.a[2], u.a[3], u.a[4] = lr, momentum, dampening, weight_decay, l1
        u.mode, u.flag = mode, nesterov

    def set_step(self, int i, double t):
        """Adam update i at step t (adam_step_scalars: the scalars that move with the step);
        set_adam() gave the rest."""
        adam_step_scalars(&self.prog.upd[i], t)

    def run(self, cnp.ndarray X, cnp.ndarray target, cnp.ndarray momenta, int phases):
        """One step on the batch X against ``target`` (labels or targets), with BatchNorm op i
        moving its running statistics by momenta[i]: the phases in the bit mask ``phases``
        (FORWARD: forward and loss, BACKWARD, UPDATE: the optimizer's), in that order. Returns
        the loss value (nan without FORWARD).

        The caller has checked every array: X and target C-contiguous, of the program's shape
        and dtype (labels: intp, in range: ``labels_in_range``), momenta float64."""
        cdef double loss
        cdef void* xp = cnp.PyArray_DATA(X)
        cdef uintptr_t tp = <uintptr_t>cnp.PyArray_DATA(target)
        cdef const double* mp = <const double*>cnp.PyArray_DATA(momenta)
        with nogil:
            loss = run_step(&self.prog, xp, tp, mp, phases)
        return loss

    def run_batches(self, cnp.ndarray X, cnp.ndarray targets, cnp.ndarray momenta,
                    cnp.ndarray keys, cnp.ndarray steps, double[::1] values, object penalty,
                    double half_alpha=0.0, double weight_sum=1.0):
        """``len(values)`` whole steps in one call, batch b on rows [b n, (b + 1) n) of X and of
        ``targets``, with row b of ``momenta`` and of ``keys`` (float64 and uint64, one entry
        per op: what ``run`` and ``set_keys`` take), every update Adam's at step steps[b, j]
        (float64, one per update; row 0 unread: its scalars are set); values[b] := that step's
        loss plus, with ``penalty`` (an array of the program's dtype, the weights), the L2 term
        (half_alpha * dot(penalty, penalty)) / weight_sum read before the step's update.

        The caller has checked every array as for ``run``, the whole block at once."""
        cdef Batches B
        cdef cnp.ndarray w
        cdef idx_t count = values.shape[0]
        cdef idx_t d = sizeof(double)  # (uint64_t's size too)
        cdef int j
        if count < 1:
            return
        for j in range(self.prog.n_upd):
            if self.prog.upd[j].kind != UPD_ADAM:
                raise ValueError("run_batches runs Adam updates only")
        B.op_stride = cnp.PyArray_NBYTES(momenta) // (count * d)
        if (B.op_stride < self.prog.n_ops
                or cnp.PyArray_NBYTES(momenta) != count * B.op_stride * d
                or cnp.PyArray_NBYTES(keys) != count * B.op_stride * d
                or cnp.PyArray_NBYTES(steps) != count * self.prog.n_upd * d):
            raise ValueError("momenta, keys and steps need one row per batch (a row of "
                             "momenta and keys: an entry per op at least)")
        B.X, B.targets = <char*>cnp.PyArray_DATA(X), <char*>cnp.PyArray_DATA(targets)
        B.x_stride = cnp.PyArray_NBYTES(X) // count
        B.target_stride = cnp.PyArray_NBYTES(targets) // count
        B.momenta = <const double*>cnp.PyArray_DATA(momenta)
        B.keys = <const uint64_t*>cnp.PyArray_DATA(keys)
        B.steps = <const double*>cnp.PyArray_DATA(steps)
        B.values = &values[0]
        B.w, B.n_penalty = NULL, 0
        B.half_alpha, B.weight_sum = half_alpha, weight_sum
        if penalty is not None:
            w = penalty
            if (not cnp.PyArray_IS_C_CONTIGUOUS(w) or cnp.PyArray_TYPE(w)
                    != <int>(cnp.NPY_FLOAT32 if self.prog.is_float else cnp.NPY_FLOAT64)):
                raise ValueError("penalty must be a C-contiguous array of the program's dtype")
            if cnp.PyArray_SIZE(w) > INT_MAX:
                raise ValueError("penalty: more elements than BLAS's int counts")
            B.w, B.n_penalty = cnp.PyArray_DATA(w), <int>cnp.PyArray_SIZE(w)
        with nogil:
            run_batches(&self.prog, &B, count)

    def run_csr(self, cnp.ndarray data, cnp.ndarray indices, cnp.ndarray indptr,
                cnp.ndarray target, cnp.ndarray momenta, int phases):
        """``run`` on a CSR batch (data, indices, indptr: C-contiguous, data of the program's
        dtype, int32 or int64 indices with indptr of the same type, checked by the caller:
        csr_arrays) for a program whose first op is OP_SPARSE_DENSE."""
        cdef double loss
        cdef Op* first = &self.prog.ops[0]
        cdef uintptr_t tp = <uintptr_t>cnp.PyArray_DATA(target)
        cdef const double* mp = <const double*>cnp.PyArray_DATA(momenta)
        if self.prog.n_ops == 0 or first.kind != OP_SPARSE_DENSE:
            raise ValueError("run_csr needs a program whose first op is a sparse dense op")
        if cnp.PyArray_DIM(indptr, 0) != first.n + 1:
            raise ValueError(f"indptr must have {first.n + 1} entries")
        csr_batch_set(&self.prog.csr, first.k, data, indices, indptr, (phases & FORWARD) != 0)
        with nogil:
            loss = run_step(&self.prog, NULL, tp, mp, phases)
        return loss
