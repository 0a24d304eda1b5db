# distutils: extra_compile_args = -fno-math-errno
# (-fno-math-errno: nothing reads errno, and without it GCC keeps a scalar sqrt + errno branch in
# every loop, which blocks vectorizing the Adam/RMSprop/Adagrad denominators.)
"""pynn._kernels.optim: fused one-pass optimizer updates over flat parameter buffers.

Each kernel reads the parameter, its gradient and the optimizer state once and writes the
parameter and the state once: one pass over memory per step, all arithmetic in registers in the
buffer's dtype (scalars arrive in double, computed once in Python, rounded once here).

Threads take whole chunks of CHUNK_BYTES (64 cache lines) with a static schedule, so no two
threads write one cache line, and every element is computed by the same code path whatever the
thread count: results are bit-identical for 1 and 2 threads.
"""
from cython.parallel cimport prange
from libc.math cimport sqrt, sqrtf

from _types cimport floating, idx_t
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)

cdef enum:
    # A chunk is 4 KiB: a whole number of cache lines for float and double, big enough that the
    # per-chunk overhead vanishes, small enough that 2 threads split a 1 MB group evenly.
    CHUNK_BYTES = 4096


cdef inline floating _sqrt(floating x) noexcept nogil:
    if floating is float:
        return sqrtf(x)
    else:
        return sqrt(x)


cdef inline floating _sign(floating x) noexcept nogil:
    # np.sign for finite x (0 for 0); branch-free so the loop vectorizes
    return <floating>(x > 0) - <floating>(x < 0)


