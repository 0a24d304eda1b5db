# The compiled training step's run (pynn._kernels.train_step): the program's records as a run
# reads them (Program) and one step over them without the GIL (run_step): the products lock,
# the fusion's plan, then the phases, every op's forward and the loss, every op's backward, the
# optimizer's update. train_step.pyx fills the records through its builder's keyword methods
# and hands each run its arrays; apart from it because this part is C alone and reads nothing
# but the records: the builder changes with what Python hands over, this with how a step runs.
# The ops run through the very loops the per-call kernels use (the .pxd cores of dense,
# batchnorm, losses and activations; the blocks' and the fused regions'), so a step is the
# eager step bit for bit.
from libc.math cimport NAN, pow, sqrt
from libc.stdint cimport uint64_t, uintptr_t
from scipy.linalg.cython_blas cimport ddot, sdot

from _types cimport idx_t
from _activations cimport IDENTITY
from _activations_threads cimport act_backward_threads, act_forward_threads
from _batchnorm cimport bn_backward_core, bn_forward_train_core
from _dense cimport dense_forward_core, pynn_products_acquire, pynn_products_release
from _dense_backward cimport dense_backward_blas_nt, dense_backward_core
from _losses cimport bce_core, mse_core, softmax_ce_core
from _train_step cimport (BACKWARD, FORWARD, LOSS_CE, LOSS_MSE, OP_BN, OP_DENSE,
                          OP_SPARSE_DENSE, UPD_ADAM, UPDATE, Fusion, Loops, Op, Update,
                          update_range)
from _train_step_blocks cimport block_backward, block_forward, is_block_op
from _train_step_fusion cimport dense_bn_forward, plan_fusion, tail_backward, tie_updates
from _train_step_sparse cimport CsrBatch, sparse_backward, sparse_forward


cdef struct Program:
    # A StepProgram's records (its builder's methods fill them in), as a run reads and writes
    # them
    Op* ops
    int n_ops
    Update* upd
    int n_upd
    bint is_float, accumulate
    int loss_kind, loss_nt
    double grad_rows  # the rows the loss gradient's mean is over (set_gradient_rows)
    void* G
    idx_t n_out, k_out
    Loops loops
    const uint64_t* keys  # per op: a dropout op's key for this step (set_keys)
    # what runs fused (_train_step_fusion.pxd): planned once the ops are in, tied again
    # whenever the updates change
    Fusion fused
    bint planned, tied_ok
    CsrBatch csr  # the batch of run_csr (a program whose first op is OP_SPARSE_DENSE)
    # some product runs on BLAS's own threads: a run holds the products lock exclusively
    bint exclusive


cdef inline void plan_step(Program* prog) noexcept nogil:
    """What runs fused: planned once the ops are in, the updates tied again whenever they
    changed."""
    if not prog.planned:
        plan_fusion(prog.ops, prog.n_ops, &prog.fused)
        prog.planned = True
        prog.tied_ok = False
    if not prog.tied_ok:
        prog.tied_ok = tie_updates(prog.ops, prog.upd, prog.n_upd,
                                   sizeof(float) if prog.is_float else sizeof(double),
                                   &prog.fused) == 0


cdef inline double run_step(Program* prog, void* X0, uintptr_t target, const double* momenta,
                            int phases) noexcept nogil:
    """One step (StepProgram.run; X0 NULL: run_csr's batch) in the program's dtype, the fusion
    planned first, under the products lock (exclusive when some product runs on BLAS's own
    threads)."""
    cdef double loss
    pynn_products_acquire(prog.exclusive)
    plan_step(prog)
    if prog.is_float:
        loss = _run[float](prog, <float*>X0, target, momenta, phases)
    else:
        loss = _run[double](prog, <double*>X0, target, momenta, phases)
    pynn_products_release(prog.exclusive)
    return loss


cdef inline void adam_step_scalars(Update* u, double t) noexcept nogil:
    """Adam update u at step t: the scalars that move with the step, computed as
    ``pynn.backend._optim_steps.adam_loop_scalars`` computes them (the same operations in
    double, so the same bits): the step size and sqrt(1 - beta2^t), or with eps placed before
    the correction scikit-learn's step size and 1."""
    cdef double correction2 = 1.0 - pow(u.a[1], t)
    u.a[7] = sqrt(correction2)
    if u.eps_before:
        u.a[6] = u.lr * u.a[7] / (1.0 - pow(u.a[0], t))
        u.a[7] = 1.0
    else:
        u.a[6] = u.lr / (1.0 - pow(u.a[0], t))


