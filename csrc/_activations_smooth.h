/* The smooth activations' spans for csrc/_activations.pxd, included by _activations.h (whose
 * pynn_exp_nonpos_f, clone and no-trap macros they use); not included on its own. */
#ifndef PYNN_ACTIVATIONS_SMOOTH_H
#define PYNN_ACTIVATIONS_SMOOTH_H

/* ---- the smooth activations of today's MLP blocks: GELU (erf and tanh forms), SiLU,
 * softplus and Mish, forward and backward, both from the input x (their derivatives cannot be
 * taken from the output). torch's formulas, written so that every exponential is of a
 * non-positive number (exp(-|x|) and selects): no overflow for any x, and the tails keep their
 * relative accuracy where the textbook forms cancel (1 + erf(x) for x << 0, 1 - tanh^2 near
 * +-1). The float spans use pynn_exp_nonpos_f and the two helpers below, all vectorizable, and
 * are cloned like the spans above; the double spans call libm (exp, erfc, log1p), as the other
 * kinds' double paths do. One text for both (PYNN_SMOOTH_SPANS). */

/* erfc(u) for any u: Numerical Recipes' erfcc, a Chebyshev fit with relative error below
 * 1.2e-7 for every u >= 0 (2 - erfc(-u) for u < 0). NaN propagates. */
static inline PYNN_ALWAYS_INLINE float pynn_erfc_f(float u) {
    float z = fabsf(u);
    float t = 1.0f / (1.0f + 0.5f * z);
    float poly = -1.26551223f + t * (1.00002368f + t * (0.37409196f + t * (0.09678418f
                 + t * (-0.18628806f + t * (0.27886807f + t * (-1.13520398f
                 + t * (1.48851587f + t * (-0.82215223f + t * 0.17087277f))))))));
    float r = t * pynn_exp_nonpos_f(poly - z * z);   /* poly <= 3e-8: the argument is ~<= 0 */
    float neg = 2.0f - r;
    return u >= 0.0f ? r : neg;
}

/* log1p(e) for e in [0, 1]: 2 atanh(s) with s = e / (2 + e) <= 1/3, its Taylor series to
 * s^15 (truncation below 2e-9 relative): no cancellation, one division. */
static inline PYNN_ALWAYS_INLINE float pynn_log1p_unit_f(float e) {
    float s = e / (2.0f + e);
    float z = s * s;
    float series = 1.0f + z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 + z * (1.0f / 9
                   + z * (1.0f / 11 + z * (1.0f / 13 + z * (1.0f / 15)))))));
    return 2.0f * s * series;
}

/* libm's, under the float helpers' names, for the double spans */
#define pynn_exp_nonpos_d exp
#define pynn_erfc_d erfc
#define pynn_log1p_unit_d log1p

#define PYNN_SQRT1_2 0.70710678118654752440       /* 1 / sqrt(2) */
#define PYNN_INV_SQRT_2PI 0.39894228040143267794  /* 1 / sqrt(2 pi) */
#define PYNN_GELU_TANH_K 0.79788456080286535588   /* sqrt(2 / pi) */
#define PYNN_GELU_TANH_KAPPA 0.044715

#define PYNN_SMOOTH_SPANS(T, S, ATTR)                                                      \
/* y = x Phi(x) = x / 2 erfc(-x / sqrt 2) */                                                \
ATTR static void pynn_gelu_span_##S(const T* x, T* y, Py_ssize_t n) {                     \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        y[i] = (T)0.5 * xi * pynn_erfc_##S(-xi * (T)PYNN_SQRT1_2);                          \
    }                                                                                       \
}                                                                                           \
/* dx = dy (Phi(x) + x phi(x)) */                                                           \
ATTR static void pynn_gelu_backward_span_##S(const T* dy, const T* x, T* dx,             \
                                             Py_ssize_t n) {                                \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T cdf = (T)0.5 * pynn_erfc_##S(-xi * (T)PYNN_SQRT1_2);                              \
        T pdf = pynn_exp_nonpos_##S((T)-0.5 * xi * xi) * (T)PYNN_INV_SQRT_2PI;              \
        dx[i] = dy[i] * (cdf + xi * pdf);                                                   \
    }                                                                                       \
}                                                                                           \
/* y = x / 2 (1 + tanh(w)), w = sqrt(2/pi) (x + 0.044715 x^3); 1 + tanh(w) = 2 / (1 + e)   \
 * for w >= 0, 2 e / (1 + e) below, with e = exp(-2|w|) */                                  \
