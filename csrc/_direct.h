/* The dense backward's own products (csrc/_dense_backward.pxd, DENSE_DIRECT):
 * C[r, c] (+)= sum_p A(r, p) * B[p, c], B and C row-major, A read through any two strides:
 * dW = dZ.T @ X is A(r, p) = dZ[p, r] (strides 1 and m), dX = dZ @ W is A(r, p) = dZ[r, p]
 * (strides m and 1). Every operand is read where it lies.
 *
 * Why not BLAS: a GEMM packs its operands into its own layout first, and for the small
 * products of a small net the packing and the call's set-up are most of the call: a
 * 32-row batch's dW of a 64 x 64 layer took ~5 us in OpenBLAS 0.3.30 (Haswell kernel) and
 * 3.6 us here, a 32 x 10 x 32 one 1.9 us against 0.2 (AMD EPYC Zen 3, one thread). Here a
 * tile of up to ROWS rows of C by two vectors of columns keeps its partial sums in
 * registers; each step over p loads two vectors of a row of B and broadcasts one element of
 * A per row, so the fused multiply-adds, not the loads, bound it. The column tiles are the
 * outer loop: a tile's panel of B (inner x two vectors) stays in L1 for every row tile.
 *
 * Rounding is the same for every element whatever the tiling: C[r, c] is accumulated over p
 * in order in its own lane (a short last column tile reads B through a zero-padded copy, the
 * same arithmetic), starting from C's value when accumulating. So a product split over
 * threads by rows or by columns gives the bits of the unsplit one. The clones
 * (PYNN_TARGET_CLONES_FMA) differ from each other in the last bits, as in _dot.h.
 *
 * Included by Cython after Python.h (Py_ssize_t). */
#ifndef PYNN_DIRECT_H
#define PYNN_DIRECT_H

#include <string.h>
#include "_simd_clone.h"

/* Rows of C per tile: ROWS x 2 accumulators plus two vectors of B are 14 of AVX2's 16
 * vector registers. */
#define PYNN_DIRECT_ROWS 6

#if defined(__GNUC__)
#define PYNN_DIRECT_INLINE static inline __attribute__((always_inline))
typedef float pynn_direct_v8f __attribute__((vector_size(32)));
typedef float pynn_direct_v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef double pynn_direct_v4d __attribute__((vector_size(32)));
typedef double pynn_direct_v4d_u __attribute__((vector_size(32), aligned(8), may_alias));

/* *v := the `width` (<= L) elements at p, zero-padded; stored back the same way. (Through a
 * pointer: a function returning a vector would change the ABI of the baseline build.) */
#define PYNN_DIRECT_PART(T, S, V, VU, L)                                                   \
PYNN_DIRECT_INLINE void pynn_direct_load_##S(V* v, const T* p, int width) {                \
    if (width >= L) {                                                                      \
        *v = *(const VU*)p;                                                                \
        return;                                                                            \
    }                                                                                      \
    *v = (V){0};                                                                           \
    if (width > 0)                                                                         \
        memcpy(v, p, width * sizeof(T));                                                   \
}                                                                                          \
PYNN_DIRECT_INLINE void pynn_direct_store_##S(T* p, const V* v, int width) {               \
    if (width >= L)                                                                        \
        *(VU*)p = *v;                                                                      \
    else if (width > 0)                                                                    \
        memcpy(p, v, width * sizeof(T));                                                   \
}

/* One tile: R rows of C (R, like `width`, a constant at every call, so the accumulators
 * live in registers), `width` <= 2 L columns. */
#define PYNN_DIRECT_TILE(T, S, V, L)                                                       \
PYNN_DIRECT_INLINE void pynn_direct_tile_##S(const T* A, Py_ssize_t ar, Py_ssize_t ap,     \
                                             const T* B, Py_ssize_t ldb, T* C,             \
                                             Py_ssize_t ldc, Py_ssize_t inner, int R,      \
                                             int width, int accumulate) {                  \
    V acc[PYNN_DIRECT_ROWS][2];                                                            \
    V b0, b1;                                                                              \
    Py_ssize_t p;                                                                          \
    int r;                                                                                 \
    for (r = 0; r < R; r++) {                                                              \
        if (accumulate) {                                                                  \
            pynn_direct_load_##S(&acc[r][0], C + r * ldc, width);                         \
            pynn_direct_load_##S(&acc[r][1], C + r * ldc + L, width - L);                 \
        } else {                                                                           \
            acc[r][0] = (V){0};                                                            \
            acc[r][1] = (V){0};                                                            \
        }                                                                                  \
    }                                                                                      \
    for (p = 0; p < inner; p++) {                                                          \
        pynn_direct_load_##S(&b0, B + p * ldb, width);                                    \
        pynn_direct_load_##S(&b1, B + p * ldb + L, width - L);                            \
        for (r = 0; r < R; r++) {                                                          \
            T a = A[r * ar + p * ap];                                                      \
            acc[r][0] += a * b0;                                                           \
            acc[r][1] += a * b1;                                                           \
        }                                                                                  \
    }                                                                                      \
    for (r = 0; r < R; r++) {                                                              \
        pynn_direct_store_##S(C + r * ldc, &acc[r][0], width);                             \
        pynn_direct_store_##S(C + r * ldc + L, &acc[r][1], width - L);                     \
    }                                                                                      \
}