cdef struct Batches:
    # run_batches' arrays: batch b's rows of X and of the targets at b times the strides, its
    # BatchNorm momenta and dropout keys at row b (one entry per op), its Adam step counts at
    # row b (one per update; row 0 unread: the caller set that step's scalars), its value out
    char* X
    char* targets
    idx_t x_stride, target_stride, op_stride
    const double* momenta
    const uint64_t* keys
    const double* steps
    double* values
    # the L2 penalty added to each value, read before the step's update:
    # (half_alpha * dot(w, w)) / weight_sum over the n_penalty elements at w (none: NULL)
    void* w
    int n_penalty
    double half_alpha, weight_sum


cdef inline void run_batches(Program* prog, Batches* B, idx_t count) noexcept nogil:
    """``count`` whole steps, one per batch of B, each as run_step runs it; the value of batch
    b (its loss plus the penalty) into B.values[b]."""
    cdef idx_t b
    cdef int j, one = 1
    cdef double penalty
    cdef const uint64_t* own_keys = prog.keys  # (set_keys' array: run reads it again)
    for b in range(count):
        if b > 0:
            for j in range(prog.n_upd):
                if prog.upd[j].kind == UPD_ADAM:
                    adam_step_scalars(&prog.upd[j], B.steps[b * prog.n_upd + j])
        prog.keys = B.keys + b * B.op_stride
        penalty = 0.0
        if B.w != NULL:
            # BLAS's dot, as scipy.linalg.blas.sdot/ddot gives the Python step its value
            if prog.is_float:
                penalty = <double>sdot(&B.n_penalty, <float*>B.w, &one, <float*>B.w, &one)
            else:
                penalty = ddot(&B.n_penalty, <double*>B.w, &one, <double*>B.w, &one)
            penalty = B.half_alpha * penalty / B.weight_sum
        B.values[b] = penalty + run_step(prog, B.X + b * B.x_stride,
                                         <uintptr_t>(B.targets + b * B.target_stride),
                                         B.momenta + b * B.op_stride,
                                         FORWARD | BACKWARD | UPDATE)
    prog.keys = own_keys


ctypedef fused real:
    float
    double


cdef inline double _run(Program* prog, real* X0, uintptr_t target, const double* momenta,
                        int phases) noexcept nogil:
    cdef double loss = NAN
    cdef bint updated = False
    if phases & FORWARD:
        loss = _forward(prog, X0, target, momenta)
    if phases & BACKWARD:
        updated = _backward(prog, X0, (phases & UPDATE) != 0)
    if phases & UPDATE and not updated:
        _update(prog, X0)
    return loss


