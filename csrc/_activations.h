/* Activations' C loops for csrc/_activations.pxd (declared there, used by every kernel family
 * that applies an activation: activations, dense, batchnorm, losses, the step program).
 *
 * Included by Cython after Python.h (Py_ssize_t). Every function is static: each module that
 * cimports _activations.pxd compiles its own copy with its own flags, as when this C sat in a
 * Cython string in that .pxd.
 */
#ifndef PYNN_ACTIVATIONS_H
#define PYNN_ACTIVATIONS_H

/* Float32 sigmoid / tanh / ELU spans, written branchless (compute every candidate, then
 * select) so GCC vectorizes them: libm's scalar expf/tanhf cannot be vectorized without
 * -ffast-math, and under the default -ftrapping-math GCC will not if-convert an FP operation
 * that sits in only one arm of a branch. On x86-64 glibc Linux with GCC the spans are
 * cloned for AVX-512 and AVX2 and picked at load time (ifunc); elsewhere they build for
 * the baseline ISA. Accuracy: a few float ulps (Cephes polynomials), NaN propagates. */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__GNUC__) && !defined(__clang__)
/* FP exception flags are never read here; without this GCC keeps the selects as branches
 * ("control flow in loop") and nothing vectorizes. And no fused multiply-adds: GCC's
 * "avx512f" target implies FMA (its "avx2" does not), and with contraction on, the AVX-512
 * clone's vector body and its scalar tail contracted differently, so an element's bits
 * depended on where it fell in a span (float32 GELU and Mish backward, seen on an AMD EPYC
 * Zen 4: a fused Dense backward, one row per span, against the whole array in one). Without
 * it every clone, body and tail round alike, on every CPU. */
#define PYNN_NO_TRAP __attribute__((optimize("no-trapping-math", "fp-contract=off")))
#else
#define PYNN_NO_TRAP
#endif
/* AVX-512/AVX2 clones only where the platform has ifunc (glibc): see _simd_clone.h */
#include "_simd_clone.h"
#define PYNN_SIMD_CLONES PYNN_NO_TRAP PYNN_TARGET_CLONES
#if defined(__GNUC__)
#define PYNN_ALWAYS_INLINE PYNN_NO_TRAP __attribute__((always_inline))
#define PYNN_MAYBE_UNUSED __attribute__((unused))  /* each module calls only some */
#else
#define PYNN_ALWAYS_INLINE
#define PYNN_MAYBE_UNUSED
#endif

/* exp(x) for x <= 0 (Cephes expf). Clamped at -87.3, where float's normal range ends:
 * smaller arguments give 1.2e-38 instead of a subnormal or 0 (absolute error < 2e-38).
 * One select only: correlated selects get jump-threaded into branches, which stops
 * vectorization. NaN passes the clamp (the compare is false) and propagates. */
static inline PYNN_ALWAYS_INLINE float pynn_exp_nonpos_f(float x) {
    float xc = x < -87.3f ? -87.3f : x;
    float fx = xc * 1.44269504088896341f;
    /* n = round(fx) by the 1.5 * 2**23 trick: a floor with a fix-up select got turned
     * into a branch and blocked vectorization */
    float n = (fx + 12582912.0f) - 12582912.0f;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float y = ((((1.9875691500e-4f * r + 1.3981999507e-3f) * r + 8.3334519073e-3f) * r
                + 4.1665795894e-2f) * r + 1.6666665459e-1f) * r + 5.0000001201e-1f;
    y = y * z + r + 1.0f;
    /* NaN (x NaN) to int is undefined behavior: convert 0 instead (a select, so the loops
     * still vectorize); y is NaN then, so the result is NaN whatever the scale. */
    float nc = n == n ? n : 0.0f;
    int32_t bits = ((int32_t)nc + 127) << 23;    /* 2**n, n in [-126, 0] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

PYNN_SIMD_CLONES
static void pynn_sigmoid_span_f(const float* x, float* y, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float xi = x[i];
        float e = pynn_exp_nonpos_f(-fabsf(xi));   /* exp(-|x|): no overflow */
        float r = 1.0f / (1.0f + e);
        float en = e * r;
        y[i] = xi >= 0.0f ? r : en;
    }
}

