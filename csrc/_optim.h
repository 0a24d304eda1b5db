/* Optimizer update loops for csrc/optim.pyx: one chunk of a flat buffer, one pass over memory.
 *
 * Why C and not Cython loops:
 *  - Vector width. setup.py builds portable objects (-O3, no -march), so a plain loop gets SSE2
 *    only. On x86-64 glibc Linux with GCC each entry point below is cloned for AVX-512 and
 *    AVX2 and the clone is picked once, at load time, from the CPU's features
 *    (target_clones/ifunc, see _simd_clone.h); the "default" clone is the baseline build every
 *    other CPU, compiler and C library gets.
 *  - Unswitching. Every flag combination (L1, momentum, nesterov, centered, amsgrad) gets its own
 *    loop: the entry point tests the flags once per chunk and calls an always-inline body with
 *    constant flags, so each copy has a straight-line body. With the flags tested inside one loop
 *    GCC gave up on RMSprop ("not unswitching, loop too big"), left the branches in the loop and
 *    so did not vectorize it at all: scalar sqrt and divide, 2.5x slower than Adagrad.
 *  - restrict. The buffers never overlap (distinct arena buffers; the caller checks shapes), and
 *    saying so drops the run-time overlap checks and the scalar fallback copy of each loop.
 *
 * Results do not depend on the clone, the thread count or where a chunk starts: the module is
 * built with -ffp-contract=off (no fused multiply-add, which only the AVX clones could use), and
 * +, -, *, /, sqrt are correctly rounded in vector and scalar form alike. So every element
 * gets the bits of the plain scalar loop, which follows the NumPy reference's order of
 * operations (pynn/backend/numpy_ref.py) in the buffer's dtype.
 *
 * Math per element (d is the decayed gradient; every kernel computes it the same way):
 *   d = g + wd p (+ l1 sign(p))
 *   SGD:     buf = d (first step) or momentum buf + (1 - dampening) d;
 *            d = d + momentum buf (nesterov) or buf;  p = p - lr d
 *   Adagrad: s = s + d d;  p = p - clr (d / (sqrt(s) + eps))
 *   RMSprop: v = alpha v + (1 - alpha) d d;  centered: a = a + (1 - alpha)(d - a),
 *            avg = sqrt(v - a a) + eps, else avg = sqrt(v) + eps;
 *            momentum: buf = momentum buf + d / avg, p = p - lr buf; else p = p - lr (d / avg)
 *   Adam:    m = m + (1 - beta1)(d - m);  v = beta2 v + (1 - beta2) d d;
 *            vmax = max(vmax, v) (amsgrad, NaN if either is; else vmax is v);
 *            p = p decay - step_size (m / (sqrt(vmax) / bc2_sqrt + eps))
 *   NAdam:   m, v as Adam's;  denom = sqrt(v / bc2) + eps;
 *            p = p decay - c1 (d / denom) - c2 (m / denom)   (torch's two addcdiv_)
 *   RAdam:   m, v as Adam's;  rectified (rect > 0): p = p decay - m / bc1 lr (bc2_sqrt /
 *            (sqrt(v) + eps)) rect;  else p = p decay - m / bc1 lr   (torch's order)
 */
#ifndef PYNN_OPTIM_H
#define PYNN_OPTIM_H

/* Included by Cython after Python.h (Py_ssize_t, and glibc's __GLIBC__ via its headers). */

#include <math.h>

#if defined(_MSC_VER)
#define PYNN_RESTRICT __restrict
#else
#define PYNN_RESTRICT restrict
#endif

#if defined(__GNUC__)
#define PYNN_OPTIM_INLINE static inline __attribute__((always_inline))
#else
#define PYNN_OPTIM_INLINE static inline
#endif

/* AVX-512/AVX2 clones where the platform supports them (glibc's ifunc), else the baseline. */
#include "_simd_clone.h"
#define PYNN_OPTIM_CLONES static PYNN_TARGET_CLONES

/* sign(x): 0 for 0 and NaN, as torch.sign and the reference's _l1_sign; branch-free so the
 * loops vectorize. */
