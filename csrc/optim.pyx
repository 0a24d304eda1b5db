# distutils: extra_compile_args = -fno-math-errno -ffp-contract=off
# (-fno-math-errno: nothing reads errno, and without it GCC keeps a scalar sqrt + errno branch in
# every loop, which blocks vectorizing the Adam/RMSprop/Adagrad denominators.
# -ffp-contract=off: no fused multiply-add, so every CPU clone of the loops in _optim.h
# rounds exactly like the baseline build and the NumPy reference's order of operations.)
"""pynn._kernels.optim: fused one-pass optimizer updates over flat parameter buffers (SGD,
Adagrad, RMSprop, Adam/AdamW, NAdam, RAdam).

Each kernel reads the parameter, its gradient and the optimizer state once and writes the
parameter and the state once: one pass over memory per step, all arithmetic in registers in the
buffer's dtype (scalars arrive in double, computed once in Python, rounded once here).

Threads take whole chunks of CHUNK_BYTES (64 cache lines) with a static schedule, so no two
threads write one cache line (when the buffer starts on one), and every element is computed by
the same code path whatever the thread count: chunk boundaries are fixed multiples of
CHUNK_BYTES from the buffer's start, so which elements fall in a vector loop's peeled head or
scalar remainder does not depend on the thread count either (and with no FMA contraction the
scalar and vector forms round alike anyway): results are bit-identical for 1 and 2 threads.
(A dynamic schedule measured slower here: 235k-element Adam 80 us vs 68 us warm.) One thread
walks the same chunks in a plain loop: a parallel region of one thread still pays libgomp's
barrier wake-ups (two futex calls, ~0.6 us), more than a small model's whole update.

The per-chunk loops are C, in _optim.h (cloned for AVX-512/AVX2 and dispatched by CPU
feature at load time, one unswitched loop per flag combination); see that file for why.
"""
from cython.parallel cimport prange

from _types cimport floating, idx_t
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)

cdef extern from "_optim.h" nogil:
    # One chunk of n elements; the flags select an unswitched loop (see the header).
    enum:
        PYNN_SGD_PLAIN
        PYNN_SGD_FIRST
        PYNN_SGD_MOMENTUM
    void pynn_sgd_f(float* p, const float* g, float* buf, idx_t n, float lr, float momentum,
                    float dampening, float wd, float l1, int use_l1, int mode,
                    int nesterov) noexcept
    void pynn_sgd_d(double* p, const double* g, double* buf, idx_t n, double lr,
                    double momentum, double dampening, double wd, double l1, int use_l1,
                    int mode, int nesterov) noexcept
    void pynn_adagrad_f(float* p, const float* g, float* s, idx_t n, float clr, float wd,
                        float l1, float eps, int use_l1) noexcept
    void pynn_adagrad_d(double* p, const double* g, double* s, idx_t n, double clr, double wd,
                        double l1, double eps, int use_l1) noexcept
    void pynn_rmsprop_f(float* p, const float* g, float* sq, float* ga, float* buf, idx_t n,
                        float lr, float alpha, float eps, float wd, float l1, float momentum,
                        int use_l1, int centered, int use_momentum) noexcept
    void pynn_rmsprop_d(double* p, const double* g, double* sq, double* ga, double* buf,
                        idx_t n, double lr, double alpha, double eps, double wd, double l1,
                        double momentum, int use_l1, int centered, int use_momentum) noexcept
    void pynn_adam_f(float* p, const float* g, float* m, float* v, float* vmax, idx_t n,
                     float beta1, float beta2, float eps, float wd, float l1, float decay,
                     float step_size, float bc2_sqrt, int use_l1) noexcept
    void pynn_adam_d(double* p, const double* g, double* m, double* v, double* vmax, idx_t n,
                     double beta1, double beta2, double eps, double wd, double l1, double decay,
                     double step_size, double bc2_sqrt, int use_l1) noexcept
    void pynn_nadam_f(float* p, const float* g, float* m, float* v, idx_t n, float beta1,
                      float beta2, float eps, float wd, float l1, float decay, float bc2,
                      float c1, float c2, int use_l1) noexcept
    void pynn_nadam_d(double* p, const double* g, double* m, double* v, idx_t n, double beta1,
                      double beta2, double eps, double wd, double l1, double decay, double bc2,
                      double c1, double c2, int use_l1) noexcept
    void pynn_radam_f(float* p, const float* g, float* m, float* v, idx_t n, float beta1,
                      float beta2, float eps, float wd, float l1, float decay, float bc1,
                      float lr, float bc2_sqrt, float rect, int use_l1) noexcept
    void pynn_radam_d(double* p, const double* g, double* m, double* v, idx_t n, double beta1,
                      double beta2, double eps, double wd, double l1, double decay, double bc1,
                      double lr, double bc2_sqrt, double rect, int use_l1) noexcept