PYNN_SIMD_CLONES
static void pynn_tanh_span_f(const float* x, float* y, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float xi = x[i];
        float a = fabsf(xi);
        /* |x| < 0.625: odd polynomial (no cancellation near 0) */
        float z = xi * xi;
        float small = ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z
                         - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z
                       - 3.33332819422e-1f) * z * xi + xi;
        /* otherwise (1 - e) / (1 + e) with e = exp(-2|x|) <= 0.29: no cancellation */
        float e = pynn_exp_nonpos_f(-2.0f * a);
        float t = (1.0f - e) / (1.0f + e);
        float large = copysignf(t, xi);
        y[i] = a < 0.625f ? small : large;   /* NaN: both candidates are NaN */
    }
}

PYNN_SIMD_CLONES
static void pynn_elu_span_f(const float* x, float* y, Py_ssize_t n, float alpha) {
    for (Py_ssize_t i = 0; i < n; i++) {
        float xi = x[i];
        float xn = xi > 0.0f ? 0.0f : xi;      /* min(x, 0), keeping NaN */
        /* expm1 on [-0.5, 0]: Taylor series to x^8 (error < 2e-8 relative) */
        float p = ((((((xn * (1.0f / 40320) + 1.0f / 5040) * xn + 1.0f / 720) * xn
                      + 1.0f / 120) * xn + 1.0f / 24) * xn + 1.0f / 6) * xn + 0.5f);
        float small = p * xn * xn + xn;
        float big = pynn_exp_nonpos_f(xn) - 1.0f;  /* below -0.5: no cancellation */
        float em1 = xn > -0.5f ? small : big;
        float neg = alpha * em1;
        y[i] = xi > 0.0f ? xi : neg;
    }
}

/* ---- float32 softmax rows (softmax forward, softmax cross-entropy) ----
 * After subtracting the row max every exp argument is <= 0, so pynn_exp_nonpos_f applies
 * and the exps vectorize. Rows are processed in blocks of about PYNN_SOFTMAX_BLOCK
 * elements (16 KB, stays in L1): shift every row of the block by its max, then one flat
 * exp over the whole block (short rows such as 10 classes would vectorize badly one row at
 * a time), then per-row sums in double and the scaling. Rows longer than the block are
 * one block each. */
#define PYNN_SOFTMAX_BLOCK 4096
#define PYNN_LANES 16

/* max of x[0..n), n >= 1. A NaN may or may not end up as the max; either way its own
 * exp is NaN, so the row's sum and the whole row become NaN. A running max is a chain
 * of selects that GCC will not vectorize as a reduction without -ffast-math (not even
 * split into independent lanes), so with GCC/clang the lanes are an explicit vector. */
