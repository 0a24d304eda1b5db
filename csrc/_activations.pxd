# Activation functions shared by the kernels: scalar forms and span loops (kind dispatched once
# per span, not per element, so each loop is a tight, vectorizable body). The kind codes mirror pynn/backend/codes.py. The float32 spans and the
# softmax rows are C, in _activations.h (declared below).

from libc.math cimport exp, expf, expm1, expm1f, tanh, tanhf, fabs, fabsf
from _types cimport floating, idx_t

cdef extern from "_activations.h":
    void pynn_leaky_relu_span_f(const float* x, float* y, idx_t n, float slope) noexcept nogil
    void pynn_leaky_relu_span_d(const double* x, double* y, idx_t n, double slope) noexcept nogil
    void pynn_elu_backward_span_f(const float* dy, const float* s, const float* y, float* dx,
                                  idx_t n, float alpha) noexcept nogil
    void pynn_elu_backward_span_d(const double* dy, const double* s, const double* y,
                                  double* dx, idx_t n, double alpha) noexcept nogil
    void pynn_sigmoid_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_relu_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_relu_backward_span_f(const float* dy, const float* y, float* dx,
                                   idx_t n) noexcept nogil
    void pynn_tanh_backward_span_f(const float* dy, const float* y, float* dx,
                                   idx_t n) noexcept nogil
    void pynn_tanh_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_elu_span_f(const float* x, float* y, idx_t n, float alpha) noexcept nogil
    void pynn_softmax_rows_f(const float* x, float* y, idx_t n, idx_t k) noexcept nogil
    double pynn_softmax_ce_rows_f(const float* z, const idx_t* labels, const double* w,
                                  float* g, float* row_loss, idx_t n, idx_t k,
                                  double scale) noexcept nogil
    # the smooth kinds (GELU, SiLU, softplus, Mish), both dtypes, from the input x
    void pynn_gelu_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_gelu_span_d(const double* x, double* y, idx_t n) noexcept nogil
    void pynn_gelu_backward_span_f(const float* dy, const float* x, float* dx,
                                   idx_t n) noexcept nogil
    void pynn_gelu_backward_span_d(const double* dy, const double* x, double* dx,
                                   idx_t n) noexcept nogil
    void pynn_gelu_tanh_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_gelu_tanh_span_d(const double* x, double* y, idx_t n) noexcept nogil
    void pynn_gelu_tanh_backward_span_f(const float* dy, const float* x, float* dx,
                                        idx_t n) noexcept nogil
    void pynn_gelu_tanh_backward_span_d(const double* dy, const double* x, double* dx,
                                        idx_t n) noexcept nogil
    void pynn_silu_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_silu_span_d(const double* x, double* y, idx_t n) noexcept nogil
    void pynn_silu_backward_span_f(const float* dy, const float* x, float* dx,
                                   idx_t n) noexcept nogil
    void pynn_silu_backward_span_d(const double* dy, const double* x, double* dx,
                                   idx_t n) noexcept nogil
    void pynn_softplus_span_f(const float* x, float* y, idx_t n, float beta,
                              float threshold) noexcept nogil
    void pynn_softplus_span_d(const double* x, double* y, idx_t n, double beta,
                              double threshold) noexcept nogil
    void pynn_softplus_backward_span_f(const float* dy, const float* x, float* dx, idx_t n,
                                       float beta, float threshold) noexcept nogil
    void pynn_softplus_backward_span_d(const double* dy, const double* x, double* dx,
                                       idx_t n, double beta, double threshold) noexcept nogil
    void pynn_mish_span_f(const float* x, float* y, idx_t n) noexcept nogil
    void pynn_mish_span_d(const double* x, double* y, idx_t n) noexcept nogil
    void pynn_mish_backward_span_f(const float* dy, const float* x, float* dx,
                                   idx_t n) noexcept nogil
    void pynn_mish_backward_span_d(const double* dy, const double* x, double* dx,
                                   idx_t n) noexcept nogil


cdef enum:
    IDENTITY = 0
    RELU = 1
    LEAKY_RELU = 2
    ELU = 3
    SIGMOID = 4
    TANH = 5
    STEP = 6
    SQUARE = 7
    GELU = 8
    GELU_TANH = 9
    SILU = 10
    SOFTPLUS = 11
    MISH = 12

