"""pynn._kernels.sparse: a Dense layer's products with a CSR batch of data (scikit-learn's sparse
inputs), consumed as its three arrays, never densified. The loops, their split over the
threads, the batch's column view and why: _sparse.pxd.
"""
from libc.stdlib cimport free

from _types cimport floating, idx_t
from _sparse cimport (ColumnView, csr_backward_core, csr_forward_core, csr_view_alloc,
                      sparse_index, use_column_view)
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


cdef char* _view(const floating* dp, const sparse_index* ip, const sparse_index* indptr,
                 idx_t n, idx_t k, idx_t m, int n_threads, ColumnView* v,
                 double** acc) except? NULL:
    """The call's column view (or NULL: the rows are walked); MemoryError when it is due and
    cannot be had (the row walk would sum unsorted indices in another order)."""
    cdef char* scratch = csr_view_alloc(dp, ip, indptr, n, k, m, n_threads, v, acc)
    if scratch == NULL and use_column_view(k, m, indptr[n] - indptr[0], sizeof(floating)):
        raise MemoryError()
    return scratch


def walks_columns(idx_t k, idx_t m, idx_t nnz, idx_t itemsize):
    """Whether a product of a batch of nnz stored values over k features with m output
    features walks the batch's column view (else its rows): for tests and timings."""
    return use_column_view(k, m, nnz, itemsize)


def csr_dense_forward(const floating[::1] data, const sparse_index[::1] indices,
                      const sparse_index[::1] indptr, const floating[:, ::1] W, object b,
                      floating[:, ::1] Y, int act, double param, double param2, object Z,
                      int n_threads):
    """Y := act(X @ W.T + b) for X = CSR(data, indices, indptr) of shape (Y.shape[0],
    W.shape[1]); b may be None; Z (or None): the pre-activation kept, shaped like Y."""
    cdef idx_t n = Y.shape[0], m = Y.shape[1], k = W.shape[1]
    cdef const floating[::1] bv
    cdef floating[:, ::1] Zv
    cdef const floating* bp = NULL
    cdef floating* zp = NULL
    cdef const floating* dp = NULL
    cdef const sparse_index* ip = NULL
    cdef ColumnView v
    cdef double* acc = NULL
    cdef char* scratch
    if n == 0 or m == 0:
        return
    if b is not None:
        bv = b
        bp = &bv[0]
    if Z is not None:
        Zv = Z
        zp = &Zv[0, 0]
    if data.shape[0] > 0:
        dp = &data[0]
        ip = &indices[0]
    scratch = _view(dp, ip, &indptr[0], n, k, m, n_threads, &v, &acc)
    try:
        with nogil:
            csr_forward_core(dp, ip, &indptr[0], n, k, &W[0, 0] if k > 0 else NULL, bp,
                             &Y[0, 0], m, act, <floating>param, <floating>param2, zp,
                             &v if scratch != NULL else NULL, acc, n_threads)
    finally:
        free(scratch)


def csr_dense_backward(const floating[:, ::1] dZ, const floating[::1] data,
                       const sparse_index[::1] indices, const sparse_index[::1] indptr,
                       object dW, object db, int n_threads):
    """dW += dZ.T @ X; db += colsum(dZ) for X = CSR(data, indices, indptr) of dZ.shape[0]
    rows; dW or db may be None (not computed)."""
    cdef idx_t n = dZ.shape[0], m = dZ.shape[1], k = 0
    cdef floating[:, ::1] dWv
    cdef floating[::1] dbv
    cdef floating* dwp = NULL
    cdef floating* dbp = NULL
    cdef const floating* dp = NULL
    cdef const sparse_index* ip = NULL
    cdef ColumnView v
    cdef double* acc = NULL
    cdef char* scratch = NULL
    if n == 0 or m == 0:
        return
    if dW is not None:
        dWv = dW
        k = dWv.shape[1]
        if k > 0:
            dwp = &dWv[0, 0]
    if db is not None:
        dbv = db
        dbp = &dbv[0]
    if dwp == NULL and dbp == NULL:
        return
    if data.shape[0] > 0:
        dp = &data[0]
        ip = &indices[0]
    if dwp != NULL:  # (db alone reads no stored value)
        scratch = _view(dp, ip, &indptr[0], n, k, m, n_threads, &v, &acc)
    try:
        with nogil:
            csr_backward_core(&dZ[0, 0], dp, ip, &indptr[0], n, k, dwp, dbp, m,
                              &v if scratch != NULL else NULL, acc, True, n_threads)
    finally:
        free(scratch)