ATTR static void pynn_gelu_tanh_span_##S(const T* x, T* y, Py_ssize_t n) {                \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T w = (T)PYNN_GELU_TANH_K * (xi + (T)PYNN_GELU_TANH_KAPPA * (xi * xi * xi));        \
        T e = pynn_exp_nonpos_##S((T)-2 * (w >= 0 ? w : -w));                               \
        T r = (T)2 / ((T)1 + e);                                                            \
        T neg = e * r;                                                                      \
        T onep = w >= 0 ? r : neg;                                                          \
        y[i] = (T)0.5 * xi * onep;                                                          \
    }                                                                                       \
}                                                                                           \
/* dx = dy ((1 + tanh) / 2 + x / 2 (1 - tanh^2) w'), 1 - tanh^2 = 4 e / (1 + e)^2 */        \
ATTR static void pynn_gelu_tanh_backward_span_##S(const T* dy, const T* x, T* dx,        \
                                                  Py_ssize_t n) {                           \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T x2 = xi * xi;                                                                     \
        T w = (T)PYNN_GELU_TANH_K * (xi + (T)PYNN_GELU_TANH_KAPPA * (x2 * xi));             \
        T e = pynn_exp_nonpos_##S((T)-2 * (w >= 0 ? w : -w));                               \
        T r = (T)1 / ((T)1 + e);                                                            \
        T neg = e * r;                                                                      \
        T half_onep = w >= 0 ? r : neg;                  /* (1 + tanh(w)) / 2 */            \
        T sech2 = (T)4 * e * r * r;                      /* 1 - tanh(w)^2 */                \
        T dw = (T)PYNN_GELU_TANH_K * ((T)1 + (T)(3 * PYNN_GELU_TANH_KAPPA) * x2);           \
        dx[i] = dy[i] * (half_onep + (T)0.5 * xi * sech2 * dw);                             \
    }                                                                                       \
}                                                                                           \
/* y = x sigmoid(x) */                                                                      \
ATTR static void pynn_silu_span_##S(const T* x, T* y, Py_ssize_t n) {                     \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T e = pynn_exp_nonpos_##S(xi >= 0 ? -xi : xi);                                      \
        T r = (T)1 / ((T)1 + e);                                                            \
        T neg = e * r;                                                                      \
        y[i] = xi * (xi >= 0 ? r : neg);                                                    \
    }                                                                                       \
}                                                                                           \
/* dx = dy s (1 + x (1 - s)), s = sigmoid(x) */                                             \
ATTR static void pynn_silu_backward_span_##S(const T* dy, const T* x, T* dx,             \
                                             Py_ssize_t n) {                                \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T e = pynn_exp_nonpos_##S(xi >= 0 ? -xi : xi);                                      \
        T r = (T)1 / ((T)1 + e);                                                            \
        T er = e * r;                                                                       \
        T s = xi >= 0 ? r : er;                                                             \
        T one_minus_s = xi >= 0 ? er : r;                                                   \
        dx[i] = dy[i] * (s * ((T)1 + xi * one_minus_s));                                    \
    }                                                                                       \
}                                                                                           \
/* y = x where beta x > threshold, else log1p(exp(beta x)) / beta                          \
 * = (max(t, 0) + log1p(exp(-|t|))) / beta, t = beta x */                                    \
