/* Batch normalization's per-element loops for csrc/_batchnorm.pxd: rows of a (rows x f) block,
 * the column statistics and the normalization in double.
 *
 * Why C and not Cython loops (as for _optim.h): setup.py builds portable objects (-O3, no
 * -march), so a plain loop gets SSE2 only, two doubles per instruction; on x86-64 glibc Linux
 * with GCC each function below is cloned for AVX-512 and AVX2 and the clone is picked once, at
 * load time (_simd_clone.h). restrict: the outputs never overlap the inputs (the in-place dX
 * pass has its own function), which drops the run-time overlap checks and scalar fallbacks.
 *
 * Results do not depend on the clone: no fused multiply-add (fp-contract off for these
 * functions: only the AVX clones could fuse, which would round differently), and +, -, *, /
 * are correctly rounded in vector and scalar form alike; each element takes the operations of
 * the scalar loops these replaced, in the same order. The blocking of the sums (which rows go
 * into which partial) stays with the caller, so the thread count does not change them either.
 */
#ifndef PYNN_BATCHNORM_H
#define PYNN_BATCHNORM_H

#include "_simd_clone.h"

#if defined(__GNUC__) && !defined(__clang__)
#define PYNN_BN_LOOP __attribute__((optimize("fp-contract=off"))) PYNN_TARGET_CLONES
#else
#define PYNN_BN_LOOP
#endif

/* Every loop below runs over `rows` rows of `w` columns of a row-major array whose rows are
 * `ld` elements apart: a thread's column tile (w < ld) or whole rows (w == ld). The per-column
 * arrays (mean, acc, ...) start at the tile's first column. */

/* Columns per register block of the sums: 32 doubles are 4 AVX-512 (8 AVX2) registers per
 * accumulator. The sums walk a block's rows with the block's accumulators held in registers
 * instead of loading and storing acc[j] for every element; each column still adds its rows in
 * row order, so the bits are those of the plain row loop. */
#define PYNN_BN_CB 32

/* acc[j] += x[r, j] over rows r */
#define PYNN_BN_COLSUM(NAME, T)                                                               \
    static PYNN_BN_LOOP void NAME(const T* restrict x, Py_ssize_t rows, Py_ssize_t w,          \
                                  Py_ssize_t ld, double* restrict acc) {                      \
        Py_ssize_t j0 = 0;                                                                    \
        for (; j0 + PYNN_BN_CB <= w; j0 += PYNN_BN_CB) {                                      \
            double a[PYNN_BN_CB];                                                             \
            for (int c = 0; c < PYNN_BN_CB; c++) a[c] = acc[j0 + c];                          \
            for (Py_ssize_t r = 0; r < rows; r++) {                                           \
                const T* restrict xr = x + r * ld + j0;                                       \
                for (int c = 0; c < PYNN_BN_CB; c++) a[c] = a[c] + (double)xr[c];             \
            }                                                                                 \
            for (int c = 0; c < PYNN_BN_CB; c++) acc[j0 + c] = a[c];                          \
        }                                                                                     \
        for (Py_ssize_t r = 0; r < rows && j0 < w; r++) {                                     \
            const T* restrict xr = x + r * ld;                                                \
            for (Py_ssize_t j = j0; j < w; j++) acc[j] = acc[j] + (double)xr[j];              \
        }                                                                                     \
    }

/* acc[j] += (x[r, j] - mean[j])^2 over rows r */
#define PYNN_BN_COLSQDEV(NAME, T)                                                             \
    static PYNN_BN_LOOP void NAME(const T* restrict x, Py_ssize_t rows, Py_ssize_t w,          \
                                  Py_ssize_t ld, const double* restrict mean,                 \
                                  double* restrict acc) {                                     \
        Py_ssize_t j0 = 0;                                                                    \
        for (; j0 + PYNN_BN_CB <= w; j0 += PYNN_BN_CB) {                                      \
            double a[PYNN_BN_CB], m[PYNN_BN_CB];                                              \
            for (int c = 0; c < PYNN_BN_CB; c++) {                                            \
                a[c] = acc[j0 + c];                                                           \
                m[c] = mean[j0 + c];                                                          \
            }                                                                                 \
            for (Py_ssize_t r = 0; r < rows; r++) {                                           \
                const T* restrict xr = x + r * ld + j0;                                       \
                for (int c = 0; c < PYNN_BN_CB; c++) {                                        \
                    double d = (double)xr[c] - m[c];                                          \
                    a[c] = a[c] + d * d;                                                      \
                }                                                                             \
            }                                                                                 \
            for (int c = 0; c < PYNN_BN_CB; c++) acc[j0 + c] = a[c];                          \
        }                                                                                     \
        for (Py_ssize_t r = 0; r < rows && j0 < w; r++) {                                     \
            const T* restrict xr = x + r * ld;                                                \
            for (Py_ssize_t j = j0; j < w; j++) {                                             \
                double d = (double)xr[j] - mean[j];                                           \
                acc[j] = acc[j] + d * d;                                                      \
            }                                                                                 \
        }                                                                                     \
    }

/* y[r, j] = (x[r, j] - mean[j]) invstd[j] gamma[j] + beta[j], with gamma and beta already in
 * double (the caller's per-column copies): each element converts in and out once, and takes
 * the reference's operations in its order */
#define PYNN_BN_NORMALIZE(NAME, T)                                                            \
    static PYNN_BN_LOOP void NAME(const T* restrict x, T* restrict y, Py_ssize_t rows,         \
                                  Py_ssize_t w, Py_ssize_t ld, const double* restrict mean,   \
                                  const double* restrict invstd,                              \
                                  const double* restrict gamma,                               \
                                  const double* restrict beta) {                              \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict xr = x + r * ld;                                                \
            T* restrict yr = y + r * ld;                                                      \
            for (Py_ssize_t j = 0; j < w; j++)                                                \
                yr[j] = (T)(((double)xr[j] - mean[j]) * invstd[j] * gamma[j] + beta[j]);      \
        }                                                                                     \
    }

