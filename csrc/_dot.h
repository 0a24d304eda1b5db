/* The dense forward's own product for a few rows (csrc/_dense.pxd, DENSE_DOT):
 * Z[i, j] = X[i, :] . W[j, :] + b[j], every output a dot product of two rows that lie
 * contiguous in memory (X is n x k, W is m x k, both row-major), read where they lie.
 *
 * Why not BLAS: a GEMM packs both operands into its own layout first. For a few rows against
 * a big weight the packing is most of the call (one row of a 784 x 256 float32 layer: ~150 us
 * packed against ~15 us of arithmetic; 16 rows: ~50 us of a 100 us call, this host's OpenBLAS
 * 0.3.30). A matrix-vector product per row reads the weight once per row instead, which wins
 * for one row and loses from a few. Here a tile of TILE_X rows of X and TILE_W rows of W
 * keeps its TILE_X * TILE_W partial sums in vector registers: each step loads one vector of
 * each row and does one fused multiply-add per pair, so the arithmetic, not the loads, is
 * what bounds it, and nothing is copied.
 *
 * Rounding is the same for every output whatever the tiling: each (i, j) accumulates its own
 * LANES partial sums over k in order (the last, short vector padded with zeros), reduces them
 * in one fixed order, then adds b[j]. So a product split over threads, or over tiles at the
 * edges, gives the bits of the unsplit one: 1 and 2 threads agree, and a row's output does not
 * depend on the other rows of the batch. The clones (PYNN_TARGET_CLONES_FMA, _simd_clone.h)
 * round differently from each other (x86-64-v3 and v4 contract each multiply-add into one
 * fused operation, the baseline does not), as a CPU's BLAS kernel does.
 *
 * Included by Cython after Python.h (Py_ssize_t). */
#ifndef PYNN_DOT_H
#define PYNN_DOT_H

#include <string.h>
#include "_simd_clone.h"

/* The tile: 4 rows of X by 3 rows of W is 12 accumulators plus 3 rows of W in registers, 15
 * of the 16 vector registers of AVX2. */
#define PYNN_DOT_TILE_X 4
#define PYNN_DOT_TILE_W 3

#if defined(__GNUC__)
#define PYNN_DOT_INLINE static inline __attribute__((always_inline))
#define PYNN_DOT_UNUSED __attribute__((unused))
/* Vectors of 32 bytes (the baseline clone lowers them to two SSE halves), loaded from any
 * float alignment. */
typedef float pynn_v8f __attribute__((vector_size(32)));
typedef float pynn_v8f_u __attribute__((vector_size(32), aligned(4), may_alias));
typedef double pynn_v4d __attribute__((vector_size(32)));
typedef double pynn_v4d_u __attribute__((vector_size(32), aligned(8), may_alias));
#define PYNN_DOT_LOAD(VU, p) (*(const VU*)(p))
#else
/* Without GCC's vector extension the same arithmetic lane by lane (same partial sums, same
 * reduction: the same results), left to the compiler to vectorize. */
#define PYNN_DOT_INLINE static inline
#define PYNN_DOT_UNUSED
typedef struct { float v[8]; } pynn_v8f;
typedef struct { double v[4]; } pynn_v4d;
#endif

/* One tile's product, TX rows of X (from X, ld k) by TW rows of W (from W, ld k), into Z
 * (ld ldz) plus b (NULL: none). TX, TW are compile-time constants at every call, so the
 * accumulator array lives in registers. */
#if defined(__GNUC__)
#define PYNN_DOT_TILE(T, S, V, VU, L, REDUCE)                                                \
PYNN_DOT_INLINE void pynn_dot_tile_##S(const T* X, const T* W, const T* b, T* Z,             \
                                       Py_ssize_t k, Py_ssize_t ldz, int TX, int TW) {      \
    V acc[PYNN_DOT_TILE_X][PYNN_DOT_TILE_W];                                                 \
    V w[PYNN_DOT_TILE_W];                                                                    \
    Py_ssize_t kk, full = k - k % L;                                                         \
    int a, c;                                                                                \
    for (a = 0; a < TX; a++)                                                                 \
        for (c = 0; c < TW; c++)                                                             \
            acc[a][c] = (V){0};                                                              \
    for (kk = 0; kk < full; kk += L) {                                                       \
        for (c = 0; c < TW; c++)                                                             \
            w[c] = PYNN_DOT_LOAD(VU, W + c * k + kk);                                        \
        for (a = 0; a < TX; a++) {                                                           \
            V x = PYNN_DOT_LOAD(VU, X + a * k + kk);                                         \
            for (c = 0; c < TW; c++)                                                         \
                acc[a][c] += x * w[c];                                                       \
        }                                                                                    \
    }                                                                                        \
    if (full < k) {  /* the short last vector, zero-padded */                                \
        for (c = 0; c < TW; c++) {                                                           \
            w[c] = (V){0};                                                                   \
            memcpy(&w[c], W + c * k + full, (k - full) * sizeof(T));                         \
        }                                                                                    \
        for (a = 0; a < TX; a++) {                                                           \
            V x = (V){0};                                                                    \
            memcpy(&x, X + a * k + full, (k - full) * sizeof(T));                            \
            for (c = 0; c < TW; c++)                                                         \
                acc[a][c] += x * w[c];                                                       \
        }                                                                                    \
    }                                                                                        \
    for (a = 0; a < TX; a++)                                                                 \
        for (c = 0; c < TW; c++) {                                                           \
            T s = REDUCE(acc[a][c]);                                                         \
            Z[a * ldz + c] = b != NULL ? s + b[c] : s;                                       \
        }                                                                                    \
}
#define PYNN_DOT_REDUCE_F(v) \
    ((((v)[0] + (v)[4]) + ((v)[2] + (v)[6])) + (((v)[1] + (v)[5]) + ((v)[3] + (v)[7])))