#define PYNN_SIGN(T, x) ((T)((x) > 0) - (T)((x) < 0))

/* SGD momentum modes (the `mode` argument): no momentum buffer, first step, later steps. */
enum { PYNN_SGD_PLAIN = 0, PYNN_SGD_FIRST = 1, PYNN_SGD_MOMENTUM = 2 };

/* The kernels for one dtype T (suffix S, square root SQRT). A macro so that float and double
 * share one text; the bodies take their flags as constants from the entry point's switch. */
#define PYNN_OPTIM_KERNELS(T, S, SQRT)                                                         \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_sgd_body_##S(                                                       \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT buf, Py_ssize_t n,       \
        T lr, T momentum, T dampening, T wd, T l1,                                              \
        const int use_l1, const int mode, const int nesterov) {                                 \
    const T one_minus_damp = 1 - dampening;                                                     \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        if (mode == PYNN_SGD_FIRST) {      /* torch: the buffer starts as d, undamped */        \
            buf[i] = d;                                                                         \
            if (nesterov) d = d + momentum * d;                                                 \
        } else if (mode == PYNN_SGD_MOMENTUM) {                                                 \
            T b = momentum * buf[i] + one_minus_damp * d;                                       \
            buf[i] = b;                                                                         \
            d = nesterov ? d + momentum * b : b;                                                \
        }                                                                                       \
        p[i] = pi - lr * d;                                                                     \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_sgd_##S(                                                            \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT buf, Py_ssize_t n,       \
        T lr, T momentum, T dampening, T wd, T l1, int use_l1, int mode, int nesterov) {        \
    nesterov = nesterov && mode != PYNN_SGD_PLAIN;                                              \
    switch ((use_l1 != 0) * 6 + mode * 2 + (nesterov != 0)) {                                   \
    case 0: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 0, 0, 0); break;   \
    case 2: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 0, 1, 0); break;   \
    case 3: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 0, 1, 1); break;   \
    case 4: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 0, 2, 0); break;   \
    case 5: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 0, 2, 1); break;   \
    case 6: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 1, 0, 0); break;   \
    case 8: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 1, 1, 0); break;   \
    case 9: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 1, 1, 1); break;   \
    case 10: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 1, 2, 0); break;  \
    case 11: pynn_sgd_body_##S(p, g, buf, n, lr, momentum, dampening, wd, l1, 1, 2, 1); break;  \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_adagrad_body_##S(                                                   \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT s, Py_ssize_t n,         \
        T clr, T wd, T l1, T eps, const int use_l1) {                                           \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        T si = s[i] + d * d;                                                                    \
        s[i] = si;                                                                              \
        p[i] = pi - clr * (d / (SQRT(si) + eps));                                               \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_adagrad_##S(                                                        \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT s, Py_ssize_t n,         \
        T clr, T wd, T l1, T eps, int use_l1) {                                                 \
    if (use_l1) pynn_adagrad_body_##S(p, g, s, n, clr, wd, l1, eps, 1);                         \
    else pynn_adagrad_body_##S(p, g, s, n, clr, wd, l1, eps, 0);                                \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_rmsprop_body_##S(                                                   \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT sq,                      \
        T *PYNN_RESTRICT ga, T *PYNN_RESTRICT buf, Py_ssize_t n, T lr, T alpha, T eps, T wd,    \
        T l1, T momentum, const int use_l1, const int centered, const int use_momentum) {       \
    const T one_minus_alpha = 1 - alpha;                                                        \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        T v = alpha * sq[i] + one_minus_alpha * d * d;                                          \
        sq[i] = v;                                                                              \
        T avg;                                                                                  \
        if (centered) {                                                                         \
            T a = ga[i] + one_minus_alpha * (d - ga[i]);                                        \
            ga[i] = a;                                                                          \
            avg = SQRT(v - a * a) + eps;                                                        \
        } else {                                                                                \
            avg = SQRT(v) + eps;                                                                \
        }                                                                                       \
        if (use_momentum) {                                                                     \
            T b = momentum * buf[i] + d / avg;                                                  \
            buf[i] = b;                                                                         \
            p[i] = pi - lr * b;                                                                 \
        } else {                                                                                \
            p[i] = pi - lr * (d / avg);                                                         \
        }                                                                                       \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_rmsprop_##S(                                                        \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT sq,                      \
        T *PYNN_RESTRICT ga, T *PYNN_RESTRICT buf, Py_ssize_t n, T lr, T alpha, T eps, T wd,    \
        T l1, T momentum, int use_l1, int centered, int use_momentum) {                         \
    switch ((use_l1 != 0) * 4 + (centered != 0) * 2 + (use_momentum != 0)) {                   \
    case 0: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  0, 0, 0); break;                                              \
    case 1: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  0, 0, 1); break;                                              \
    case 2: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  0, 1, 0); break;                                              \
    case 3: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  0, 1, 1); break;                                              \
    case 4: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  1, 0, 0); break;                                              \
    case 5: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  1, 0, 1); break;                                              \
    case 6: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  1, 1, 0); break;                                              \
    case 7: pynn_rmsprop_body_##S(p, g, sq, ga, buf, n, lr, alpha, eps, wd, l1, momentum,       \
                                  1, 1, 1); break;                                              \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_adam_body_##S(                                                      \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        T *PYNN_RESTRICT vmax, Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay,      \
        T step_size, T bc2_sqrt, const int use_l1, const int amsgrad, const int unit_bc2) {     \
    const T one_minus_beta1 = 1 - beta1;                                                        \
    const T one_minus_beta2 = 1 - beta2;                                                        \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        T mi = m[i] + one_minus_beta1 * (d - m[i]);                                             \
        T vi = beta2 * v[i] + one_minus_beta2 * d * d;                                          \
        m[i] = mi;                                                                              \
        v[i] = vi;                                                                              \
        if (amsgrad) {                                                                          \
            T vm = vmax[i];                                                                     \
            /* a max that propagates NaN from either side, as np.maximum and torch.maximum:     \
             * vi > vm ? vi : vm alone kept a finite old max over a NaN second moment */        \
            vm = (vi > vm || vi != vi) ? vi : vm;                                               \
            vmax[i] = vm;          /* unconditional store: the loop vectorizes to a max */      \
            vi = vm;                                                                            \
        }                                                                                       \
        /* bc2_sqrt 1 (scikit-learn's form): no division by it, which is exact anyway */       \
        T denom = unit_bc2 ? SQRT(vi) + eps : SQRT(vi) / bc2_sqrt + eps;                        \
        p[i] = pi * decay - step_size * (mi / denom);                                           \
    }                                                                                           \
}                                                                                               \
                                                                                                \
