/* Row normalization's per-row loops for csrc/_rownorm.pxd (LayerNorm and RMSNorm: statistics
 * per row, over its f features), a block of rows at a time, in double.
 *
 * Why C (as for _batchnorm.h): cloned for AVX-512 and AVX2 (_simd_clone.h) without fused
 * multiply-add, so they vectorize wider than the portable build's SSE2 and give the same bits
 * on every CPU. A row's sums run in PYNN_RN_LANES independent lanes added in a fixed order: they
 * vectorize without reassociation flags, and their order depends on f alone, never on which
 * thread takes the row, so every result is the same for any thread count.
 *
 * center: LayerNorm (subtract the row mean) when nonzero, RMSNorm (no mean: the root mean
 * square) when 0. gd, bd: gamma and beta in double, one per feature (ones and zeros when the
 * layer has none). mean (LayerNorm only) and invstd: one per row, 1 / sqrt(var + eps), resp.
 * 1 / sqrt(mean(x^2) + eps).
 */
#ifndef PYNN_ROWNORM_H
#define PYNN_ROWNORM_H

#include <math.h>
#include "_simd_clone.h"

#if defined(__GNUC__) && !defined(__clang__)
#define PYNN_RN_LOOP __attribute__((optimize("fp-contract=off"))) PYNN_TARGET_CLONES
#define PYNN_RN_INLINE static inline __attribute__((always_inline))                              \
    __attribute__((optimize("fp-contract=off")))
#else
#define PYNN_RN_LOOP
#define PYNN_RN_INLINE static inline
#endif

#define PYNN_RN_LANES 16

/* sum_j ((double)x[j] - m)^p over one row, p = 1 (pow2 == 0) or 2, in lanes */
#define PYNN_RN_KERNELS(T, S)                                                                 \
PYNN_RN_INLINE double pynn_rn_sum_##S(const T* restrict x, Py_ssize_t f, double m,            \
                                      const int pow2) {                                       \
    double lane[PYNN_RN_LANES] = {0};                                                         \
    double s = 0.0;                                                                           \
    Py_ssize_t j = 0;                                                                         \
    for (; j + PYNN_RN_LANES <= f; j += PYNN_RN_LANES)                                        \
        for (int l = 0; l < PYNN_RN_LANES; l++) {                                             \
            double d = (double)x[j + l] - m;                                                  \
            lane[l] = lane[l] + (pow2 ? d * d : d);                                           \
        }                                                                                     \
    for (int l = 0; l < PYNN_RN_LANES; l++) s = s + lane[l];                                  \
    for (; j < f; j++) {                                                                      \
        double d = (double)x[j] - m;                                                          \
        s = s + (pow2 ? d * d : d);                                                           \
    }                                                                                         \
    return s;                                                                                 \
}                                                                                             \
                                                                                              \
/* Rows [0, rows): mean and invstd, then y = (x - mean) invstd gamma + beta. The mean is     \
 * refined by the mean of x - mean (its rounding error, recovered from terms that are small   \
 * when |mean| >> std), and the variance takes a pass of its own: no cancellation of           \
 * E[x^2] - E[x]^2. */                                                                        \
static PYNN_RN_LOOP void pynn_rn_forward_##S(const T* restrict x, T* restrict y,             \
                                            Py_ssize_t rows, Py_ssize_t f, double eps,        \
                                            int center, const double* restrict gd,            \
                                            const double* restrict bd, double* restrict mean,  \
                                            double* restrict invstd) {                        \
    for (Py_ssize_t r = 0; r < rows; r++) {                                                   \
        const T* restrict xr = x + r * f;                                                     \
        T* restrict yr = y + r * f;                                                           \
        double m = 0.0;                                                                       \
        if (center) {                                                                         \
            m = pynn_rn_sum_##S(xr, f, 0.0, 0) / (double)f;                                   \
            m = m + pynn_rn_sum_##S(xr, f, m, 0) / (double)f;                                 \
        }                                                                                     \
        double inv = 1.0 / sqrt(pynn_rn_sum_##S(xr, f, m, 1) / (double)f + eps);              \
        if (center) mean[r] = m;                                                              \
        invstd[r] = inv;                                                                      \
        for (Py_ssize_t j = 0; j < f; j++)                                                    \
            yr[j] = (T)(((double)xr[j] - m) * inv * gd[j] + bd[j]);                           \
    }                                                                                         \
}                                                                                             \
                                                                                              \
/* Rows [0, rows): with xhat = (x - mean) invstd and g = dy gamma,                          \
 * dx = invstd (g - sum(g) / f - xhat sum(g xhat) / f)  (RMSNorm: no sum(g) term), and       \
 * s1[j] += dy (unless NULL), s2[j] += dy xhat (unless NULL): the block's partial sums of    \
 * dbeta and dgamma. */                                                                       \
static PYNN_RN_LOOP void pynn_rn_backward_##S(const T* restrict dy, const T* restrict x,     \
                                             T* restrict dx, Py_ssize_t rows, Py_ssize_t f,   \
                                             int center, const double* restrict gd,           \
                                             const double* restrict mean,                     \
                                             const double* restrict invstd,                   \
                                             double* restrict s1, double* restrict s2) {      \
    for (Py_ssize_t r = 0; r < rows; r++) {                                                   \
        const T* restrict dyr = dy + r * f;                                                   \
        const T* restrict xr = x + r * f;                                                     \
        T* restrict dxr = dx + r * f;                                                         \
        double m = center ? mean[r] : 0.0;                                                    \
        double inv = invstd[r];                                                               \
        double lane_g[PYNN_RN_LANES] = {0}, lane_gx[PYNN_RN_LANES] = {0};                     \
        double sg = 0.0, sgx = 0.0;                                                           \
        Py_ssize_t j = 0;                                                                     \
        for (; j + PYNN_RN_LANES <= f; j += PYNN_RN_LANES)                                    \
            for (int l = 0; l < PYNN_RN_LANES; l++) {                                         \
                double g = (double)dyr[j + l] * gd[j + l];                                    \
                lane_g[l] = lane_g[l] + g;                                                    \
                lane_gx[l] = lane_gx[l] + g * (((double)xr[j + l] - m) * inv);                \
            }                                                                                 \
        for (int l = 0; l < PYNN_RN_LANES; l++) {                                             \
            sg = sg + lane_g[l];                                                              \
            sgx = sgx + lane_gx[l];                                                           \
        }                                                                                     \
        for (; j < f; j++) {                                                                  \
            double g = (double)dyr[j] * gd[j];                                                \
            sg = sg + g;                                                                      \
            sgx = sgx + g * (((double)xr[j] - m) * inv);                                      \
        }                                                                                     \
        double mg = center ? sg / (double)f : 0.0;                                            \
        double mgx = sgx / (double)f;                                                         \
        for (j = 0; j < f; j++) {                                                             \
            double xhat = ((double)xr[j] - m) * inv;                                          \
            dxr[j] = (T)(inv * (((double)dyr[j] * gd[j] - mg) - xhat * mgx));                 \
        }                                                                                     \
        if (s1 != NULL)                                                                       \
            for (j = 0; j < f; j++) s1[j] = s1[j] + (double)dyr[j];                           \
        if (s2 != NULL)                                                                       \
            for (j = 0; j < f; j++)                                                           \
                s2[j] = s2[j] + (double)dyr[j] * (((double)xr[j] - m) * inv);                 \
    }                                                                                         \
}

PYNN_RN_KERNELS(float, f)
PYNN_RN_KERNELS(double, d)

#endif /* PYNN_ROWNORM_H */