#define PYNN_DOT_REDUCE_D(v) (((v)[0] + (v)[2]) + ((v)[1] + (v)[3]))
#else
#define PYNN_DOT_TILE(T, S, V, VU, L, REDUCE)                                                \
PYNN_DOT_INLINE void pynn_dot_tile_##S(const T* X, const T* W, const T* b, T* Z,             \
                                       Py_ssize_t k, Py_ssize_t ldz, int TX, int TW) {      \
    V acc[PYNN_DOT_TILE_X][PYNN_DOT_TILE_W];                                                 \
    Py_ssize_t kk, full = k - k % L;                                                         \
    int a, c, l;                                                                             \
    for (a = 0; a < TX; a++)                                                                 \
        for (c = 0; c < TW; c++)                                                             \
            for (l = 0; l < L; l++)                                                          \
                acc[a][c].v[l] = 0;                                                          \
    for (kk = 0; kk < k; kk += L)                                                            \
        for (a = 0; a < TX; a++)                                                             \
            for (c = 0; c < TW; c++)                                                         \
                for (l = 0; l < L && (kk < full || kk + l < k); l++)                         \
                    acc[a][c].v[l] += X[a * k + kk + l] * W[c * k + kk + l];                 \
    for (a = 0; a < TX; a++)                                                                 \
        for (c = 0; c < TW; c++) {                                                           \
            T s = REDUCE(acc[a][c].v);                                                       \
            Z[a * ldz + c] = b != NULL ? s + b[c] : s;                                       \
        }                                                                                    \
}
#define PYNN_DOT_REDUCE_F(v) \
    ((((v)[0] + (v)[4]) + ((v)[2] + (v)[6])) + (((v)[1] + (v)[5]) + ((v)[3] + (v)[7])))
#define PYNN_DOT_REDUCE_D(v) (((v)[0] + (v)[2]) + ((v)[1] + (v)[3]))
#endif

/* Z[i, j] (ld ldz) := X[i] . W[j] + b[j] for i < n and j0 <= j < j1 (b may be NULL): the
 * columns j0..j1 of the forward, every row. Tiles of TILE_W rows of W outside (they stay in
 * the L1 cache while every tile of TILE_X rows of X passes them), the edges with smaller
 * tiles of the same arithmetic. */
#define PYNN_DOT_ROWS(T, S)                                                                  \
PYNN_TARGET_CLONES_FMA PYNN_DOT_UNUSED static void pynn_dot_rows_##S(                            \
        const T* X, const T* W, const T* b, T* Z, Py_ssize_t n, Py_ssize_t k,                \
        Py_ssize_t j0, Py_ssize_t j1, Py_ssize_t ldz) {                                      \
    Py_ssize_t i, j;                                                                         \
    for (j = j0; j < j1; j += PYNN_DOT_TILE_W) {                                             \
        int tw = j1 - j < PYNN_DOT_TILE_W ? (int)(j1 - j) : PYNN_DOT_TILE_W;                 \
        const T* bj = b != NULL ? b + j : NULL;                                              \
        for (i = 0; i < n; i += PYNN_DOT_TILE_X) {                                           \
            int tx = n - i < PYNN_DOT_TILE_X ? (int)(n - i) : PYNN_DOT_TILE_X;                \
            const T* x = X + i * k;                                                          \
            const T* w = W + j * k;                                                          \
            T* z = Z + i * ldz + j;                                                          \
            /* constant tile sizes, so each call below is unrolled into registers */         \
            switch (tx * 4 + tw) {                                                           \
            case 4 * 4 + 3: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 4, 3); break;             \
            case 4 * 4 + 2: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 4, 2); break;             \
            case 4 * 4 + 1: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 4, 1); break;             \
            case 3 * 4 + 3: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 3, 3); break;             \
            case 3 * 4 + 2: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 3, 2); break;             \
            case 3 * 4 + 1: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 3, 1); break;             \
            case 2 * 4 + 3: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 2, 3); break;             \
            case 2 * 4 + 2: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 2, 2); break;             \
            case 2 * 4 + 1: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 2, 1); break;             \
            case 1 * 4 + 3: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 1, 3); break;             \
            case 1 * 4 + 2: pynn_dot_tile_##S(x, w, bj, z, k, ldz, 1, 2); break;             \
            default:        pynn_dot_tile_##S(x, w, bj, z, k, ldz, 1, 1); break;             \
            }                                                                                \
        }                                                                                    \
    }                                                                                        \
}

#if defined(__GNUC__)
PYNN_DOT_TILE(float, f, pynn_v8f, pynn_v8f_u, 8, PYNN_DOT_REDUCE_F)
PYNN_DOT_TILE(double, d, pynn_v4d, pynn_v4d_u, 4, PYNN_DOT_REDUCE_D)
#else
PYNN_DOT_TILE(float, f, pynn_v8f, unused, 8, PYNN_DOT_REDUCE_F)
PYNN_DOT_TILE(double, d, pynn_v4d, unused, 4, PYNN_DOT_REDUCE_D)
#endif
PYNN_DOT_ROWS(float, f)
PYNN_DOT_ROWS(double, d)

#endif /* PYNN_DOT_H */
