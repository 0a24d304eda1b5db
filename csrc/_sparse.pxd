# The first layer's products with a CSR batch X (n, k) (data, indices, indptr) and a Dense's
# weight W (m, k): Y := act(X @ W.T + b) forward (the activation in the same call, the
# pre-activation kept when asked), dW += dZ.T @ X and db += colsum(dZ) backward. No dX: X is the
# data. Shared by pynn._kernels.sparse, the compiled step (train_step.pyx) and the inference
# program (inference.pyx): one copy, so all three give the same bits. Arguments arrive checked
# (pynn.backend._sparse.csr_arrays): indices in [0, k), indptr monotone; indptr[0] may be > 0
# (a row slice of a larger CSR: positions are absolute).
#
# Threads take static shares of the m output features: feature o's column of Y, row of dW and
# entry of db are one thread's, so no two threads write one element and every result is the
# same for any thread count (a split over rows would race on dW's columns).
#
# The column view. A feature's pass reads its row of W (forward) or writes its row of dW
# (backward) at the batch's column indices. Walked in CSR order those are random positions in a
# row of k weights (400 KB at k = 50k doubles: out of L1/L2), once per stored value per feature.
# So a batch is first laid out by column (csr_column_view, a counting sort, O(nnz + k), once per
# call): its non-empty columns ascending, each with its (row, value) pairs in row order. A
# feature's pass then streams W's and dW's rows forward, and gathers into or from n per-row
# doubles (the thread's scratch: L1 for a batch). Sums keep their order where it matters:
#   forward: Y[i, o] sums row i's stored values over ascending columns, in double from b[o],
#     rounded once: CSR order when the indices are sorted (SciPy's canonical form), and the
#     same order for either walk (so either is one answer) only then; unsorted indices are
#     summed in column order by the view, stored order by the row walk (round-off apart);
#   backward: dW[o, j] adds dZ[i, o] X[i, j] over rows i ascending (duplicates in stored
#     order): the same operations as the row walk, bit for bit; db[o] sums dZ[:, o] in row
#     order in double.
# The view is built when a row of W is too large to stay cached (above VIEW_MIN_ROW_BYTES:
# below it the row walk's reads hit the cache and the view's extra passes cost more) and it
# costs at most what the products do (k <= m nnz: a feature count far above the batch's work,
# one row through a 10^6-wide vocabulary, walks the rows). The choice depends on the shapes only: the same for any thread count, and
# the same in the per-call kernels and the compiled programs.
from cython.parallel cimport prange, threadid
from libc.stdint cimport int32_t, int64_t
from libc.stdlib cimport malloc
from libc.string cimport memset

from _types cimport floating, idx_t
from _activations cimport IDENTITY
from _activations_threads cimport act_forward_threads

ctypedef fused sparse_index:
    int32_t
    int64_t


cdef struct ColumnView:
    # a batch's stored values by column: columns cols[u] (ascending, non-empty) for
    # u < n_cols, each with the pairs (rows[q], vals[q]) for start[u] <= q < start[u + 1], rows
    # ascending; vals of the batch's dtype
    idx_t n_cols
    idx_t* cols
    idx_t* start
    idx_t* rows
    void* vals


cdef enum:
    # Bytes of a row of W above which its random reads (row walk) cost more than the view's
    # build, gathers and strided stores: measured on a 2-core x86 (busy; 256-row batches of 50
    # stored values a row, 128 features): at 80 KB the two walks were even (the view 1.2x
    # slower below it, 2-3x faster at 200 KB).
    VIEW_MIN_ROW_BYTES = 128 * 1024


cdef inline bint use_column_view(idx_t k, idx_t m, idx_t nnz, idx_t itemsize) noexcept nogil:
    """Whether a product walks the batch by columns (see the header): a row of W too large to
    stay cached (VIEW_MIN_ROW_BYTES), and building the view (O(nnz + k)) costs at most the
    products (m nnz)."""
    return nnz > 0 and k * itemsize > VIEW_MIN_ROW_BYTES and k <= m * nnz


cdef inline idx_t column_view_bytes(idx_t k, idx_t nnz) noexcept nogil:
    """Bytes of scratch a column view of nnz values over k columns needs (any dtype)."""
    # counts/slots (k + 1), cols (<= nnz), start (<= nnz + 1), rows (nnz), vals (nnz doubles)
    return (k + 1 + nnz + nnz + 1 + nnz) * sizeof(idx_t) + nnz * sizeof(double)


