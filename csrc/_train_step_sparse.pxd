# The compiled step's first Dense on a CSR batch (OP_SPARSE_DENSE; train_step.pyx runs it):
# the per-call kernels' cores (_sparse.pxd), so the same bits as the eager sparse path. The
# batch's three arrays arrive with each run (run_csr); its column view is built once per step,
# in the forward, into the program's scratch, and read again by the backward.
from libc.stdint cimport int32_t, int64_t

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _activations_threads cimport act_backward_threads
from _sparse cimport (ColumnView, csr_backward_core, csr_column_view, csr_forward_core,
                      sparse_index, use_column_view)
from _train_step cimport Op


cdef struct CsrBatch:
    # the batch of this run (run_csr): data of the program's dtype, indices and indptr of one
    # index type (wide: int64, else int32), n rows
    const void* data
    const void* indices
    const void* indptr
    bint wide
    idx_t nnz
    char* scratch              # the column view's (malloc'd, grown by run_csr)
    idx_t capacity             # its bytes
    ColumnView view
    bint has_view              # the forward built the view for this batch


cdef inline void _forward_typed(Op* o, CsrBatch* x, floating* tag,
                                const sparse_index* indices,
                                const sparse_index* indptr) noexcept nogil:
    cdef const floating* data = <const floating*>x.data
    x.has_view = use_column_view(o.k, o.m, x.nnz)
    if x.has_view:
        csr_column_view(data, indices, indptr, o.n, o.k, x.scratch, &x.view)
    csr_forward_core(data, indices, indptr, o.n, o.k, <const floating*>o.W,
                     <const floating*>o.b, <floating*>o.Y, o.m, o.act, <floating>o.param,
                     <floating>o.param2, <floating*>o.zs, &x.view if x.has_view else NULL,
                     o.acc, o.nt)


cdef inline void sparse_forward(Op* o, CsrBatch* x, floating* tag) noexcept nogil:
    """Op o's forward on the run's batch: Y := act(X W^T + b), Z kept when o.zs (``tag`` only
    selects the dtype)."""
    if x.wide:
        _forward_typed(o, x, tag, <const int64_t*>x.indices, <const int64_t*>x.indptr)
    else:
        _forward_typed(o, x, tag, <const int32_t*>x.indices, <const int32_t*>x.indptr)


cdef inline void sparse_backward(Op* o, CsrBatch* x, floating* dY,
                                 bint accumulate) noexcept nogil:
    """Op o's backward from dY: dZ through the activation (into o.dz; from the kept Z, else
    from the output, as the eager ``_grad_sparse``), then dW and db (overwritten unless
    ``accumulate``); no dX."""
    cdef floating* dz = dY
    cdef const ColumnView* v = &x.view if x.has_view else NULL
    if o.dW == NULL and o.db == NULL:
        return  # frozen: the eager backward computes nothing either
    if o.act != IDENTITY:
        dz = <floating*>o.dz
        act_backward_threads(o.act, <floating>o.param, <floating>o.param2, dY,
                             <floating*>(o.zs if o.zs != NULL else o.Y), <floating*>o.Y, dz,
                             o.n * o.m, o.nt)
    if x.wide:
        csr_backward_core(dz, <const floating*>x.data, <const int64_t*>x.indices,
                          <const int64_t*>x.indptr, o.n, o.k, <floating*>o.dW,
                          <floating*>o.db, o.m, v, o.acc, accumulate, o.nt)
    else:
        csr_backward_core(dz, <const floating*>x.data, <const int32_t*>x.indices,
                          <const int32_t*>x.indptr, o.n, o.k, <floating*>o.dW,
                          <floating*>o.db, o.m, v, o.acc, accumulate, o.nt)