/* The flags as constants (each case its own specialized loop); unit_bc2 already constant. */ \
PYNN_OPTIM_INLINE void pynn_adam_flags_##S(                                                     \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        T *PYNN_RESTRICT vmax, Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay,      \
        T step_size, T bc2_sqrt, int use_l1, const int unit_bc2) {                              \
    switch ((use_l1 != 0) * 2 + (vmax != NULL)) {                                               \
    case 0: pynn_adam_body_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay,           \
                               step_size, bc2_sqrt, 0, 0, unit_bc2); break;                     \
    case 1: pynn_adam_body_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay,           \
                               step_size, bc2_sqrt, 0, 1, unit_bc2); break;                     \
    case 2: pynn_adam_body_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay,           \
                               step_size, bc2_sqrt, 1, 0, unit_bc2); break;                     \
    case 3: pynn_adam_body_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay,           \
                               step_size, bc2_sqrt, 1, 1, unit_bc2); break;                     \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_adam_##S(                                                           \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        T *PYNN_RESTRICT vmax, Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay,      \
        T step_size, T bc2_sqrt, int use_l1) {                                                  \
    if (bc2_sqrt == 1)                                                                          \
        pynn_adam_flags_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay, step_size,   \
                            bc2_sqrt, use_l1, 1);                                               \
    else                                                                                        \
        pynn_adam_flags_##S(p, g, m, v, vmax, n, beta1, beta2, eps, wd, l1, decay, step_size,   \
                            bc2_sqrt, use_l1, 0);                                               \
}