#if defined(__GNUC__)
typedef float pynn_v16sf __attribute__((vector_size(64)));
typedef int32_t pynn_v16si __attribute__((vector_size(64)));
#endif
static inline PYNN_ALWAYS_INLINE float pynn_max_f(const float* x, Py_ssize_t n) {
    float m = x[0];
    Py_ssize_t i = 0;
#if defined(__GNUC__)
    if (n >= 2 * PYNN_LANES) {
        pynn_v16sf acc, v;
        memcpy(&acc, x, sizeof acc);
        for (i = PYNN_LANES; i + PYNN_LANES <= n; i += PYNN_LANES) {
            memcpy(&v, x + i, sizeof v);
            pynn_v16si gt = v > acc;   /* all ones where v > acc */
            acc = (pynn_v16sf)((gt & (pynn_v16si)v) | (~gt & (pynn_v16si)acc));
        }
        for (int l = 0; l < PYNN_LANES; l++) m = acc[l] > m ? acc[l] : m;
    }
#endif
    for (; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

/* sum of x[0..n) in double (k float terms summed in float would lose ~log2(k) bits),
 * in independent lanes so it vectorizes without reassociation flags */
static inline PYNN_ALWAYS_INLINE double pynn_sum_f(const float* x, Py_ssize_t n) {
    double s = 0.0;
    Py_ssize_t i = 0;
    if (n >= 2 * PYNN_LANES) {
        double lane[PYNN_LANES] = {0};
        for (; i + PYNN_LANES <= n; i += PYNN_LANES)
            for (int l = 0; l < PYNN_LANES; l++) lane[l] += (double)x[i + l];
        for (int l = 0; l < PYNN_LANES; l++) s += lane[l];
    }
    for (; i < n; i++) s += (double)x[i];
    return s;
}

/* For rows [0, n) of x (k >= 1 columns): mx[r] := max of row r, e := x - mx[r] row-wise,
 * then e := exp(e) (every argument <= 0; NaN stays NaN). e may not alias x. */
static inline PYNN_ALWAYS_INLINE void pynn_exp_shifted_rows_f(
        const float* x, float* e, float* mx, Py_ssize_t n, Py_ssize_t k) {
    for (Py_ssize_t r = 0; r < n; r++) {
        const float* xr = x + r * k;
        float* er = e + r * k;
        float m = pynn_max_f(xr, k);
        mx[r] = m;
        for (Py_ssize_t j = 0; j < k; j++) er[j] = xr[j] - m;
    }
    for (Py_ssize_t i = 0; i < n * k; i++) e[i] = pynn_exp_nonpos_f(e[i]);
}

/* Rows a block holds: as many whole rows as fit in PYNN_SOFTMAX_BLOCK, at least one. */
static inline Py_ssize_t pynn_block_rows(Py_ssize_t k) {
    return k < PYNN_SOFTMAX_BLOCK ? PYNN_SOFTMAX_BLOCK / k : 1;
}

/* y := softmax of each row of x, rows [0, n), k >= 1 columns. y may not alias x. */
PYNN_SIMD_CLONES PYNN_MAYBE_UNUSED
static void pynn_softmax_rows_f(const float* x, float* y, Py_ssize_t n, Py_ssize_t k) {
    float mx[PYNN_SOFTMAX_BLOCK];
    Py_ssize_t br = pynn_block_rows(k);
    for (Py_ssize_t r0 = 0; r0 < n; r0 += br) {
        Py_ssize_t nr = n - r0 < br ? n - r0 : br;
        float* yb = y + r0 * k;
        pynn_exp_shifted_rows_f(x + r0 * k, yb, mx, nr, k);
        for (Py_ssize_t r = 0; r < nr; r++) {
            float* yr = yb + r * k;
            /* one reciprocal per row instead of k divisions (within 1 ulp of e / sum) */
            float inv = (float)(1.0 / pynn_sum_f(yr, k));
            for (Py_ssize_t j = 0; j < k; j++) yr[j] = yr[j] * inv;
        }
    }
}

/* Softmax cross-entropy of rows [0, n) of z (k >= 1 columns, labels in [0, k)), each
 * row's loss l_r = logsumexp(z_r) - z_r[label_r] weighted by w_r (w[r], or 1 when w is
 * NULL): returns sum_r w_r l_r in double; unless g is NULL,
 * g := (softmax(z) - onehot(label)) * w_r * scale, computed in double and rounded once;
 * unless row_loss is NULL, row_loss[r] := w_r l_r. */
PYNN_SIMD_CLONES PYNN_MAYBE_UNUSED
static double pynn_softmax_ce_rows_f(const float* z, const Py_ssize_t* labels,
                                     const double* w, float* g, float* row_loss,
                                     Py_ssize_t n, Py_ssize_t k, double scale) {
    float mx[PYNN_SOFTMAX_BLOCK];
    float scratch[PYNN_SOFTMAX_BLOCK];  /* the exps when no gradient is wanted */
    double loss = 0.0;
    Py_ssize_t br = pynn_block_rows(k);
    for (Py_ssize_t r0 = 0; r0 < n; r0 += br) {
        Py_ssize_t nr = n - r0 < br ? n - r0 : br;
        const float* zb = z + r0 * k;
        if (g == NULL && k > PYNN_SOFTMAX_BLOCK) {
            /* value only, a row longer than the scratch: sum its exps chunk by chunk */
            float m = pynn_max_f(zb, k);
            double s = 0.0;
            for (Py_ssize_t c = 0; c < k; c += PYNN_SOFTMAX_BLOCK) {
                Py_ssize_t len = k - c < PYNN_SOFTMAX_BLOCK ? k - c : PYNN_SOFTMAX_BLOCK;
                for (Py_ssize_t j = 0; j < len; j++)
                    scratch[j] = pynn_exp_nonpos_f(zb[c + j] - m);
                s += pynn_sum_f(scratch, len);
            }
            double l = log(s) - ((double)zb[labels[r0]] - m);
            if (w != NULL) l *= w[r0];
            if (row_loss != NULL) row_loss[r0] = (float)l;
            loss += l;
            continue;
        }
        float* eb = g != NULL ? g + r0 * k : scratch;
        pynn_exp_shifted_rows_f(zb, eb, mx, nr, k);
        for (Py_ssize_t r = 0; r < nr; r++) {
            const float* zr = zb + r * k;
            float* er = eb + r * k;
            Py_ssize_t lab = labels[r0 + r];
            double s = pynn_sum_f(er, k);
            double wr = w != NULL ? w[r0 + r] : 1.0;
            double l = wr * (log(s) - ((double)zr[lab] - (double)mx[r]));
            if (row_loss != NULL) row_loss[r0 + r] = (float)l;
            loss += l;
            if (g != NULL) {
                double gscale = wr * scale / s;
                /* the label entry as -(sum of the other exps) / s: p - 1 would cancel
                 * when p is close to 1, s - e_lab does not (s is exact to 1e-16) */
                double glab = ((double)er[lab] - s) * gscale;
                for (Py_ssize_t j = 0; j < k; j++) er[j] = (float)((double)er[j] * gscale);
                er[lab] = (float)glab;
            }
        }
    }
    return loss;
}

/* Spans whose select has arithmetic in one arm: kept in C so PYNN_NO_TRAP lets GCC
 * if-convert them (from Cython, GCC sank the multiply back into a branch). */
#define PYNN_SELECT_SPANS(T, S)                                                        \
static PYNN_NO_TRAP void pynn_leaky_relu_span_##S(const T* x, T* y, Py_ssize_t n,      \
                                                  T slope) {                            \
    for (Py_ssize_t i = 0; i < n; i++) {                                                \
        T xi = x[i], neg = xi * slope;                                                  \
        y[i] = xi > 0 ? xi : neg;                                                       \
    }                                                                                   \
}                                                                                       \
/* dx = dy * (s > 0 ? 1 : y + alpha), s being x (or y when x was not kept) */           \
static PYNN_NO_TRAP void pynn_elu_backward_span_##S(const T* dy, const T* s,            \
                                                    const T* y, T* dx, Py_ssize_t n,    \
                                                    T alpha) {                          \
    for (Py_ssize_t i = 0; i < n; i++) {                                                \
        T neg = y[i] + alpha;                                                           \
        dx[i] = dy[i] * (s[i] > 0 ? (T)1 : neg);                                        \
    }                                                                                   \
}
PYNN_SELECT_SPANS(float, f)
PYNN_SELECT_SPANS(double, d)

/* Memory-bound float32 spans, cloned like the ones above: the wider vectors matter when
 * the data sits in L2 (a layer's activations usually do). */
PYNN_SIMD_CLONES
static void pynn_relu_backward_span_f(const float* dy, const float* y, float* dx,
                                      Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dx[i] = dy[i] * (y[i] > 0.0f ? 1.0f : 0.0f);
}
PYNN_SIMD_CLONES
static void pynn_tanh_backward_span_f(const float* dy, const float* y, float* dx,
                                      Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
}
PYNN_SIMD_CLONES
static void pynn_relu_span_f(const float* x, float* y, Py_ssize_t n) {
    for (Py_ssize_t i = 0; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
}

/* the smooth kinds (GELU, SiLU, softplus, Mish): their spans use the helpers above */
#include "_activations_smooth.h"

#endif /* PYNN_ACTIVATIONS_H */