cdef inline idx_t _n_chunks(idx_t n, idx_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


# ------------------------------------------------------------------------------------ SGD
cdef inline void _sgd_chunk(floating* p, const floating* g, floating* buf, idx_t n,
                            floating lr, floating momentum, floating dampening, floating wd,
                            floating l1, bint use_l1, bint use_momentum, bint nesterov,
                            bint first) noexcept nogil:
    cdef idx_t i
    cdef floating d, b
    cdef floating one_minus_damp = 1 - dampening
    if not use_momentum:
        for i in range(n):
            d = g[i] + wd * p[i]
            if use_l1:
                d = d + l1 * _sign(p[i])
            p[i] = p[i] - lr * d
    elif first:
        # torch: the buffer starts as a copy of the first (decayed) gradient, undamped
        for i in range(n):
            d = g[i] + wd * p[i]
            if use_l1:
                d = d + l1 * _sign(p[i])
            buf[i] = d
            if nesterov:
                d = d + momentum * d
            p[i] = p[i] - lr * d
    else:
        for i in range(n):
            d = g[i] + wd * p[i]
            if use_l1:
                d = d + l1 * _sign(p[i])
            b = momentum * buf[i] + one_minus_damp * d
            buf[i] = b
            if nesterov:
                d = d + momentum * b
            else:
                d = b
            p[i] = p[i] - lr * d


def sgd_step(floating[::1] param, const floating[::1] grad, floating[::1] momentum_buffer,
             double lr, double momentum, double dampening, double weight_decay, double l1,
             bint nesterov, bint first_step, int n_threads):
    """d = g + wd p + l1 sign(p); buf := d (first step) or momentum buf + (1 - dampening) d;
    d = d + momentum buf (nesterov) or buf; p := p - lr d. Empty momentum_buffer: no momentum."""
    cdef idx_t n = param.shape[0]
    cdef idx_t chunk = CHUNK_BYTES // sizeof(floating)
    cdef idx_t c, start, stop
    cdef bint use_momentum = momentum_buffer.shape[0] == n and momentum != 0 and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* pb = &momentum_buffer[0] if use_momentum else NULL
    with nogil:
        for c in prange(_n_chunks(n, chunk), schedule="static", num_threads=n_threads):
            start = c * chunk
            stop = min(start + chunk, n)
            _sgd_chunk(pp + start, pg + start, pb + start if use_momentum else NULL,
                       stop - start, <floating>lr, <floating>momentum, <floating>dampening,
                       <floating>weight_decay, <floating>l1, l1 != 0, use_momentum, nesterov,
                       first_step)


# ------------------------------------------------------------------------------------ Adagrad
cdef inline void _adagrad_chunk(floating* p, const floating* g, floating* s, idx_t n,
                                floating clr, floating wd, floating l1, bint use_l1,
                                floating eps) noexcept nogil:
    cdef idx_t i
    cdef floating d, si
    for i in range(n):
        d = g[i] + wd * p[i]
        if use_l1:
            d = d + l1 * _sign(p[i])
        si = s[i] + d * d
        s[i] = si
        p[i] = p[i] - clr * (d / (_sqrt(si) + eps))


def adagrad_step(floating[::1] param, const floating[::1] grad, floating[::1] state_sum,
                 double clr, double weight_decay, double l1, double eps, int n_threads):
    """d = g + wd p + l1 sign(p); sum := sum + d^2; p := p - clr d / (sqrt(sum) + eps)."""
    cdef idx_t n = param.shape[0]
    cdef idx_t chunk = CHUNK_BYTES // sizeof(floating)
    cdef idx_t c, start, stop
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* ps = &state_sum[0] if n > 0 else NULL
    with nogil:
        for c in prange(_n_chunks(n, chunk), schedule="static", num_threads=n_threads):
            start = c * chunk
            stop = min(start + chunk, n)
            _adagrad_chunk(pp + start, pg + start, ps + start, stop - start, <floating>clr,
                           <floating>weight_decay, <floating>l1, l1 != 0, <floating>eps)


# ------------------------------------------------------------------------------------ RMSprop
cdef inline void _rmsprop_chunk(floating* p, const floating* g, floating* sq, floating* ga,
                                floating* buf, idx_t n, floating lr, floating alpha,
                                floating eps, floating wd, floating l1, bint use_l1,
                                floating momentum, bint centered,
                                bint use_momentum) noexcept nogil:
    cdef idx_t i
    cdef floating d, v, a, avg, b
    cdef floating one_minus_alpha = 1 - alpha
    for i in range(n):
        d = g[i] + wd * p[i]
        if use_l1:
            d = d + l1 * _sign(p[i])
        v = alpha * sq[i] + one_minus_alpha * d * d
        sq[i] = v
        if centered:
            a = ga[i] + one_minus_alpha * (d - ga[i])
            ga[i] = a
            avg = _sqrt(v - a * a) + eps
        else:
            avg = _sqrt(v) + eps
        if use_momentum:
            b = momentum * buf[i] + d / avg
            buf[i] = b
            p[i] = p[i] - lr * b
        else:
            p[i] = p[i] - lr * (d / avg)


def rmsprop_step(floating[::1] param, const floating[::1] grad, floating[::1] square_avg,
                 floating[::1] grad_avg, floating[::1] momentum_buffer, double lr, double alpha,
                 double eps, double weight_decay, double l1, double momentum, int n_threads):
    """d = g + wd p + l1 sign(p); v := alpha v + (1 - alpha) d^2;
    centered: a := a + (1 - alpha)(d - a), avg = sqrt(v - a^2) + eps, else avg = sqrt(v) + eps;
    momentum: buf := momentum buf + d / avg, p := p - lr buf; else p := p - lr d / avg.
    An empty grad_avg means not centered, an empty momentum_buffer means no momentum."""
    cdef idx_t n = param.shape[0]
    cdef idx_t chunk = CHUNK_BYTES // sizeof(floating)
    cdef idx_t c, start, stop
    cdef bint centered = grad_avg.shape[0] == n and n > 0
    cdef bint use_momentum = momentum_buffer.shape[0] == n and momentum > 0 and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* psq = &square_avg[0] if n > 0 else NULL
    cdef floating* pga = &grad_avg[0] if centered else NULL
    cdef floating* pb = &momentum_buffer[0] if use_momentum else NULL
    with nogil:
        for c in prange(_n_chunks(n, chunk), schedule="static", num_threads=n_threads):
            start = c * chunk
            stop = min(start + chunk, n)
            _rmsprop_chunk(pp + start, pg + start, psq + start,
                           pga + start if centered else NULL,
                           pb + start if use_momentum else NULL, stop - start, <floating>lr,
                           <floating>alpha, <floating>eps, <floating>weight_decay, <floating>l1,
                           l1 != 0, <floating>momentum, centered, use_momentum)


# ------------------------------------------------------------------------------------ Adam(W)
cdef inline void _adam_chunk(floating* p, const floating* g, floating* m, floating* v,
                             floating* vmax, idx_t n, floating beta1, floating beta2,
                             floating eps, floating wd, floating l1, bint use_l1,
                             floating decay, floating step_size,
                             floating bc2_sqrt) noexcept nogil:
    cdef idx_t i
    cdef floating d, mi, vi, pi, vm
    cdef floating one_minus_beta1 = 1 - beta1
    cdef floating one_minus_beta2 = 1 - beta2
    if vmax == NULL:
        for i in range(n):
            pi = p[i]
            d = g[i] + wd * pi
            if use_l1:
                d = d + l1 * _sign(pi)
            mi = m[i] + one_minus_beta1 * (d - m[i])
            vi = beta2 * v[i] + one_minus_beta2 * d * d
            m[i] = mi
            v[i] = vi
            p[i] = pi * decay - step_size * (mi / (_sqrt(vi) / bc2_sqrt + eps))
    else:
        for i in range(n):
            pi = p[i]
            d = g[i] + wd * pi
            if use_l1:
                d = d + l1 * _sign(pi)
            mi = m[i] + one_minus_beta1 * (d - m[i])
            vi = beta2 * v[i] + one_minus_beta2 * d * d
            m[i] = mi
            v[i] = vi
            vm = vmax[i]
            if vi > vm:
                vm = vi
            vmax[i] = vm  # unconditional store: the loop vectorizes to a max
            p[i] = pi * decay - step_size * (mi / (_sqrt(vm) / bc2_sqrt + eps))


def adam_step(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
              floating[::1] exp_avg_sq, floating[::1] max_exp_avg_sq, double beta1,
              double beta2, double eps, double weight_decay, double l1, double decay,
              double step_size, double bc2_sqrt, int n_threads):
    """d = g + wd p + l1 sign(p); m := m + (1 - beta1)(d - m); v := beta2 v + (1 - beta2) d^2;
    vmax := max(vmax, v) (amsgrad, else vmax = v);
    p := p decay - step_size m / (sqrt(vmax) / bc2_sqrt + eps).
    Adam passes decay = 1; AdamW passes wd = 0, decay = 1 - lr wd. Empty max_exp_avg_sq: no
    amsgrad."""
    cdef idx_t n = param.shape[0]
    cdef idx_t chunk = CHUNK_BYTES // sizeof(floating)
    cdef idx_t c, start, stop
    cdef bint amsgrad = max_exp_avg_sq.shape[0] == n and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* pm = &exp_avg[0] if n > 0 else NULL
    cdef floating* pv = &exp_avg_sq[0] if n > 0 else NULL
    cdef floating* pvm = &max_exp_avg_sq[0] if amsgrad else NULL
    with nogil:
        for c in prange(_n_chunks(n, chunk), schedule="static", num_threads=n_threads):
            start = c * chunk
            stop = min(start + chunk, n)
            _adam_chunk(pp + start, pg + start, pm + start, pv + start,
                        pvm + start if amsgrad else NULL, stop - start, <floating>beta1,
                        <floating>beta2, <floating>eps, <floating>weight_decay, <floating>l1,
                        l1 != 0, <floating>decay, <floating>step_size, <floating>bc2_sqrt)