/* NAdam and RAdam (torch's), one dtype: the same first and second moments as Adam's, then their
 * own step. The flags as constants from the entry point's switch, as above. */
#define PYNN_OPTIM_ADAM_VARIANTS(T, S, SQRT)                                                   \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_nadam_body_##S(                                                     \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay, T bc2, T c1, T c2,          \
        const int use_l1) {                                                                     \
    const T one_minus_beta1 = 1 - beta1;                                                        \
    const T one_minus_beta2 = 1 - beta2;                                                        \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        T mi = m[i] + one_minus_beta1 * (d - m[i]);                                             \
        T vi = beta2 * v[i] + one_minus_beta2 * d * d;                                          \
        m[i] = mi;                                                                              \
        v[i] = vi;                                                                              \
        T denom = SQRT(vi / bc2) + eps;                                                         \
        p[i] = (pi * decay - c1 * (d / denom)) - c2 * (mi / denom);                             \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_nadam_##S(                                                          \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay, T bc2, T c1, T c2,          \
        int use_l1) {                                                                           \
    if (use_l1) pynn_nadam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc2, c1,   \
                                    c2, 1);                                                     \
    else pynn_nadam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc2, c1, c2, 0);  \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_INLINE void pynn_radam_body_##S(                                                     \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay, T bc1, T lr, T bc2_sqrt,    \
        T rect, const int use_l1, const int rectified) {                                        \
    const T one_minus_beta1 = 1 - beta1;                                                        \
    const T one_minus_beta2 = 1 - beta2;                                                        \
    for (Py_ssize_t i = 0; i < n; i++) {                                                        \
        T pi = p[i];                                                                            \
        T d = g[i] + wd * pi;                                                                   \
        if (use_l1) d = d + l1 * PYNN_SIGN(T, pi);                                              \
        T mi = m[i] + one_minus_beta1 * (d - m[i]);                                             \
        T vi = beta2 * v[i] + one_minus_beta2 * d * d;                                          \
        m[i] = mi;                                                                              \
        v[i] = vi;                                                                              \
        T step = mi / bc1 * lr;                                                                 \
        if (rectified) step = step * (bc2_sqrt / (SQRT(vi) + eps)) * rect;                      \
        p[i] = pi * decay - step;                                                               \
    }                                                                                           \
}                                                                                               \
                                                                                                \
PYNN_OPTIM_CLONES void pynn_radam_##S(                                                          \
        T *PYNN_RESTRICT p, const T *PYNN_RESTRICT g, T *PYNN_RESTRICT m, T *PYNN_RESTRICT v,   \
        Py_ssize_t n, T beta1, T beta2, T eps, T wd, T l1, T decay, T bc1, T lr, T bc2_sqrt,    \
        T rect, int use_l1) {                                                                   \
    switch ((use_l1 != 0) * 2 + (rect > 0)) {                                                   \
    case 0: pynn_radam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc1, lr,       \
                                bc2_sqrt, rect, 0, 0); break;                                   \
    case 1: pynn_radam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc1, lr,       \
                                bc2_sqrt, rect, 0, 1); break;                                   \
    case 2: pynn_radam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc1, lr,       \
                                bc2_sqrt, rect, 1, 0); break;                                   \
    case 3: pynn_radam_body_##S(p, g, m, v, n, beta1, beta2, eps, wd, l1, decay, bc1, lr,       \
                                bc2_sqrt, rect, 1, 1); break;                                   \
    }                                                                                           \
}

PYNN_OPTIM_KERNELS(float, f, sqrtf)
PYNN_OPTIM_KERNELS(double, d, sqrt)
PYNN_OPTIM_ADAM_VARIANTS(float, f, sqrtf)
PYNN_OPTIM_ADAM_VARIANTS(double, d, sqrt)

#endif /* PYNN_OPTIM_H */