# ------------------------------------------------------------------ scalar forms
cdef inline floating relu(floating x) noexcept nogil:
    # "x <= 0" is false for NaN, so NaN propagates like np.maximum
    return 0 if x <= 0 else x


cdef inline floating leaky_relu(floating x, floating slope) noexcept nogil:
    # both arms computed before the select: GCC will not if-convert (vectorize) an FP multiply
    # that sits in one arm only (-ftrapping-math)
    cdef floating neg = x * slope
    return x if x > 0 else neg


cdef inline floating elu(floating x, floating alpha) noexcept nogil:
    # expm1 keeps the relative accuracy of alpha * (e^x - 1) near 0
    if x > 0:
        return x
    if floating is float:
        return alpha * expm1f(x)
    else:
        return alpha * expm1(x)


cdef inline floating sigmoid(floating x) noexcept nogil:
    # exp of -|x| only: no overflow for any logit (sigmoid(-1000) = 0, not inf/inf)
    cdef floating e
    if floating is float:
        e = expf(-fabsf(x))
    else:
        e = exp(-fabs(x))
    cdef floating pos = 1 / (1 + e)
    cdef floating neg = e / (1 + e)
    return pos if x >= 0 else neg


cdef inline floating step(floating x) noexcept nogil:
    # 1 only for x > 0: step(0) = 0 and step(NaN) = 0, like (x > 0) in NumPy
    return 1 if x > 0 else 0


cdef inline void _smooth_forward_span(int kind, floating p, floating q, const floating* x,
                                      floating* y, idx_t n) noexcept nogil:
    """The smooth kinds' forward (C, _activations.h): vectorized float spans, libm doubles."""
    if kind == GELU:
        if floating is float:
            pynn_gelu_span_f(x, y, n)
        else:
            pynn_gelu_span_d(x, y, n)
    elif kind == GELU_TANH:
        if floating is float:
            pynn_gelu_tanh_span_f(x, y, n)
        else:
            pynn_gelu_tanh_span_d(x, y, n)
    elif kind == SILU:
        if floating is float:
            pynn_silu_span_f(x, y, n)
        else:
            pynn_silu_span_d(x, y, n)
    elif kind == SOFTPLUS:
        if floating is float:
            pynn_softplus_span_f(x, y, n, p, q)
        else:
            pynn_softplus_span_d(x, y, n, p, q)
    elif floating is float:
        pynn_mish_span_f(x, y, n)
    else:
        pynn_mish_span_d(x, y, n)


cdef inline void _smooth_backward_span(int kind, floating p, floating q, const floating* dy,
                                       const floating* x, floating* dx, idx_t n) noexcept nogil:
    """The smooth kinds' backward, from the input x."""
    if kind == GELU:
        if floating is float:
            pynn_gelu_backward_span_f(dy, x, dx, n)
        else:
            pynn_gelu_backward_span_d(dy, x, dx, n)
    elif kind == GELU_TANH:
        if floating is float:
            pynn_gelu_tanh_backward_span_f(dy, x, dx, n)
        else:
            pynn_gelu_tanh_backward_span_d(dy, x, dx, n)
    elif kind == SILU:
        if floating is float:
            pynn_silu_backward_span_f(dy, x, dx, n)
        else:
            pynn_silu_backward_span_d(dy, x, dx, n)
    elif kind == SOFTPLUS:
        if floating is float:
            pynn_softplus_backward_span_f(dy, x, dx, n, p, q)
        else:
            pynn_softplus_backward_span_d(dy, x, dx, n, p, q)
    elif floating is float:
        pynn_mish_backward_span_f(dy, x, dx, n)
    else:
        pynn_mish_backward_span_d(dy, x, dx, n)