cdef enum:
    # A chunk is 4 KiB: a whole number of cache lines for float and double, big enough that the
    # per-chunk overhead vanishes, small enough that 2 threads split a 1 MB group evenly.
    CHUNK_BYTES = 4096


cdef inline idx_t _n_chunks(idx_t n, idx_t chunk) noexcept nogil:
    return (n + chunk - 1) // chunk


# ------------------------------------------------------------------------------------ SGD
cdef inline void _sgd_chunk(idx_t c, floating* pp, const floating* pg, floating* pb, idx_t n,
                            double lr, double momentum, double dampening, double weight_decay,
                            double l1, int mode, bint nesterov) noexcept nogil:
    cdef idx_t start = c * (CHUNK_BYTES // sizeof(floating))
    cdef idx_t stop = min(start + CHUNK_BYTES // sizeof(floating), n)
    if floating is float:
        pynn_sgd_f(pp + start, pg + start, pb + start if pb != NULL else NULL, stop - start,
                   <float>lr, <float>momentum, <float>dampening, <float>weight_decay,
                   <float>l1, l1 != 0, mode, nesterov)
    else:
        pynn_sgd_d(pp + start, pg + start, pb + start if pb != NULL else NULL, stop - start,
                   lr, momentum, dampening, weight_decay, l1, l1 != 0, mode, nesterov)


cdef void _sgd_run(floating* pp, const floating* pg, floating* pb, idx_t n, double lr,
                   double momentum, double dampening, double weight_decay, double l1,
                   int mode, bint nesterov, int n_threads) noexcept nogil:
    """The SGD update over n elements, chunked over the threads (pb NULL: no momentum)."""
    cdef idx_t c, n_chunks = _n_chunks(n, CHUNK_BYTES // sizeof(floating))
    if n_threads <= 1:  # the same chunks, without a parallel region's synchronization
        for c in range(n_chunks):
            _sgd_chunk(c, pp, pg, pb, n, lr, momentum, dampening, weight_decay, l1, mode,
                       nesterov)
        return
    for c in prange(n_chunks, schedule="static", num_threads=n_threads):
        _sgd_chunk(c, pp, pg, pb, n, lr, momentum, dampening, weight_decay, l1, mode, nesterov)


cdef inline int sgd_mode(bint use_momentum, bint first_step) noexcept nogil:
    if not use_momentum:
        return PYNN_SGD_PLAIN
    return PYNN_SGD_FIRST if first_step else PYNN_SGD_MOMENTUM


def sgd_step(floating[::1] param, const floating[::1] grad, floating[::1] momentum_buffer,
             double lr, double momentum, double dampening, double weight_decay, double l1,
             bint nesterov, bint first_step, int n_threads):
    """d = g + wd p + l1 sign(p); buf := d (first step) or momentum buf + (1 - dampening) d;
    d = d + momentum buf (nesterov) or buf; p := p - lr d. Empty momentum_buffer: no momentum."""
    cdef idx_t n = param.shape[0]
    cdef bint use_momentum = momentum_buffer.shape[0] == n and momentum != 0 and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* pb = &momentum_buffer[0] if use_momentum else NULL
    with nogil:
        _sgd_run(pp, pg, pb, n, lr, momentum, dampening, weight_decay, l1,
                 sgd_mode(use_momentum, first_step), nesterov, n_threads)


# ------------------------------------------------------------------------------------ Adagrad
cdef inline void _adagrad_chunk(idx_t c, floating* pp, const floating* pg, floating* ps,
                                idx_t n, double clr, double weight_decay, double l1,
                                double eps) noexcept nogil:
    cdef idx_t start = c * (CHUNK_BYTES // sizeof(floating))
    cdef idx_t stop = min(start + CHUNK_BYTES // sizeof(floating), n)
    if floating is float:
        pynn_adagrad_f(pp + start, pg + start, ps + start, stop - start, <float>clr,
                       <float>weight_decay, <float>l1, <float>eps, l1 != 0)
    else:
        pynn_adagrad_d(pp + start, pg + start, ps + start, stop - start, clr, weight_decay,
                       l1, eps, l1 != 0)


def adagrad_step(floating[::1] param, const floating[::1] grad, floating[::1] state_sum,
                 double clr, double weight_decay, double l1, double eps, int n_threads):
    """d = g + wd p + l1 sign(p); sum := sum + d^2; p := p - clr d / (sqrt(sum) + eps)."""
    cdef idx_t n = param.shape[0]
    cdef idx_t c, n_chunks = _n_chunks(n, CHUNK_BYTES // sizeof(floating))
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* ps = &state_sum[0] if n > 0 else NULL
    with nogil:
        if n_threads <= 1:  # the same chunks, without a parallel region's synchronization
            for c in range(n_chunks):
                _adagrad_chunk(c, pp, pg, ps, n, clr, weight_decay, l1, eps)
        else:
            for c in prange(n_chunks, schedule="static", num_threads=n_threads):
                _adagrad_chunk(c, pp, pg, ps, n, clr, weight_decay, l1, eps)


# ------------------------------------------------------------------------------------ RMSprop
cdef inline void _rmsprop_chunk(idx_t c, floating* pp, const floating* pg, floating* psq,
                                floating* pga, floating* pb, idx_t n, double lr, double alpha,
                                double eps, double weight_decay, double l1,
                                double momentum) noexcept nogil:
    cdef idx_t start = c * (CHUNK_BYTES // sizeof(floating))
    cdef idx_t stop = min(start + CHUNK_BYTES // sizeof(floating), n)
    cdef bint centered = pga != NULL
    cdef bint use_momentum = pb != NULL
    if floating is float:
        pynn_rmsprop_f(pp + start, pg + start, psq + start, pga + start if centered else NULL,
                       pb + start if use_momentum else NULL, stop - start, <float>lr,
                       <float>alpha, <float>eps, <float>weight_decay, <float>l1,
                       <float>momentum, l1 != 0, centered, use_momentum)
    else:
        pynn_rmsprop_d(pp + start, pg + start, psq + start, pga + start if centered else NULL,
                       pb + start if use_momentum else NULL, stop - start, lr, alpha, eps,
                       weight_decay, l1, momentum, l1 != 0, centered, use_momentum)


def rmsprop_step(floating[::1] param, const floating[::1] grad, floating[::1] square_avg,
                 floating[::1] grad_avg, floating[::1] momentum_buffer, double lr, double alpha,
                 double eps, double weight_decay, double l1, double momentum, int n_threads):
    """d = g + wd p + l1 sign(p); v := alpha v + (1 - alpha) d^2;
    centered: a := a + (1 - alpha)(d - a), avg = sqrt(v - a^2) + eps, else avg = sqrt(v) + eps;
    momentum: buf := momentum buf + d / avg, p := p - lr buf; else p := p - lr d / avg.
    An empty grad_avg means not centered, an empty momentum_buffer means no momentum."""
    cdef idx_t n = param.shape[0]
    cdef idx_t c, n_chunks = _n_chunks(n, CHUNK_BYTES // sizeof(floating))
    cdef bint centered = grad_avg.shape[0] == n and n > 0
    cdef bint use_momentum = momentum_buffer.shape[0] == n and momentum > 0 and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* psq = &square_avg[0] if n > 0 else NULL
    cdef floating* pga = &grad_avg[0] if centered else NULL
    cdef floating* pb = &momentum_buffer[0] if use_momentum else NULL
    with nogil:
        if n_threads <= 1:  # the same chunks, without a parallel region's synchronization
            for c in range(n_chunks):
                _rmsprop_chunk(c, pp, pg, psq, pga, pb, n, lr, alpha, eps, weight_decay, l1,
                               momentum)
        else:
            for c in prange(n_chunks, schedule="static", num_threads=n_threads):
                _rmsprop_chunk(c, pp, pg, psq, pga, pb, n, lr, alpha, eps, weight_decay, l1,
                               momentum)


# ------------------------------------------------------------------------------------ Adam(W)
cdef inline void _adam_chunk(idx_t c, floating* pp, const floating* pg, floating* pm,
                             floating* pv, floating* pvm, idx_t n, double beta1, double beta2,
                             double eps, double weight_decay, double l1, double decay,
                             double step_size, double bc2_sqrt) noexcept nogil:
    cdef idx_t start = c * (CHUNK_BYTES // sizeof(floating))
    cdef idx_t stop = min(start + CHUNK_BYTES // sizeof(floating), n)
    if floating is float:
        pynn_adam_f(pp + start, pg + start, pm + start, pv + start,
                    pvm + start if pvm != NULL else NULL, stop - start, <float>beta1,
                    <float>beta2, <float>eps, <float>weight_decay, <float>l1, <float>decay,
                    <float>step_size, <float>bc2_sqrt, l1 != 0)
    else:
        pynn_adam_d(pp + start, pg + start, pm + start, pv + start,
                    pvm + start if pvm != NULL else NULL, stop - start, beta1, beta2, eps,
                    weight_decay, l1, decay, step_size, bc2_sqrt, l1 != 0)


cdef void _adam_run(floating* pp, const floating* pg, floating* pm, floating* pv,
                    floating* pvm, idx_t n, double beta1, double beta2, double eps,
                    double weight_decay, double l1, double decay, double step_size,
                    double bc2_sqrt, int n_threads) noexcept nogil:
    """The Adam update over n elements, chunked over the threads (pvm NULL: no amsgrad)."""
    cdef idx_t c, n_chunks = _n_chunks(n, CHUNK_BYTES // sizeof(floating))
    if n_threads <= 1:  # the same chunks, without a parallel region's synchronization
        for c in range(n_chunks):
            _adam_chunk(c, pp, pg, pm, pv, pvm, n, beta1, beta2, eps, weight_decay, l1, decay,
                        step_size, bc2_sqrt)
        return
    for c in prange(n_chunks, schedule="static", num_threads=n_threads):
        _adam_chunk(c, pp, pg, pm, pv, pvm, n, beta1, beta2, eps, weight_decay, l1, decay,
                    step_size, bc2_sqrt)


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
    cdef bint amsgrad = max_exp_avg_sq.shape[0] == n and n > 0
    cdef floating* pp = &param[0] if n > 0 else NULL
    cdef const floating* pg = &grad[0] if n > 0 else NULL
    cdef floating* pm = &exp_avg[0] if n > 0 else NULL
    cdef floating* pv = &exp_avg_sq[0] if n > 0 else NULL
    cdef floating* pvm = &max_exp_avg_sq[0] if amsgrad else NULL
    with nogil:
        _adam_run(pp, pg, pm, pv, pvm, n, beta1, beta2, eps, weight_decay, l1, decay, step_size,
                  bc2_sqrt, n_threads)


# ------------------------------------------------------------------------------ NAdam, RAdam
cdef inline void _adam_variant_chunk(bint nesterov, idx_t c, floating* pp, const floating* pg,
                                     floating* pm, floating* pv, idx_t n, const double* a,
                                     bint use_l1) noexcept nogil:
    """One chunk of NAdam's loop (``nesterov``; a: beta1, beta2, eps, wd, l1, decay, bc2, c1,
    c2) or RAdam's (a: beta1, beta2, eps, wd, l1, decay, bc1, lr, bc2_sqrt, rect)."""
    cdef idx_t start = c * (CHUNK_BYTES // sizeof(floating))
    cdef idx_t stop = min(start + CHUNK_BYTES // sizeof(floating), n)
    if nesterov:
        if floating is float:
            pynn_nadam_f(pp + start, pg + start, pm + start, pv + start, stop - start,
                         <float>a[0], <float>a[1], <float>a[2], <float>a[3], <float>a[4],
                         <float>a[5], <float>a[6], <float>a[7], <float>a[8], use_l1)
        else:
            pynn_nadam_d(pp + start, pg + start, pm + start, pv + start, stop - start, a[0],
                         a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], use_l1)
    elif floating is float:
        pynn_radam_f(pp + start, pg + start, pm + start, pv + start, stop - start,
                     <float>a[0], <float>a[1], <float>a[2], <float>a[3], <float>a[4],
                     <float>a[5], <float>a[6], <float>a[7], <float>a[8], <float>a[9], use_l1)
    else:
        pynn_radam_d(pp + start, pg + start, pm + start, pv + start, stop - start, a[0], a[1],
                     a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], use_l1)


cdef void _adam_variant_run(bint nesterov, floating[::1] param, const floating[::1] grad,
                            floating[::1] exp_avg, floating[::1] exp_avg_sq, tuple scalars,
                            int n_threads):
    cdef idx_t n = param.shape[0]
    cdef idx_t c, n_chunks = _n_chunks(n, CHUNK_BYTES // sizeof(floating))
    cdef double a[10]
    cdef int i
    if n == 0:
        return
    for i in range(len(scalars)):
        a[i] = scalars[i]
    cdef bint use_l1 = a[4] != 0
    cdef floating* pp = &param[0]
    cdef const floating* pg = &grad[0]
    cdef floating* pm = &exp_avg[0]
    cdef floating* pv = &exp_avg_sq[0]
    with nogil:
        if n_threads <= 1:  # the same chunks, without a parallel region's synchronization
            for c in range(n_chunks):
                _adam_variant_chunk(nesterov, c, pp, pg, pm, pv, n, a, use_l1)
        else:
            for c in prange(n_chunks, schedule="static", num_threads=n_threads):
                _adam_variant_chunk(nesterov, c, pp, pg, pm, pv, n, a, use_l1)


def nadam_step(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
               floating[::1] exp_avg_sq, double beta1, double beta2, double eps,
               double weight_decay, double l1, double decay, double bc2, double c1, double c2,
               int n_threads):
    """d = g + wd p + l1 sign(p); m := m + (1 - beta1)(d - m); v := beta2 v + (1 - beta2) d^2;
    denom = sqrt(v / bc2) + eps; p := p decay - c1 d / denom - c2 m / denom (torch's NAdam:
    c1 = lr (1 - mu_t) / (1 - prod mu), c2 = lr mu_t+1 / (1 - prod mu mu_t+1))."""
    _adam_variant_run(True, param, grad, exp_avg, exp_avg_sq,
                      (beta1, beta2, eps, weight_decay, l1, decay, bc2, c1, c2), n_threads)


def radam_step(floating[::1] param, const floating[::1] grad, floating[::1] exp_avg,
               floating[::1] exp_avg_sq, double beta1, double beta2, double eps,
               double weight_decay, double l1, double decay, double bc1, double lr,
               double bc2_sqrt, double rect, int n_threads):
    """d = g + wd p + l1 sign(p); m, v as Adam's; rect > 0: p := p decay - m / bc1 lr
    (bc2_sqrt / (sqrt(v) + eps)) rect, else p := p decay - m / bc1 lr (torch's RAdam, rect
    the variance rectification, 0 while rho_t <= 5)."""
    _adam_variant_run(False, param, grad, exp_avg, exp_avg_sq,
                      (beta1, beta2, eps, weight_decay, l1, decay, bc1, lr, bc2_sqrt, rect),
                      n_threads)


# ----------------------------------------------------------------- for pynn._kernels.train_step
# The whole-step program runs these very loops, compiled here with this module's flags (no FMA
# contraction: see the top), so its updates are bit-identical to the kernels above. It gets
# them as C function pointers; non-fused entry points give each dtype one address.
cdef void _adam_f(float* pp, const float* pg, float* pm, float* pv, float* pvm, idx_t n,
                  double beta1, double beta2, double eps, double weight_decay, double l1,
                  double decay, double step_size, double bc2_sqrt, int n_threads) noexcept nogil:
    _adam_run(pp, pg, pm, pv, pvm, n, beta1, beta2, eps, weight_decay, l1, decay, step_size,
              bc2_sqrt, n_threads)


cdef void _adam_d(double* pp, const double* pg, double* pm, double* pv, double* pvm, idx_t n,
                  double beta1, double beta2, double eps, double weight_decay, double l1,
                  double decay, double step_size, double bc2_sqrt,
                  int n_threads) noexcept nogil:
    _adam_run(pp, pg, pm, pv, pvm, n, beta1, beta2, eps, weight_decay, l1, decay, step_size,
              bc2_sqrt, n_threads)


cdef void _sgd_f(float* pp, const float* pg, float* pb, idx_t n, double lr, double momentum,
                 double dampening, double weight_decay, double l1, int mode, bint nesterov,
                 int n_threads) noexcept nogil:
    _sgd_run(pp, pg, pb, n, lr, momentum, dampening, weight_decay, l1, mode, nesterov,
             n_threads)


cdef void _sgd_d(double* pp, const double* pg, double* pb, idx_t n, double lr, double momentum,
                 double dampening, double weight_decay, double l1, int mode, bint nesterov,
                 int n_threads) noexcept nogil:
    _sgd_run(pp, pg, pb, n, lr, momentum, dampening, weight_decay, l1, mode, nesterov,
             n_threads)


def update_loops():
    """{name: address} of the update loops above (for pynn._kernels.train_step only), and the SGD
    modes by name."""
    return {"adam_f": <size_t>&_adam_f, "adam_d": <size_t>&_adam_d,
            "sgd_f": <size_t>&_sgd_f, "sgd_d": <size_t>&_sgd_d,
            "sgd_plain": PYNN_SGD_PLAIN, "sgd_first": PYNN_SGD_FIRST,
            "sgd_momentum": PYNN_SGD_MOMENTUM}