# -------------------------------------------------------------------------------- the phases
cdef inline double _forward(Program* prog, real* X0, uintptr_t target,
                            const double* momenta) noexcept nogil:
    """Every op's forward, then the loss and its gradient: the loss value."""
    cdef int i = 0
    cdef Op* o
    cdef real* X
    cdef double loss, denom
    while i < prog.n_ops:
        o = &prog.ops[i]
        X = X0 if o.X == NULL else <real*>o.X
        if o.fused_nt > 0:
            dense_bn_forward(o, &prog.ops[i + 1], X, momenta[i + 1])
            i += 2
            continue
        if o.kind == OP_DENSE:
            dense_forward_core(X, <real*>o.W, <real*>o.b, <real*>o.Y, <real*>o.fwd, o.n, o.k,
                               o.m, o.act, <real>o.param, <real>o.param2, <real*>o.zs, o.nt,
                               o.fstrat)
        elif o.kind == OP_BN:
            bn_forward_train_core(X, <real*>o.W, <real*>o.b, <real*>o.rm, <real*>o.rv,
                                  momenta[i], o.eps, <real*>o.Y, o.mean, o.invstd, o.fscratch,
                                  o.n, o.k, o.act, <real>o.param, <real>o.param2, o.nt)
        elif is_block_op(o.kind):
            block_forward(o, X, X0, prog.keys[i])
        elif o.kind == OP_SPARSE_DENSE:
            sparse_forward(o, &prog.csr, X0)
        else:
            act_forward_threads(o.act, <real>o.param, <real>o.param2, X, <real*>o.Y, o.n * o.k,
                                o.nt)
        i += 1
    # loss and its gradient
    o = &prog.ops[prog.n_ops - 1]
    # The plain mean, computed as the losses' Python side computes it from the cores'
    # weighted sums (gradient scale 1 / denominator, then sum / denominator): bit-identical.
    # (grad_rows is n_out unless set_gradient_rows changed it: the same 1 / denominator)
    if prog.loss_kind == LOSS_CE:
        denom = <double>prog.n_out
        loss = softmax_ce_core(<real*>o.Y, <const Py_ssize_t*>target, NULL, <real*>prog.G,
                               NULL, prog.n_out, prog.k_out, 1.0 / prog.grad_rows,
                               prog.loss_nt)
    elif prog.loss_kind == LOSS_MSE:
        denom = <double>prog.n_out * <double>prog.k_out
        loss = mse_core(<real*>o.Y, <real*>target, NULL, <real*>prog.G, NULL,
                        prog.n_out * prog.k_out, prog.k_out,
                        1.0 / (prog.grad_rows * <double>prog.k_out), prog.loss_nt)
    else:
        denom = <double>prog.n_out * <double>prog.k_out
        loss = bce_core(<real*>o.Y, <real*>target, NULL, NULL, <real*>prog.G, NULL,
                        prog.n_out * prog.k_out, prog.k_out,
                        1.0 / (prog.grad_rows * <double>prog.k_out), prog.loss_nt)
    return loss / denom


cdef inline bint _backward(Program* prog, real* X0, bint update) noexcept nogil:
    """Every op's backward, from the loss gradient down, into the parameters' gradients; with
    ``update``, the fused backward that ends it (if any) also runs the whole update: True when
    it did."""
    cdef int i
    cdef Op* o
    cdef real* X
    cdef bint acc = prog.accumulate
    cdef real* dY = <real*>prog.G
    for i in range(prog.n_ops - 1, -1, -1):
        o = &prog.ops[i]
        X = X0 if o.X == NULL else <real*>o.X
        if i == prog.fused.tail:
            update = update and prog.tied_ok and prog.fused.n_tied > 0
            tail_backward(prog.ops, &prog.fused, prog.upd, &prog.loops, X0, dY, update, acc)
            return update  # the dense op has no dX: nothing further down
        if o.kind == OP_DENSE:
            dense_backward_core(dY, X, <real*>o.W, <real*>o.Y if o.dz != NULL else NULL,
                                <real*>o.zs if o.dz != NULL else NULL, <real*>o.dz, o.acc,
                                <real*>o.dW, <real*>o.db, <real*>o.dX, o.n, o.m, o.k, o.act,
                                <real>o.param, <real>o.param2, o.bnt, o.n_acc, acc,
                                dense_backward_blas_nt(o.bstrat, o.nt))
        elif o.kind == OP_BN:
            bn_backward_core(dY, <real*>o.Y if o.act != IDENTITY else NULL, X, <real*>o.W,
                             o.mean, o.invstd, <real*>o.dW, <real*>o.db, <real*>o.dX, o.acc,
                             o.n, o.k, o.act, <real>o.param, <real>o.param2, o.nt, acc)
        elif is_block_op(o.kind):
            block_backward(o, dY, X, acc)
        elif o.kind == OP_SPARSE_DENSE:
            sparse_backward(o, &prog.csr, dY, acc)
        elif o.dX != NULL:
            act_backward_threads(o.act, <real>o.param, <real>o.param2, dY, X, <real*>o.Y,
                                 <real*>o.dX, o.n * o.k, o.nt)
        if o.dX == NULL:
            break  # the first op and no input gradient: nothing further down
        dY = <real*>o.dX
    return False


cdef inline void _update(Program* prog, real* tag) noexcept nogil:
    """Every optimizer run's fused loop (``tag`` only selects the dtype)."""
    cdef int i
    for i in range(prog.n_upd):
        update_range(&prog.loops, &prog.upd[i], tag, 0, prog.upd[i].size, prog.upd[i].nt)