ATTR static void pynn_softplus_span_##S(const T* x, T* y, Py_ssize_t n, T beta,          \
                                        T threshold) {                                      \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T t = xi * beta;                                                                    \
        T e = pynn_exp_nonpos_##S(t >= 0 ? -t : t);                                         \
        T soft = ((t >= 0 ? t : (T)0) + pynn_log1p_unit_##S(e)) / beta;                     \
        y[i] = t > threshold ? xi : soft;                                                   \
    }                                                                                       \
}                                                                                           \
/* dx = dy where beta x > threshold, else dy sigmoid(beta x) */                             \
ATTR static void pynn_softplus_backward_span_##S(const T* dy, const T* x, T* dx,         \
                                                 Py_ssize_t n, T beta, T threshold) {       \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T t = x[i] * beta;                                                                  \
        T e = pynn_exp_nonpos_##S(t >= 0 ? -t : t);                                         \
        T r = (T)1 / ((T)1 + e);                                                            \
        T neg = e * r;                                                                      \
        T s = t >= 0 ? r : neg;                                                             \
        T d = dy[i] * s;                                                                    \
        dx[i] = t > threshold ? dy[i] : d;                                                  \
    }                                                                                       \
}                                                                                           \
/* Mish: y = x tanh(softplus(x)). With a = exp(-|x|): tanh(softplus(x)) = u / (u + 2),      \
 * u = a (a + 2), for x < 0; (1 + 2a) / (1 + 2a + 2a^2) for x >= 0 (the same, divided        \
 * through by exp(2x)); and 1 - tanh = 2 / (u + 2), resp. 2a^2 / (1 + 2a + 2a^2). */           \
ATTR static void pynn_mish_span_##S(const T* x, T* y, Py_ssize_t n) {                     \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T a = pynn_exp_nonpos_##S(xi >= 0 ? -xi : xi);                                      \
        T u = a * (a + (T)2);                                                               \
        T pos = ((T)1 + (T)2 * a) / ((T)1 + (T)2 * a + (T)2 * a * a);                       \
        T neg = u / (u + (T)2);                                                             \
        y[i] = xi * (xi >= 0 ? pos : neg);                                                  \
    }                                                                                       \
}                                                                                           \
/* dx = dy (tsp + x sigmoid(x) (1 - tsp^2)), tsp = tanh(softplus(x)) */                     \
ATTR static void pynn_mish_backward_span_##S(const T* dy, const T* x, T* dx,             \
                                             Py_ssize_t n) {                                \
    for (Py_ssize_t i = 0; i < n; i++) {                                                    \
        T xi = x[i];                                                                        \
        T a = pynn_exp_nonpos_##S(xi >= 0 ? -xi : xi);                                      \
        T u = a * (a + (T)2);                                                               \
        T dpos = (T)1 / ((T)1 + (T)2 * a + (T)2 * a * a);                                   \
        T dneg = (T)1 / (u + (T)2);                                                         \
        T tpos = ((T)1 + (T)2 * a) * dpos;                                                  \
        T tneg = u * dneg;                                                                  \
        T mpos = (T)2 * a * a * dpos;                                                       \
        T mneg = (T)2 * dneg;                                                               \
        T tsp = xi >= 0 ? tpos : tneg;                                                      \
        T one_minus = xi >= 0 ? mpos : mneg;                                                \
        T r = (T)1 / ((T)1 + a);                                                            \
        T ar = a * r;                                                                       \
        T s = xi >= 0 ? r : ar;                                                             \
        dx[i] = dy[i] * (tsp + xi * s * (one_minus * ((T)1 + tsp)));                        \
    }                                                                                       \
}

PYNN_SMOOTH_SPANS(float, f, PYNN_SIMD_CLONES PYNN_MAYBE_UNUSED)
PYNN_SMOOTH_SPANS(double, d, PYNN_NO_TRAP PYNN_MAYBE_UNUSED)

#endif /* PYNN_ACTIVATIONS_SMOOTH_H */
