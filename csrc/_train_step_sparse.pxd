# The compiled step's first Dense on a CSR batch (OP_SPARSE_DENSE; _train_step_run.pxd runs it):
# the per-call kernels' cores (_sparse.pxd), so the same bits as the eager sparse path. The
# batch's three arrays arrive with each run (run_csr); its column view is built once per step,
# in the forward, into the program's scratch, and read again by the backward.
cimport numpy as cnp
from libc.stdlib cimport realloc

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _activations_threads cimport act_backward_threads
from _sparse cimport (ColumnView, CsrArrays, column_view_bytes, csr_backward_rows,
                      csr_forward_rows)
from _train_step cimport Op


cdef struct CsrBatch:
    CsrArrays arrays           # the batch of this run (run_csr), of the op's n rows
    idx_t nnz
    char* scratch              # the column view's (malloc'd, grown by run_csr)
    idx_t capacity             # its bytes
    ColumnView view
    bint has_view              # the forward built the view for this batch


cdef inline int csr_batch_set(CsrBatch* x, idx_t k, cnp.ndarray data, cnp.ndarray indices,
                              cnp.ndarray indptr, bint forward) except -1:
    """The run's batch (run_csr's arrays, checked by the caller) for an op of k inputs; with
    ``forward``, the scratch grown first if the batch's column view outgrows it."""
    cdef idx_t need
    cdef char* grown
    x.arrays.data = cnp.PyArray_DATA(data)
    x.arrays.indices = cnp.PyArray_DATA(indices)
    x.arrays.indptr = cnp.PyArray_DATA(indptr)
    x.arrays.wide = cnp.PyArray_ITEMSIZE(indices) == 8
    x.nnz = cnp.PyArray_DIM(data, 0)
    if forward:
        x.has_view = False  # (the forward builds this batch's)
        need = column_view_bytes(k, x.nnz)
        if need > x.capacity:  # the batch's stored values outgrew the scratch
            grown = <char*>realloc(x.scratch, need + need // 4)
            if grown == NULL:
                raise MemoryError()
            x.scratch, x.capacity = grown, need + need // 4
    return 0


cdef inline void sparse_forward(Op* o, CsrBatch* x, floating* tag) noexcept nogil:
    """Op o's forward on the run's batch: Y := act(X W^T + b), Z kept when o.zs (``tag`` only
    selects the dtype)."""
    x.has_view = csr_forward_rows(&x.arrays, 0, o.n, o.k, <const floating*>o.W,
                                  <const floating*>o.b, <floating*>o.Y, o.m, o.act,
                                  <floating>o.param, <floating>o.param2, <floating*>o.zs,
                                  x.scratch, &x.view, o.acc, o.nt)


cdef inline void sparse_backward(Op* o, CsrBatch* x, floating* dY,
                                 bint accumulate) noexcept nogil:
    """Op o's backward from dY: dZ through the activation (into o.dz; from the kept Z, else
    from the output, as the eager ``_grad_sparse``), then dW and db (overwritten unless
    ``accumulate``); no dX."""
    cdef floating* dz = dY
    if o.dW == NULL and o.db == NULL:
        return  # frozen: the eager backward computes nothing either
    if o.act != IDENTITY:
        dz = <floating*>o.dz
        act_backward_threads(o.act, <floating>o.param, <floating>o.param2, dY,
                             <floating*>(o.zs if o.zs != NULL else o.Y), <floating*>o.Y, dz,
                             o.n * o.m, o.nt)
    csr_backward_rows(dz, &x.arrays, o.n, o.k, <floating*>o.dW, <floating*>o.db, o.m,
                      &x.view if x.has_view else NULL, o.acc, accumulate, o.nt)
