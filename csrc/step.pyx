"""pynn._kernels.step: a whole training step of a Sequential in one call without the GIL.

forward, loss, backward and the optimizer update run back to back over buffers the Python side
(pynn.nn.train_step) allocated once, through the very loops the per-call kernels use (the .pxd
cores of dense, batchnorm, losses and activations; the optimizers' loops by address from
pynn._kernels.optim, compiled there with that module's flags), so the results are bit-identical
to the eager step. Python is entered once per step instead of ~10-30 times, and nothing is
validated or allocated per step but the caller's batch and labels (checked by the caller).

Each op records raw addresses: the Python side owns the arrays and keeps them alive while the
program exists, and re-checks before every run that none has moved.
"""
cimport numpy as cnp
from libc.math cimport NAN, pow, sqrt
from libc.stdint cimport uintptr_t
from libc.stdlib cimport calloc, free, realloc
from cython.parallel cimport prange
from scipy.linalg.cython_blas cimport sgemm

from _types cimport idx_t
from _act cimport IDENTITY
from _act_threads cimport act_backward_threads, act_forward_threads
from _batchnorm cimport (_col_tile, bn_backward_cols, bn_backward_core, bn_backward_scratch,
                         bn_forward_cols, bn_forward_scratch, bn_forward_train_core, bn_team)
from _dense cimport (dense_backward_core, dense_backward_team, dense_backward_tile,
                     dense_dz_cols, dense_forward_by_cols, dense_forward_cols,
                     dense_forward_core, dense_team, dense_tile, pynn_blas_control,
                     pynn_blas_threads_init)
from _losses cimport bce_core, mse_core, softmax_ce_core
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)

pynn_blas_threads_init(<void*>sgemm)
cnp.import_array()

# Op kinds, loss kinds and update kinds, mirrored by pynn/nn/train_step.py.
cdef enum:
    OP_DENSE = 0
    OP_BN = 1
    OP_ACT = 2
    LOSS_CE = 0
    LOSS_MSE = 1
    LOSS_BCE = 2
    UPD_ADAM = 0
    UPD_SGD = 1
    # phases of a run (a bit mask)
    FORWARD = 1
    BACKWARD = 2
    UPDATE = 4
    # Elements a thread's share of an update starts on a multiple of: 16 floats are one
    # 64-byte line, so two threads do not write one line.
    SHARE_UNIT = 16
    MAX_TIED = 4

ctypedef void (*adam_f_t)(float*, const float*, float*, float*, float*, idx_t, double, double,
                          double, double, double, double, double, double, int) noexcept nogil
ctypedef void (*adam_d_t)(double*, const double*, double*, double*, double*, idx_t, double,
                          double, double, double, double, double, double, double,
                          int) noexcept nogil
ctypedef void (*sgd_f_t)(float*, const float*, float*, idx_t, double, double, double, double,
                         double, int, bint, int) noexcept nogil
ctypedef void (*sgd_d_t)(double*, const double*, double*, idx_t, double, double, double,
                         double, double, int, bint, int) noexcept nogil


cdef struct Op:
    int kind, act, nt, bnt, n_acc
    int fused_nt               # dense: > 0 when the forward of the BatchNorm op after it runs
                               # in the same region, on the same column tiles (see fusion)
    double param, eps
    idx_t n, k, m              # rows, input width, output width
    void* X                    # input (NULL: the batch handed to run())
    void* Y
    void* dX                   # NULL: no input gradient wanted
    void* W                    # weight / gamma
    void* b                    # bias / beta (NULL: none)
    void* dW                   # NULL: frozen
    void* db
    void* dz                   # dense: dZ scratch (activation)
    double* acc                # dense: bias partial sums / batchnorm: backward scratch
    double* fscratch           # batchnorm: forward scratch
    double* mean
    double* invstd
    void* rm                   # batchnorm running statistics
    void* rv


