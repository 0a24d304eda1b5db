# The first layer's products with a CSR batch X (n, k) (data, indices, indptr) and a Dense's
# weight W (m, k): Y := X @ W.T + b forward, dW += dZ.T @ X and db += colsum(dZ) backward. No
# dX: X is the data. Shared by pynn._kernels.sparse and, later, a compiled step: one copy.
# Arguments arrive checked (pynn.backend.base): indices in [0, k), indptr monotone from 0 to nnz.
#
# Threads take static shares of the m output features: feature o's column of Y, row of dW and
# entry of db are one thread's, each sum taken over the rows in order and, within a row, over
# its stored entries in order, so every result is the same for any thread count, and no two
# threads write one element (a split over rows would race on dW's columns). Row o of W and of
# dW is read or written while a thread walks the batch: it stays in cache, where a split over
# rows would gather m scattered weights per stored entry.
from cython.parallel cimport prange
from libc.stdint cimport int32_t, int64_t

from _types cimport floating, idx_t

ctypedef fused sparse_index:
    int32_t
    int64_t


cdef inline void csr_forward_core(const floating* data, const sparse_index* indices,
                                  const sparse_index* indptr, idx_t n, idx_t k,
                                  const floating* W, const floating* b, floating* Y, idx_t m,
                                  int n_threads) noexcept nogil:
    """Y[i, o] := b[o] + sum_p data[p] W[o, indices[p]] over row i's entries (b NULL: 0);
    the sum in double, rounded once on store."""
    cdef idx_t o, i, p
    cdef double acc
    cdef const floating* w
    for o in prange(m, schedule="static", num_threads=n_threads):
        w = W + o * k
        for i in range(n):
            acc = 0.0 if b == NULL else <double>b[o]
            for p in range(indptr[i], indptr[i + 1]):
                acc = acc + <double>data[p] * <double>w[indices[p]]
            Y[i * m + o] = <floating>acc


cdef inline void csr_backward_core(const floating* dZ, const floating* data,
                                   const sparse_index* indices, const sparse_index* indptr,
                                   idx_t n, idx_t k, floating* dW, floating* db, idx_t m,
                                   int n_threads) noexcept nogil:
    """dW[o, indices[p]] += dZ[i, o] data[p] over every entry p of every row i (dW NULL:
    skipped); db[o] += sum_i dZ[i, o], summed in double (db NULL: skipped)."""
    cdef idx_t o, i, p
    cdef double colsum
    cdef floating g
    cdef floating* dw
    for o in prange(m, schedule="static", num_threads=n_threads):
        colsum = 0.0
        dw = NULL if dW == NULL else dW + o * k
        for i in range(n):
            g = dZ[i * m + o]
            colsum = colsum + <double>g
            # a zero gradient adds nothing (data is checked finite): ReLU's zeros skip the row
            if dw != NULL and g != 0:
                for p in range(indptr[i], indptr[i + 1]):
                    dw[indices[p]] += g * data[p]
        if db != NULL:
            db[o] = <floating>(<double>db[o] + colsum)