# ------------------------------------------------------------------ span loops
cdef inline void act_forward_span(int kind, floating p, floating q, const floating* x,
                                  floating* y, idx_t n) noexcept nogil:
    """y[i] = act(x[i]) for i < n; x may equal y (in-place epilogue). p and q are the kind's
    parameters (slope, alpha; softplus's beta and threshold)."""
    cdef idx_t i
    if kind >= GELU:
        _smooth_forward_span(kind, p, q, x, y, n)
    elif kind == RELU:
        if floating is float:
            pynn_relu_span_f(x, y, n)
        else:
            for i in range(n):
                y[i] = relu(x[i])
    elif kind == LEAKY_RELU:
        if floating is float:
            pynn_leaky_relu_span_f(x, y, n, p)
        else:
            pynn_leaky_relu_span_d(x, y, n, p)
    elif kind == ELU:
        if floating is float:
            pynn_elu_span_f(x, y, n, p)
        else:
            for i in range(n):
                y[i] = elu(x[i], p)
    elif kind == SIGMOID:
        if floating is float:
            pynn_sigmoid_span_f(x, y, n)
        else:
            for i in range(n):
                y[i] = sigmoid(x[i])
    elif kind == TANH:
        if floating is float:
            pynn_tanh_span_f(x, y, n)
        else:
            for i in range(n):
                y[i] = tanh(x[i])
    elif kind == STEP:
        for i in range(n):
            y[i] = step(x[i])
    elif kind == SQUARE:
        for i in range(n):
            y[i] = x[i] * x[i]
    elif x != y:
        for i in range(n):
            y[i] = x[i]


cdef inline void act_backward_span(int kind, floating p, floating q, const floating* dy,
                                   const floating* x, const floating* y, floating* dx,
                                   idx_t n) noexcept nogil:
    """dx[i] = dy[i] * act'(x[i]), from y where the math allows.

    x may be NULL (fused dense keeps only y): leaky ReLU and ELU then test y > 0 instead of
    x > 0, which is exact for slope >= 0 / alpha > 0; square and the smooth kinds (GELU, SiLU,
    softplus, Mish) need x, and those never read y. dx may equal dy.
    The multiply is kept even where the factor is 0 or 1 so NaN/inf in dy propagate like NumPy.
    """
    cdef idx_t i
    # Loops with arithmetic in one arm of a select live in C (_activations.h's PYNN_SELECT_SPANS).
    if kind >= GELU:
        _smooth_backward_span(kind, p, q, dy, x, dx, n)
    elif kind == RELU:
        if floating is float:
            pynn_relu_backward_span_f(dy, y, dx, n)
        else:
            for i in range(n):
                dx[i] = dy[i] * (1 if y[i] > 0 else 0)
    elif kind == LEAKY_RELU:
        if x != NULL:
            for i in range(n):
                dx[i] = dy[i] * (1 if x[i] > 0 else p)
        else:
            for i in range(n):
                dx[i] = dy[i] * (1 if y[i] > 0 else p)
    elif kind == ELU:
        if floating is float:
            pynn_elu_backward_span_f(dy, x if x != NULL else y, y, dx, n, p)
        else:
            pynn_elu_backward_span_d(dy, x if x != NULL else y, y, dx, n, p)
    elif kind == SIGMOID:
        # <floating>1, not 1: Cython writes a bare literal as a double (1.0 - y), which made
        # the float32 loop compute in double and differ from the reference's float32 rounding
        # (y = 1e30: the reference's y * (1 - y) overflows to -inf, dy = 0 then gives NaN)
        for i in range(n):
            dx[i] = dy[i] * (y[i] * (<floating>1 - y[i]))
    elif kind == TANH:
        if floating is float:
            pynn_tanh_backward_span_f(dy, y, dx, n)
        else:
            for i in range(n):
                dx[i] = dy[i] * (1 - y[i] * y[i])
    elif kind == STEP:
        for i in range(n):
            dx[i] = dy[i] * <floating>0
    elif kind == SQUARE:
        for i in range(n):
            dx[i] = dy[i] * (<floating>2 * x[i])  # float32: 2 * 3e38 is inf, as in the reference
    elif dx != dy:
        for i in range(n):
            dx[i] = dy[i]


cdef inline void softmax_row(const floating* x, floating* y, idx_t k) noexcept nogil:
    """y := exp(x - max(x)) / sum(exp(x - max(x))) for one row of length k >= 1 (float64;
    float32 goes through the vectorized pynn_softmax_rows_f)."""
    cdef idx_t j
    cdef floating m = x[0]
    cdef double s = 0  # the sum in double: k float32 terms would lose ~log2(k) bits
    cdef floating denom
    for j in range(1, k):
        if x[j] > m:
            m = x[j]
    # (A NaN is skipped by the max but still turns its own term, the sum and so the whole row
    # into NaN, as the reference does; a row of -inf gives NaN like NumPy's -inf - -inf.)
    for j in range(k):
        if floating is float:
            y[j] = expf(x[j] - m)
        else:
            y[j] = exp(x[j] - m)
        s += y[j]
    denom = <floating>s
    for j in range(k):
        y[j] = y[j] / denom
