"""pynn._kernels.sparse: a Dense layer's products with a CSR batch of data (scikit-learn's sparse
inputs), consumed as its three arrays, never densified. The loops, their split over the
threads and why: _sparse.pxd.
"""
from _types cimport floating, idx_t
from _sparse cimport csr_backward_core, csr_forward_core, sparse_index
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


def csr_dense_forward(const floating[::1] data, const sparse_index[::1] indices,
                      const sparse_index[::1] indptr, const floating[:, ::1] W, object b,
                      floating[:, ::1] Y, int n_threads):
    """Y := X @ W.T + b for X = CSR(data, indices, indptr) of shape (Y.shape[0], W.shape[1]);
    b may be None."""
    cdef idx_t n = Y.shape[0], m = Y.shape[1], k = W.shape[1]
    cdef const floating[::1] bv
    cdef const floating* bp = NULL
    cdef const floating* dp = NULL
    cdef const sparse_index* ip = NULL
    if n == 0 or m == 0:
        return
    if b is not None:
        bv = b
        bp = &bv[0]
    if data.shape[0] > 0:
        dp = &data[0]
        ip = &indices[0]
    with nogil:
        csr_forward_core(dp, ip, &indptr[0], n, k, &W[0, 0] if k > 0 else NULL, bp, &Y[0, 0],
                         m, n_threads)


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
    with nogil:
        csr_backward_core(&dZ[0, 0], dp, ip, &indptr[0], n, k, dwp, dbp, m, n_threads)
