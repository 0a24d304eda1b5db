# The compiled step's ops for today's MLP blocks (_train_step_run.pxd runs them): LayerNorm/RMSNorm
# through the rownorm cores, training-mode Dropout through dropout's, and a Residual's two
# marks. The same cores as the per-call kernels, so the same bits as the eager path.
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

from _types cimport floating, idx_t
from _dropout cimport dropout_backward_core, dropout_forward_core
from _rownorm cimport rn_backward_core, rn_forward_core
from _train_step cimport OP_DROPOUT, OP_RES_BEGIN, OP_RES_END, OP_ROWNORM, Op


cdef inline bint is_block_op(int kind) noexcept nogil:
    return (kind == OP_ROWNORM or kind == OP_DROPOUT or kind == OP_RES_BEGIN
            or kind == OP_RES_END)


cdef inline void _add(const floating* a, const floating* b, floating* out, idx_t size,
                      int nt) noexcept nogil:
    """out := a + b elementwise (a residual's sum, the eager ``X + out``: the same additions)."""
    cdef idx_t j
    for j in prange(size, schedule="static", num_threads=nt):
        out[j] = a[j] + b[j]


cdef inline void _affine_in_double(Op* o, const floating* tag) noexcept nogil:
    """A rownorm op's gamma and beta in double (1 and 0 where the layer has none), as the
    per-call kernel converts them (``tag`` only selects the dtype)."""
    cdef idx_t j
    cdef const floating* g = <const floating*>o.W
    cdef const floating* b = <const floating*>o.b
    for j in range(o.k):
        o.fscratch[j] = <double>g[j] if g != NULL else 1.0
        o.fscratch[o.k + j] = <double>b[j] if b != NULL else 0.0


cdef inline void block_forward(Op* o, const floating* X, const floating* X0,
                               uint64_t key) noexcept nogil:
    """Block op o's forward on its input X (X0: the batch; key: a dropout op's this step). A
    residual's begin does nothing: the ops after it read its input."""
    if o.kind == OP_ROWNORM:
        _affine_in_double(o, X)
        rn_forward_core(X, <floating*>o.Y, o.n, o.k, o.eps, o.fscratch, o.fscratch + o.k,
                        o.mean, o.invstd, o.nt)
    elif o.kind == OP_DROPOUT:
        dropout_forward_core(X, <floating*>o.Y, o.mask, o.n * o.k, o.threshold, o.param, key,
                             o.nt)
    elif o.kind == OP_RES_END:
        _add(X, X0 if o.skip == NULL else <const floating*>o.skip, <floating*>o.Y, o.n * o.k,
             o.nt)


cdef inline void block_backward(Op* o, const floating* dY, const floating* X,
                                bint accumulate) noexcept nogil:
    """Block op o's backward from dY into o.dX (and a rownorm's parameter gradients). A
    residual's end does nothing: its dX is its dY."""
    if o.kind == OP_ROWNORM:
        rn_backward_core(dY, X, <floating*>o.dX, o.n, o.k, o.fscratch, o.mean, o.invstd,
                         <floating*>o.dW, <floating*>o.db, o.acc, o.nt, accumulate)
    elif o.dX == NULL or o.kind == OP_RES_END:
        return
    elif o.kind == OP_DROPOUT:
        dropout_backward_core(dY, o.mask, <floating*>o.dX, o.n * o.k, o.param, o.nt)
    else:  # a residual's begin: the block's input gradient plus the skip's
        _add(dY, <const floating*>o.skip, <floating*>o.dX, o.n * o.k, o.nt)