cdef struct Update:
    int kind, nt, mode
    bint flag
    idx_t size
    void* p
    void* g
    void* s1
    void* s2
    void* s3
    double a[8]                # the loop's scalars, filled by set_update() before each run
    double lr, eps             # Adam: what set_step() derives the step's scalars from
    bint eps_before


cdef struct Tied:
    # A parameter whose update runs in the fused backward region, column tile by column tile,
    # on the thread that just wrote that tile of its gradient: update u's elements
    # [off + c0 row, off + c1 row) for columns c0..c1.
    int u
    idx_t off, row


cdef struct Piece:
    # Elements [lo, hi) of update u: what the fused backward region's threads update evenly
    # shared, after their own tiles (everything in the updates but the tied parameters).
    int u
    idx_t lo, hi


cdef class StepProgram:
    """The ops of one (model, loss, optimizer, input shape, dtype); see the module doc."""
    cdef Op* ops
    cdef int n_ops, cap_ops
    cdef Update* upd
    cdef int n_upd, cap_upd
    cdef bint is_float, accumulate
    cdef int loss_kind, loss_nt
    cdef void* G
    cdef idx_t n_out, k_out
    cdef void* adam_fn
    cdef void* sgd_fn
    # Fusion (see _plan_fusion): tail is the BatchNorm op whose backward runs in one region
    # with the dense op before it, which ends the backward (no dX), and so with the update
    # (-1: none); the updates tied to that region, and the rest of the updates as pieces, are
    # re-derived whenever the updates change.
    cdef bint planned, tied_ok
    cdef int tail, n_tied, n_rest
    cdef Tied tied[MAX_TIED]
    cdef Piece* rest

    def __cinit__(self, bint is_float, int max_ops, int max_updates, bint accumulate,
                  dict loops):
        self.is_float = is_float
        self.accumulate = accumulate
        self.ops = <Op*>calloc(max_ops if max_ops > 0 else 1, sizeof(Op))
        self.upd = <Update*>calloc(max_updates if max_updates > 0 else 1, sizeof(Update))
        if self.ops == NULL or self.upd == NULL:
            raise MemoryError()
        self.cap_ops, self.cap_upd = max_ops, max(max_updates, 1)
        self.tail = -1
        suffix = "_f" if is_float else "_d"
        self.adam_fn = <void*><uintptr_t>loops["adam" + suffix]
        self.sgd_fn = <void*><uintptr_t>loops["sgd" + suffix]

    def __dealloc__(self):
        free(self.ops)
        free(self.upd)
        free(self.rest)

    def add_op(self, int kind, int act, double param, idx_t n, idx_t k, idx_t m, int nt,
               int bnt, int n_acc, double eps, uintptr_t X, uintptr_t Y, uintptr_t dX,
               uintptr_t W, uintptr_t b, uintptr_t dW, uintptr_t db, uintptr_t dz,
               uintptr_t acc, uintptr_t fscratch, uintptr_t mean, uintptr_t invstd,
               uintptr_t rm, uintptr_t rv):
        if self.n_ops >= self.cap_ops:
            raise ValueError("more ops than the program was made for")
        cdef Op* o = &self.ops[self.n_ops]
        o.kind, o.act, o.param, o.n, o.k, o.m = kind, act, param, n, k, m
        o.nt, o.bnt, o.n_acc, o.eps = nt, bnt, n_acc, eps
        o.X, o.Y, o.dX = <void*>X, <void*>Y, <void*>dX
        o.W, o.b, o.dW, o.db = <void*>W, <void*>b, <void*>dW, <void*>db
        o.dz, o.acc, o.fscratch = <void*>dz, <double*>acc, <double*>fscratch
        o.mean, o.invstd, o.rm, o.rv = <double*>mean, <double*>invstd, <void*>rm, <void*>rv
        self.n_ops += 1
        self.planned = False

    def set_loss(self, int kind, uintptr_t G, idx_t n, idx_t k, int nt):
        self.loss_kind, self.G, self.n_out, self.k_out, self.loss_nt = kind, <void*>G, n, k, nt

    def add_update(self, int kind, idx_t size, int nt, uintptr_t p, uintptr_t g, uintptr_t s1,
                   uintptr_t s2, uintptr_t s3):
        cdef Update* grown
        if self.n_upd >= self.cap_upd:  # the optimizer's runs changed (a parameter was frozen)
            grown = <Update*>realloc(self.upd, 2 * self.cap_upd * sizeof(Update))
            if grown == NULL:
                raise MemoryError()
            self.upd, self.cap_upd = grown, 2 * self.cap_upd
        cdef Update* u = &self.upd[self.n_upd]
        u.kind, u.size, u.nt = kind, size, nt
        u.p, u.g, u.s1, u.s2, u.s3 = <void*>p, <void*>g, <void*>s1, <void*>s2, <void*>s3
        self.n_upd += 1
        self.tied_ok = False

    def clear_updates(self):
        self.n_upd = 0
        self.tied_ok = False

    def fusion(self):
        """What runs fused (for tests): the dense ops whose forward runs the BatchNorm after
        it; the ops whose backwards run by column tiles with the update (the first dense op
        and the BatchNorm after it; empty: none); and how many parameters are updated on
        that region's column tiles."""
        self._plan()
        return ([i for i in range(self.n_ops) if self.ops[i].fused_nt > 0],
                [self.tail - 1, self.tail] if self.tail >= 0 else [], self.n_tied)

    cdef void _plan(self) noexcept nogil:
        if not self.planned:
            _plan_fusion(self)
            self.planned = True
            self.tied_ok = False
        if not self.tied_ok:
            self.tied_ok = _tie_updates(self) == 0

    def set_update(self, int i, double a0, double a1, double a2, double a3, double a4,
                   double a5, double a6, double a7, int mode, bint flag):
        """Scalars of update i for the next run (Adam: beta1, beta2, eps, weight_decay, l1,
        decay, step_size, bc2_sqrt; SGD: lr, momentum, dampening, weight_decay, l1 and the
        mode and nesterov flag)."""
        cdef Update* u = &self.upd[i]
        u.a[0], u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7] = (
            a0, a1, a2, a3, a4, a5, a6, a7)
        u.mode, u.flag = mode, flag

    def set_adam(self, int i, double lr, double eps, bint eps_before):
        """Adam update i's learning rate, eps and eps placement (``adam_loop_scalars``), for
        ``set_step``; its other scalars stay as set_update() left them."""
        cdef Update* u = &self.upd[i]
        u.lr, u.eps, u.eps_before = lr, eps, eps_before

    def set_step(self, int i, double t):
        """Adam update i at step t: the three scalars that move with the step, computed as
        ``pynn.backend._optim_steps.adam_loop_scalars`` computes them (the same operations in
        double, so the same bits): eps (placed before the correction), lr / (1 - beta1^t) and
        sqrt(1 - beta2^t)."""
        cdef Update* u = &self.upd[i]
        cdef double correction2 = 1.0 - pow(u.a[1], t)
        u.a[6] = u.lr / (1.0 - pow(u.a[0], t))
        u.a[7] = sqrt(correction2)
        u.a[2] = u.eps / pow(correction2, 0.5) if u.eps_before and correction2 < 1.0 else u.eps

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
            self._plan()
            if self.is_float:
                loss = _run[float](self, <float*>xp, tp, mp, phases)
            else:
                loss = _run[double](self, <double*>xp, tp, mp, phases)
        return loss