/* The rows of one column tile, ROWS at a time, the last few by a tile of their own size. */
#define PYNN_DIRECT_COLUMN(S)                                                              \
    for (r = 0; r + PYNN_DIRECT_ROWS <= rows; r += PYNN_DIRECT_ROWS)                       \
        pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc, inner,  \
                             PYNN_DIRECT_ROWS, W_, accumulate);                            \
    switch (rows - r) {                                                                    \
    case 5: pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc,     \
                                 inner, 5, W_, accumulate); break;                         \
    case 4: pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc,     \
                                 inner, 4, W_, accumulate); break;                         \
    case 3: pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc,     \
                                 inner, 3, W_, accumulate); break;                         \
    case 2: pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc,     \
                                 inner, 2, W_, accumulate); break;                         \
    case 1: pynn_direct_tile_##S(A + r * ar, ar, ap, B + c, ldb, C + r * ldc + c, ldc,     \
                                 inner, 1, W_, accumulate); break;                         \
    default: break;                                                                        \
    }

#define PYNN_DIRECT_PRODUCT(T, S, L)                                                       \
PYNN_TARGET_CLONES_FMA __attribute__((unused))                                            \
static void pynn_direct_##S(const T* A, Py_ssize_t ar, Py_ssize_t ap, const T* B,          \
                            Py_ssize_t ldb, T* C, Py_ssize_t ldc, Py_ssize_t rows,         \
                            Py_ssize_t cols, Py_ssize_t inner, int accumulate) {           \
    Py_ssize_t r, c = 0;                                                                   \
    int tail;                                                                              \
    for (; c + 2 * L <= cols; c += 2 * L) {                                                \
        enum { W_ = 2 * L };                                                               \
        PYNN_DIRECT_COLUMN(S)                                                              \
    }                                                                                      \
    tail = (int)(cols - c);                                                                \
    if (tail > 0) {                                                                        \
        int W_ = tail;                                                                     \
        PYNN_DIRECT_COLUMN(S)                                                              \
    }                                                                                      \
}

PYNN_DIRECT_PART(float, f, pynn_direct_v8f, pynn_direct_v8f_u, 8)
PYNN_DIRECT_PART(double, d, pynn_direct_v4d, pynn_direct_v4d_u, 4)
PYNN_DIRECT_TILE(float, f, pynn_direct_v8f, 8)
PYNN_DIRECT_TILE(double, d, pynn_direct_v4d, 4)
PYNN_DIRECT_PRODUCT(float, f, 8)
PYNN_DIRECT_PRODUCT(double, d, 4)

#else
/* Without GCC's vector extension: the same sums, each element over p in order. */
#define PYNN_DIRECT_PRODUCT(T, S)                                                          \
static void pynn_direct_##S(const T* A, Py_ssize_t ar, Py_ssize_t ap, const T* B,          \
                            Py_ssize_t ldb, T* C, Py_ssize_t ldc, Py_ssize_t rows,         \
                            Py_ssize_t cols, Py_ssize_t inner, int accumulate) {           \
    Py_ssize_t r, c, p;                                                                    \
    for (r = 0; r < rows; r++)                                                             \
        for (c = 0; c < cols; c++) {                                                       \
            T s = accumulate ? C[r * ldc + c] : (T)0;                                      \
            for (p = 0; p < inner; p++)                                                    \
                s += A[r * ar + p * ap] * B[p * ldb + c];                                  \
            C[r * ldc + c] = s;                                                            \
        }                                                                                  \
}
PYNN_DIRECT_PRODUCT(float, f)
PYNN_DIRECT_PRODUCT(double, d)
#endif

#endif /* PYNN_DIRECT_H */