/* s1[j] += dz[r, j] and s2[j] += dz[r, j] xhat[r, j], xhat = (x - mean) invstd */
#define PYNN_BN_GRADSUMS(NAME, T)                                                             \
    static PYNN_BN_LOOP void NAME(const T* restrict dz, const T* restrict x, Py_ssize_t rows,   \
                                  Py_ssize_t w, Py_ssize_t ld, const double* restrict mean,   \
                                  const double* restrict invstd, double* restrict s1,         \
                                  double* restrict s2) {                                      \
        Py_ssize_t j0 = 0;                                                                    \
        for (; j0 + PYNN_BN_CB <= w; j0 += PYNN_BN_CB) {                                      \
            double a1[PYNN_BN_CB], a2[PYNN_BN_CB];                                            \
            for (int c = 0; c < PYNN_BN_CB; c++) {                                            \
                a1[c] = s1[j0 + c];                                                           \
                a2[c] = s2[j0 + c];                                                           \
            }                                                                                 \
            for (Py_ssize_t r = 0; r < rows; r++) {                                           \
                const T* restrict zr = dz + r * ld + j0;                                      \
                const T* restrict xr = x + r * ld + j0;                                       \
                for (int c = 0; c < PYNN_BN_CB; c++) {                                        \
                    double d = (double)zr[c];                                                 \
                    a1[c] = a1[c] + d;                                                        \
                    a2[c] = a2[c] + d * (((double)xr[c] - mean[j0 + c]) * invstd[j0 + c]);    \
                }                                                                             \
            }                                                                                 \
            for (int c = 0; c < PYNN_BN_CB; c++) {                                            \
                s1[j0 + c] = a1[c];                                                           \
                s2[j0 + c] = a2[c];                                                           \
            }                                                                                 \
        }                                                                                     \
        for (Py_ssize_t r = 0; r < rows && j0 < w; r++) {                                     \
            const T* restrict zr = dz + r * ld;                                               \
            const T* restrict xr = x + r * ld;                                                \
            for (Py_ssize_t j = j0; j < w; j++) {                                             \
                double d = (double)zr[j];                                                     \
                s1[j] = s1[j] + d;                                                            \
                s2[j] = s2[j] + d * (((double)xr[j] - mean[j]) * invstd[j]);                  \
            }                                                                                 \
        }                                                                                     \
    }

/* dx[r, j] = coef[j] (n dz[r, j] - s1[j] - xhat[r, j] s2[j]), dz read from dx itself (the
 * activation's derivative was written there) or, in the second form, from dy */
#define PYNN_BN_DX_INPLACE(NAME, T)                                                           \
    static PYNN_BN_LOOP void NAME(T* restrict dx, const T* restrict x, Py_ssize_t rows,        \
                                  Py_ssize_t w, Py_ssize_t ld, const double* restrict mean,   \
                                  const double* restrict invstd, const double* restrict coef, \
                                  const double* restrict s1, const double* restrict s2,       \
                                  double n) {                                                 \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict xr = x + r * ld;                                                \
            T* restrict dxr = dx + r * ld;                                                    \
            for (Py_ssize_t j = 0; j < w; j++) {                                              \
                double xhat = ((double)xr[j] - mean[j]) * invstd[j];                          \
                dxr[j] = (T)(coef[j] * (n * (double)dxr[j] - s1[j] - xhat * s2[j]));          \
            }                                                                                 \
        }                                                                                     \
    }

#define PYNN_BN_DX(NAME, T)                                                                   \
    static PYNN_BN_LOOP void NAME(const T* restrict dy, T* restrict dx, const T* restrict x,   \
                                  Py_ssize_t rows, Py_ssize_t w, Py_ssize_t ld,               \
                                  const double* restrict mean,                                \
                                  const double* restrict invstd, const double* restrict coef, \
                                  const double* restrict s1, const double* restrict s2,       \
                                  double n) {                                                 \
        for (Py_ssize_t r = 0; r < rows; r++) {                                               \
            const T* restrict xr = x + r * ld;                                                \
            const T* restrict dyr = dy + r * ld;                                              \
            T* restrict dxr = dx + r * ld;                                                    \
            for (Py_ssize_t j = 0; j < w; j++) {                                              \
                double xhat = ((double)xr[j] - mean[j]) * invstd[j];                          \
                dxr[j] = (T)(coef[j] * (n * (double)dyr[j] - s1[j] - xhat * s2[j]));          \
            }                                                                                 \
        }                                                                                     \
    }

PYNN_BN_COLSUM(pynn_bn_colsum_f, float)
PYNN_BN_COLSUM(pynn_bn_colsum_d, double)
PYNN_BN_COLSQDEV(pynn_bn_colsqdev_f, float)
PYNN_BN_COLSQDEV(pynn_bn_colsqdev_d, double)
PYNN_BN_NORMALIZE(pynn_bn_normalize_f, float)
PYNN_BN_NORMALIZE(pynn_bn_normalize_d, double)
PYNN_BN_GRADSUMS(pynn_bn_gradsums_f, float)
PYNN_BN_GRADSUMS(pynn_bn_gradsums_d, double)
PYNN_BN_DX_INPLACE(pynn_bn_dx_inplace_f, float)
PYNN_BN_DX_INPLACE(pynn_bn_dx_inplace_d, double)
PYNN_BN_DX(pynn_bn_dx_f, float)
PYNN_BN_DX(pynn_bn_dx_d, double)

#endif /* PYNN_BATCHNORM_H */