ctypedef fused real:
    float
    double


cdef double _run(StepProgram prog, real* X0, uintptr_t target, const double* momenta,
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


# ------------------------------------------------------------------------------------ fusion
# A dense layer and the BatchNorm after it can share column tiles: a dense forward by columns
# gives thread t all rows of columns c0..c1, which is all a BatchNorm column tile needs; a
# BatchNorm backward's column tile is all rows of dZ for the dense backward's weight rows
# c0..c1 (dW = dZ.T X needs no other column of dZ). When both split the columns alike, the
# pair runs as one parallel region with no barrier: each thread goes from the product to the
# normalization (or back) on data it just wrote, and the two layers wait for their slowest
# thread once instead of twice. And when the dense layer is the first (no dX: nothing reads W
# after dW), its thread updates the rows of W, b, gamma and beta it just wrote the gradients
# of, while they are in its cache, and then takes its share of the rest of the update: the
# backward of the last two layers and the whole update are one region. Each column is
# computed by the same loops in the same order as unfused, by whichever thread, and the
# updates are elementwise: the same bits.

cdef bint _tiles_agree(idx_t m, int nt) noexcept nogil:
    """A dense layer's nt tiles of m columns (weight rows) are BatchNorm's column tiles."""
    cdef int t
    if bn_team(m, nt) != nt:
        return False
    for t in range(1, nt):
        if _col_tile(t, nt, m) != dense_tile(t, nt, m):
            return False
    return True


cdef void _plan_fusion(StepProgram prog) noexcept nogil:
    """Which ops run fused (the ops are fixed when the program is built)."""
    cdef int i, nt
    cdef Op* d
    cdef Op* b
    prog.tail = -1
    for i in range(prog.n_ops):
        prog.ops[i].fused_nt = 0
    if not pynn_blas_control():
        return  # BLAS threads its own products: no per-thread tiles to share
    for i in range(prog.n_ops - 1):
        d = &prog.ops[i]
        b = &prog.ops[i + 1]
        # forward: as dense_forward_core splits it, and BatchNorm's tiles agree
        nt = dense_team(d.n * d.m * d.k, d.m, d.nt)
        if (d.kind == OP_DENSE and b.kind == OP_BN and b.X == d.Y
                and dense_forward_by_cols(d.n, d.m) and nt >= 2 and _tiles_agree(d.m, nt)):
            d.fused_nt = nt
    # backward: the dense op where the backward ends (no dX, which would read every column of
    # dZ), with dense_backward_core's team splitting dW by rows, and the BatchNorm after it on
    # the same column tiles. (The dense op alone, its dZ by column tiles, measured 2-5% slower
    # than unfused on a 784-256-128-10 ReLU net when the host's caches are contended.)
    if prog.n_ops > 1:
        d = &prog.ops[0]
        b = &prog.ops[1]
        if (d.kind == OP_DENSE and d.dX == NULL and (d.dW != NULL or d.db != NULL)
                and d.bnt >= 2 and d.n_acc == d.bnt and b.kind == OP_BN and b.X == d.Y
                and _tiles_agree(d.m, d.bnt)):
            prog.tail = 1


cdef int _tie_updates(StepProgram prog) noexcept nogil:
    """Find the fused backward's parameters in the updates (``tied``) and cut the rest of the
    updates into pieces. 0, or -1 (out of memory: nothing tied, the update runs unfused)."""
    cdef Op* b
    cdef Op* d
    cdef void* params[MAX_TIED]
    cdef void* grads[MAX_TIED]
    cdef idx_t rows[MAX_TIED]
    cdef idx_t cut_lo[MAX_TIED]
    cdef idx_t cut_hi[MAX_TIED]
    cdef size_t isz = sizeof(float) if prog.is_float else sizeof(double)
    cdef int i, j, u, n_cut
    cdef idx_t off, lo, count
    cdef Update* up
    cdef Piece* pieces
    prog.n_tied = 0
    prog.n_rest = 0
    if prog.tail < 0 or prog.n_upd == 0:
        return 0
    b = &prog.ops[prog.tail]
    d = &prog.ops[prog.tail - 1]
    params[0], grads[0], rows[0] = d.W, d.dW, d.k
    params[1], grads[1], rows[1] = d.b, d.db, 1
    params[2], grads[2], rows[2] = b.W, b.dW, 1
    params[3], grads[3], rows[3] = b.b, b.db, 1
    pieces = <Piece*>realloc(prog.rest, (prog.n_upd + MAX_TIED) * sizeof(Piece))
    if pieces == NULL:
        return -1
    prog.rest = pieces
    for i in range(MAX_TIED):
        if grads[i] == NULL:
            continue  # frozen: nothing to update
        count = d.m * rows[i]
        for u in range(prog.n_upd):
            up = &prog.upd[u]
            if <char*>grads[i] < <char*>up.g or <char*>grads[i] >= <char*>up.g + up.size * isz:
                continue
            off = (<char*>grads[i] - <char*>up.g) // isz
            # the same offset in the parameters, and the whole parameter in this update
            if <char*>up.p + off * isz == <char*>params[i] and off + count <= up.size:
                prog.tied[prog.n_tied].u = u
                prog.tied[prog.n_tied].off = off
                prog.tied[prog.n_tied].row = rows[i]
                prog.n_tied += 1
            break
    # the rest: each update minus its tied ranges, in element order
    for u in range(prog.n_upd):
        n_cut = 0
        for i in range(prog.n_tied):
            if prog.tied[i].u == u:
                cut_lo[n_cut] = prog.tied[i].off
                cut_hi[n_cut] = prog.tied[i].off + d.m * prog.tied[i].row
                n_cut += 1
        lo = 0
        while True:
            j = -1  # the first cut at or after lo
            for i in range(n_cut):
                if cut_lo[i] >= lo and (j < 0 or cut_lo[i] < cut_lo[j]):
                    j = i
            off = prog.upd[u].size if j < 0 else cut_lo[j]
            if off > lo:
                pieces[prog.n_rest].u = u
                pieces[prog.n_rest].lo = lo
                pieces[prog.n_rest].hi = off
                prog.n_rest += 1
            if j < 0:
                break
            lo = cut_hi[j]
    return 0


cdef idx_t _share(idx_t lo, idx_t hi, int t, int nt) noexcept nogil:
    """First element of thread t's share of [lo, hi) (a multiple of SHARE_UNIT from lo)."""
    if t >= nt:
        return hi
    return min(lo + ((hi - lo) * t // nt) // SHARE_UNIT * SHARE_UNIT, hi)


cdef void _dense_bn_forward(Op* d, Op* b, real* X, double momentum) noexcept nogil:
    """A dense forward by column tiles, each thread then normalizing its own columns."""
    cdef int t, nt = d.fused_nt
    cdef idx_t c0, c1
    for t in prange(nt, schedule="static", num_threads=nt):
        c0 = dense_tile(t, nt, d.m)
        c1 = dense_tile(t + 1, nt, d.m)
        dense_forward_cols(X, <real*>d.W, <real*>d.b, <real*>d.Y, c0, c1, d.n, d.k, d.m,
                           d.act, <real>d.param)
        bn_forward_cols(<real*>d.Y, <real*>b.W, <real*>b.b, <real*>b.rm, <real*>b.rv,
                        momentum, b.eps, <real*>b.Y, b.mean, b.invstd, b.fscratch, b.n, b.k,
                        c0, c1, b.act, <real>b.param)


cdef void _tail_backward(StepProgram prog, real* X0, real* dY, bint update) noexcept nogil:
    """The backward of BatchNorm op ``tail`` and the dense op before it (no dX) by column
    tiles: BatchNorm's dX, the dense layer's dZ and bias sums, dW's rows; with ``update``, the
    tied parameters' updates on the same tiles and the rest shared out."""
    cdef Op* b = &prog.ops[prog.tail]
    cdef Op* d = &prog.ops[prog.tail - 1]
    cdef real* Xd = X0 if d.X == NULL else <real*>d.X
    cdef real* dYd = <real*>b.dX                         # the dense layer's dY
    cdef real* z = <real*>d.dz if d.dz != NULL else dYd  # its dZ
    cdef int t, nt = d.bnt
    cdef int i
    cdef idx_t c0, c1
    for t in prange(nt, schedule="static", num_threads=nt):
        c0 = dense_tile(t, nt, d.m)
        c1 = dense_tile(t + 1, nt, d.m)
        bn_backward_cols(dY, <real*>b.Y if b.act != IDENTITY else NULL, <real*>b.X, <real*>b.W,
                         b.mean, b.invstd, <real*>b.dW, <real*>b.db, dYd, b.acc, b.n, b.k, c0,
                         c1, b.act, <real>b.param, prog.accumulate)
        dense_dz_cols(d.act, <real>d.param, dYd, <real*>d.Y, <real*>d.dz, d.acc, d.n_acc, d.n,
                      d.m, c0, c1)
        dense_backward_tile(t, nt, z, Xd, <real*>d.W, <real*>d.dW, <real*>d.db, d.acc,
                            d.n_acc, NULL, d.n, d.m, d.k, prog.accumulate)
        if update:
            for i in range(prog.n_tied):
                _update_range(prog, &prog.upd[prog.tied[i].u], z,
                              prog.tied[i].off + c0 * prog.tied[i].row,
                              prog.tied[i].off + c1 * prog.tied[i].row, 1)
            for i in range(prog.n_rest):
                _update_range(prog, &prog.upd[prog.rest[i].u], z,
                              _share(prog.rest[i].lo, prog.rest[i].hi, t, nt),
                              _share(prog.rest[i].lo, prog.rest[i].hi, t + 1, nt), 1)


# -------------------------------------------------------------------------------- the phases
cdef double _forward(StepProgram prog, real* X0, uintptr_t target,
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
            _dense_bn_forward(o, &prog.ops[i + 1], X, momenta[i + 1])
            i += 2
            continue
        if o.kind == OP_DENSE:
            dense_forward_core(X, <real*>o.W, <real*>o.b, <real*>o.Y, o.n, o.k, o.m, o.act,
                               <real>o.param, o.nt)
        elif o.kind == OP_BN:
            bn_forward_train_core(X, <real*>o.W, <real*>o.b, <real*>o.rm, <real*>o.rv,
                                  momenta[i], o.eps, <real*>o.Y, o.mean, o.invstd, o.fscratch,
                                  o.n, o.k, o.act, <real>o.param, o.nt)
        else:
            act_forward_threads(o.act, <real>o.param, X, <real*>o.Y, o.n * o.k, o.nt)
        i += 1
    # loss and its gradient
    o = &prog.ops[prog.n_ops - 1]
    # The plain mean, computed as the losses' Python side computes it from the cores'
    # weighted sums (gradient scale 1 / denominator, then sum / denominator): bit-identical.
    if prog.loss_kind == LOSS_CE:
        denom = <double>prog.n_out
        loss = softmax_ce_core(<real*>o.Y, <const Py_ssize_t*>target, NULL, <real*>prog.G,
                               NULL, prog.n_out, prog.k_out, 1.0 / denom, prog.loss_nt)
    elif prog.loss_kind == LOSS_MSE:
        denom = <double>prog.n_out * <double>prog.k_out
        loss = mse_core(<real*>o.Y, <real*>target, NULL, <real*>prog.G, NULL,
                        prog.n_out * prog.k_out, prog.k_out, 1.0 / denom, prog.loss_nt)
    else:
        denom = <double>prog.n_out * <double>prog.k_out
        loss = bce_core(<real*>o.Y, <real*>target, NULL, NULL, <real*>prog.G, NULL,
                        prog.n_out * prog.k_out, prog.k_out, 1.0 / denom, prog.loss_nt)
    return loss / denom


cdef bint _backward(StepProgram prog, real* X0, bint update) noexcept nogil:
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
        if i == prog.tail:
            update = update and prog.tied_ok and prog.n_tied > 0
            _tail_backward(prog, X0, dY, update)
            return update  # the dense op has no dX: nothing further down
        if o.kind == OP_DENSE:
            dense_backward_core(dY, X, <real*>o.W, <real*>o.Y if o.dz != NULL else NULL,
                                <real*>o.dz, o.acc, <real*>o.dW, <real*>o.db, <real*>o.dX,
                                o.n, o.m, o.k, o.act, <real>o.param, o.bnt, o.n_acc, acc)
        elif o.kind == OP_BN:
            bn_backward_core(dY, <real*>o.Y if o.act != IDENTITY else NULL, X, <real*>o.W,
                             o.mean, o.invstd, <real*>o.dW, <real*>o.db, <real*>o.dX, o.acc,
                             o.n, o.k, o.act, <real>o.param, o.nt, acc)
        elif o.dX != NULL:
            act_backward_threads(o.act, <real>o.param, dY, X, <real*>o.Y, <real*>o.dX,
                                 o.n * o.k, o.nt)
        if o.dX == NULL:
            break  # the first op and no input gradient: nothing further down
        dY = <real*>o.dX
    return False


cdef void _update(StepProgram prog, real* tag) noexcept nogil:
    """Every optimizer run's fused loop (``tag`` only selects the dtype)."""
    cdef int i
    for i in range(prog.n_upd):
        _update_range(prog, &prog.upd[i], tag, 0, prog.upd[i].size, prog.upd[i].nt)


cdef void _update_range(StepProgram prog, Update* u, real* tag, idx_t lo, idx_t hi,
                        int nt) noexcept nogil:
    """Elements lo..hi of update u's loop, on nt threads (``tag`` only selects the dtype)."""
    cdef idx_t n = hi - lo
    if n <= 0:
        return
    if u.kind == UPD_ADAM:
        if real is float:
            (<adam_f_t>prog.adam_fn)(<float*>u.p + lo, <float*>u.g + lo, <float*>u.s1 + lo,
                                     <float*>u.s2 + lo,
                                     <float*>u.s3 + lo if u.s3 != NULL else NULL, n, u.a[0],
                                     u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7], nt)
        else:
            (<adam_d_t>prog.adam_fn)(<double*>u.p + lo, <double*>u.g + lo, <double*>u.s1 + lo,
                                     <double*>u.s2 + lo,
                                     <double*>u.s3 + lo if u.s3 != NULL else NULL, n, u.a[0],
                                     u.a[1], u.a[2], u.a[3], u.a[4], u.a[5], u.a[6], u.a[7], nt)
    else:
        if real is float:
            (<sgd_f_t>prog.sgd_fn)(<float*>u.p + lo, <float*>u.g + lo,
                                   <float*>u.s1 + lo if u.s1 != NULL else NULL, n, u.a[0],
                                   u.a[1], u.a[2], u.a[3], u.a[4], u.mode, u.flag, nt)
        else:
            (<sgd_d_t>prog.sgd_fn)(<double*>u.p + lo, <double*>u.g + lo,
                                   <double*>u.s1 + lo if u.s1 != NULL else NULL, n, u.a[0],
                                   u.a[1], u.a[2], u.a[3], u.a[4], u.mode, u.flag, nt)


# ------------------------------------------------------------------ sizes for the Python side
def dense_backward_threads(idx_t n, idx_t m, idx_t k, bint has_dw, bint has_dx, int n_threads):
    """(threads, rows of bias partial sums) of a dense backward: what its scratch must hold."""
    cdef int nt, n_acc
    dense_backward_team(n, m, k, has_dw, has_dx, n_threads, &nt, &n_acc)
    return nt, n_acc


def batchnorm_scratch(idx_t n, idx_t f):
    """(forward doubles, backward doubles) of scratch of a batchnorm op."""
    return bn_forward_scratch(n, f), bn_backward_scratch(n, f)



def labels_in_range(cnp.ndarray labels, idx_t k):
    """Every entry of the C-contiguous intp array ``labels`` is in [0, k)."""
    cdef const Py_ssize_t* lab = <const Py_ssize_t*>cnp.PyArray_DATA(labels)
    cdef idx_t i
    for i in range(cnp.PyArray_SIZE(labels)):
        if lab[i] < 0 or lab[i] >= k:
            return False
    return True
