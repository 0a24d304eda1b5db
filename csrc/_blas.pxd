# Row-major BLAS wrappers over scipy.linalg.cython_blas (no second BLAS is linked: we call the one
# scipy ships). A row-major matrix is the column-major transpose, so row-major C := op(A) @ op(B)
# is column-major C^T := op(B)^T @ op(A)^T: swap the operands, keep the transpose flags.

from scipy.linalg.cython_blas cimport dgemm, dgemv, sgemm, sgemv
from _types cimport floating


cdef inline void gemm_rm(bint trans_a, bint trans_b, int m, int n, int k, floating alpha,
                         const floating* A, int lda, const floating* B, int ldb,
                         floating beta, floating* C, int ldc) noexcept nogil:
    """Row-major C(m, n) := alpha * op(A) @ op(B) + beta * C; op(X) = X.T when trans_x."""
    cdef char ta = b'T' if trans_a else b'N'
    cdef char tb = b'T' if trans_b else b'N'
    cdef int i, j
    if m == 0 or n == 0:
        return  # BLAS rejects leading dimensions < 1, and there is nothing to write
    if k == 0:
        # C := beta * C: an empty inner dimension contributes nothing (BLAS would say the same,
        # but it rejects lda/ldb of 0 for an empty operand).
        if beta != 1:
            for i in range(m):
                for j in range(n):
                    C[i * ldc + j] = 0 if beta == 0 else beta * C[i * ldc + j]
        return
    if lda < 1:
        lda = 1
    if ldb < 1:
        ldb = 1
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*>B, &ldb, <float*>A, &lda, &beta, C, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*>B, &ldb, <double*>A, &lda, &beta, C, &ldc)


cdef inline void gemv_rm(int m, int k, floating alpha, const floating* A, const floating* x,
                         floating beta, floating* y) noexcept nogil:
    """Row-major y(m) := alpha * A(m, k) @ x(k) + beta * y. Column-major, A is the (k, m)
    matrix A.T with leading dimension k: BLAS's transposed product reads A as it lies, without
    the packing a GEMM does (which costs more than the product for a row or two)."""
    cdef char t = b'T'
    cdef int one = 1
    cdef int i
    if m == 0:
        return
    if k == 0:
        if beta != 1:
            for i in range(m):
                y[i] = 0 if beta == 0 else beta * y[i]
        return
    if floating is float:
        sgemv(&t, &k, &m, &alpha, <float*>A, &k, <float*>x, &one, &beta, y, &one)
    else:
        dgemv(&t, &k, &m, &alpha, <double*>A, &k, <double*>x, &one, &beta, y, &one)