cdef inline void csr_column_view(const floating* data, const sparse_index* indices,
                                 const sparse_index* indptr, idx_t n, idx_t k, char* scratch,
                                 ColumnView* v) noexcept nogil:
    """Lay the batch out by column into ``scratch`` (column_view_bytes): a stable counting
    sort by column index, so each column's pairs keep the rows' order."""
    cdef idx_t p, j, i, u = 0, pos = 0, count
    cdef idx_t base = indptr[0], nnz = indptr[n] - indptr[0]
    cdef idx_t* slot = <idx_t*>scratch  # per column: its count, then its next write position
    cdef floating* vals
    v.cols = slot + k + 1
    v.start = v.cols + nnz
    v.rows = v.start + nnz + 1
    v.vals = <void*>(v.rows + nnz)
    vals = <floating*>v.vals
    memset(slot, 0, (k + 1) * sizeof(idx_t))
    for p in range(base, base + nnz):
        slot[indices[p] + 1] += 1  # column j's count in slot[j + 1]
    for j in range(k):
        count = slot[j + 1]  # (read before slot[j + 1] becomes column j + 1's position)
        if count:
            v.cols[u] = j
            v.start[u] = pos
            u += 1
        slot[j] = pos
        pos += count
    v.start[u] = pos
    v.n_cols = u
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            v.rows[slot[j]] = i
            vals[slot[j]] = data[p]
            slot[j] += 1


cdef inline void csr_forward_core(const floating* data, const sparse_index* indices,
                                  const sparse_index* indptr, idx_t n, idx_t k,
                                  const floating* W, const floating* b, floating* Y, idx_t m,
                                  int act, floating p, floating q, floating* Z,
                                  const ColumnView* v, double* acc,
                                  int n_threads) noexcept nogil:
    """Y[i, o] := act(b[o] + sum_p data[p] W[o, indices[p]]) over row i's entries (b NULL: 0),
    the sum in double and rounded once; Z (or NULL) keeps the sum before the activation. With
    the column view ``v`` (NULL: walk the rows), ``acc`` holds n doubles per thread."""
    cdef idx_t o, i, r, u, c
    cdef double s, wj
    cdef double* a
    cdef const floating* w
    cdef const floating* vals
    cdef floating* T = Z if Z != NULL else Y  # the products, before the activation
    if v != NULL:
        vals = <const floating*>v.vals
        for o in prange(m, schedule="static", num_threads=n_threads):
            a = acc + <idx_t>threadid() * n
            s = 0.0 if b == NULL else <double>b[o]
            for i in range(n):
                a[i] = s
            w = W + o * k
            for u in range(v.n_cols):
                wj = <double>w[v.cols[u]]
                for c in range(v.start[u], v.start[u + 1]):
                    r = v.rows[c]
                    a[r] = a[r] + <double>vals[c] * wj
            for i in range(n):
                T[i * m + o] = <floating>a[i]
    else:
        for o in prange(m, schedule="static", num_threads=n_threads):
            w = W + o * k
            for i in range(n):
                s = 0.0 if b == NULL else <double>b[o]
                for c in range(indptr[i], indptr[i + 1]):
                    s = s + <double>data[c] * <double>w[indices[c]]
                T[i * m + o] = <floating>s
    if act != IDENTITY or Z != NULL:  # elementwise: the same bits as its own pass
        act_forward_threads(act, p, q, T, Y, n * m, n_threads)


cdef inline void csr_backward_core(const floating* dZ, const floating* data,
                                   const sparse_index* indices, const sparse_index* indptr,
                                   idx_t n, idx_t k, floating* dW, floating* db, idx_t m,
                                   const ColumnView* v, double* acc, bint accumulate,
                                   int n_threads) noexcept nogil:
    """dW[o, indices[p]] += dZ[i, o] data[p] over every entry p of every row i (dW NULL:
    skipped); db[o] += sum_i dZ[i, o], summed in double (db NULL: skipped). Without
    ``accumulate`` both are overwritten (zeroed first, then the same additions: the bits of a
    zero_grad and an accumulation). With the column view ``v`` (NULL: walk the rows), ``acc``
    holds n doubles per thread (feature o's column of dZ, gathered once)."""
    cdef idx_t o, i, u, c, j
    cdef double colsum
    cdef floating g, t
    cdef floating* dw
    cdef double* a
    cdef const floating* vals
    for o in prange(m, schedule="static", num_threads=n_threads):
        colsum = 0.0
        dw = NULL if dW == NULL else dW + o * k
        if dw != NULL and not accumulate:
            memset(dw, 0, k * sizeof(floating))
        if v != NULL:
            a = acc + <idx_t>threadid() * n
            for i in range(n):
                g = dZ[i * m + o]
                colsum = colsum + <double>g
                a[i] = <double>g  # (exact: g is of the dtype)
            if dw != NULL:
                vals = <const floating*>v.vals
                for u in range(v.n_cols):
                    j = v.cols[u]
                    t = dw[j]
                    for c in range(v.start[u], v.start[u + 1]):
                        g = <floating>a[v.rows[c]]
                        # a zero gradient adds nothing (data is checked finite): the row
                        # walk skips such rows, so this skips them alike
                        if g != 0:
                            t = t + g * vals[c]
                    dw[j] = t
        else:
            for i in range(n):
                g = dZ[i * m + o]
                colsum = colsum + <double>g
                if dw != NULL and g != 0:
                    for c in range(indptr[i], indptr[i + 1]):
                        dw[indices[c]] += g * data[c]
        if db != NULL:
            db[o] = <floating>((<double>db[o] if accumulate else 0.0) + colsum)


cdef inline char* csr_view_alloc(const floating* data, const sparse_index* indices,
                                 const sparse_index* indptr, idx_t n, idx_t k, idx_t m,
                                 int n_threads, ColumnView* v, double** acc) noexcept nogil:
    """For a per-call product: malloc'd scratch holding the batch's column view (built) and
    the threads' n doubles each (*acc), or NULL when the rows are walked instead (the view not
    worth it: use_column_view; or no memory, which changes no result for sorted indices).
    The caller frees it."""
    cdef idx_t nnz = indptr[n] - indptr[0]
    cdef idx_t view = column_view_bytes(k, nnz)
    cdef char* scratch
    if not use_column_view(k, m, nnz, sizeof(floating)):
        return NULL
    view = (view + 7) // 8 * 8  # the doubles after it, aligned
    scratch = <char*>malloc(view + <idx_t>n_threads * n * sizeof(double))
    if scratch != NULL:
        csr_column_view(data, indices, indptr, n, k, scratch, v)
        acc[0] = <double*>(scratch + view)
    return scratch


# ------------------------------------------------------------------ for the compiled programs
cdef struct CsrArrays:
    # a CSR's three arrays as a compiled program holds them: data of the program's dtype,
    # indices and indptr of one index type (wide: int64, else int32)
    const void* data
    const void* indices
    const void* indptr
    bint wide


cdef inline bint _forward_rows(const floating* data, const sparse_index* indices,
                               const sparse_index* indptr, idx_t n, idx_t k,
                               const floating* W, const floating* b, floating* Y, idx_t m,
                               int act, floating p, floating q, floating* Z, char* scratch,
                               ColumnView* v, double* acc, int nt) noexcept nogil:
    cdef bint view = use_column_view(k, m, indptr[n] - indptr[0], sizeof(floating))
    if view:
        csr_column_view(data, indices, indptr, n, k, scratch, v)
    csr_forward_core(data, indices, indptr, n, k, W, b, Y, m, act, p, q, Z,
                     v if view else NULL, acc, nt)
    return view


cdef inline bint csr_forward_rows(const CsrArrays* x, idx_t lo, idx_t n, idx_t k,
                                  const floating* W, const floating* b, floating* Y, idx_t m,
                                  int act, floating p, floating q, floating* Z, char* scratch,
                                  ColumnView* v, double* acc, int nt) noexcept nogil:
    """csr_forward_core on rows lo..lo + n of x, through their column view (built into
    ``scratch``: column_view_bytes of their stored values) when use_column_view says so, as
    the per-call kernel decides; True when it did (``v`` then holds the view)."""
    if x.wide:
        return _forward_rows(<const floating*>x.data, <const int64_t*>x.indices,
                             <const int64_t*>x.indptr + lo, n, k, W, b, Y, m, act, p, q, Z,
                             scratch, v, acc, nt)
    return _forward_rows(<const floating*>x.data, <const int32_t*>x.indices,
                         <const int32_t*>x.indptr + lo, n, k, W, b, Y, m, act, p, q, Z,
                         scratch, v, acc, nt)


cdef inline void csr_backward_rows(const floating* dZ, const CsrArrays* x, idx_t n, idx_t k,
                                   floating* dW, floating* db, idx_t m, const ColumnView* v,
                                   double* acc, bint accumulate, int nt) noexcept nogil:
    """csr_backward_core on the n rows of x (v: their forward's column view, or NULL)."""
    if x.wide:
        csr_backward_core(dZ, <const floating*>x.data, <const int64_t*>x.indices,
                          <const int64_t*>x.indptr, n, k, dW, db, m, v, acc, accumulate, nt)
    else:
        csr_backward_core(dZ, <const floating*>x.data, <const int32_t*>x.indices,
                          <const int32_t*>x.indptr, n, k, dW, db, m, v, acc, accumulate, nt)
