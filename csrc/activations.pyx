"""pynn._kernels.activations: elementwise activations and row-wise softmax, forward and backward.

Arguments arrive validated from pynn.backend.base (C-contiguous, one float dtype, right shapes,
writeable outputs, n_threads already 1 below the parallel threshold).
"""
from cython.parallel cimport prange

from _types cimport floating, idx_t
from _activations_threads cimport (act_backward_threads, act_forward_threads,
                                   softmax_forward_threads)
cimport _omp  # noqa: F401  (OpenMP guard: serial stubs when built without it)


def activation_forward(const floating[::1] X, floating[::1] Y, int kind, double param,
                       double param2, int n_threads):
    """Y[i] := act(X[i]); param, param2: the kind's parameters (codes.kernel_params)"""
    cdef idx_t n = X.shape[0]
    cdef floating p = <floating>param  # rounded to the dtype first, as NumPy does
    if n == 0:
        return
    with nogil:
        act_forward_threads(kind, p, <floating>param2, &X[0], &Y[0], n, n_threads)


def activation_backward(const floating[::1] dY, const floating[::1] X, const floating[::1] Y,
                        floating[::1] dX, int kind, double param, double param2,
                        int n_threads):
    """dX[i] := dY[i] * act'(X[i]) (from Y[i] where the math allows)"""
    cdef idx_t n = dY.shape[0]
    if n == 0:
        return
    with nogil:
        act_backward_threads(kind, <floating>param, <floating>param2, &dY[0], &X[0], &Y[0],
                             &dX[0], n, n_threads)


cdef inline void _softmax_backward_row(const floating* dy, const floating* y, floating* dx,
                                       idx_t k) noexcept nogil:
    """dx := y * (dy - sum(dy * y)) for one row."""
    cdef idx_t j
    cdef double s = 0
    cdef floating dot
    for j in range(k):
        s += <double>dy[j] * y[j]
    dot = <floating>s
    for j in range(k):
        dx[j] = y[j] * (dy[j] - dot)


def softmax_forward(const floating[:, ::1] X, floating[:, ::1] Y, int n_threads):
    """Y[i] := exp(X[i] - max X[i]) / sum_j exp(X[i, j] - max X[i])"""
    cdef idx_t n = X.shape[0], k = X.shape[1]
    if n == 0 or k == 0:
        return
    with nogil:
        softmax_forward_threads(&X[0, 0], &Y[0, 0], n, k, n_threads)


def softmax_backward(const floating[:, ::1] dY, const floating[:, ::1] Y, floating[:, ::1] dX,
                     int n_threads):
    """dX[i] := Y[i] * (dY[i] - dY[i] . Y[i])"""
    cdef idx_t n = dY.shape[0], k = dY.shape[1]
    cdef idx_t i
    if n == 0 or k == 0:
        return
    with nogil:
        if n_threads <= 1:
            for i in range(n):
                _softmax_backward_row(&dY[i, 0], &Y[i, 0], &dX[i, 0], k)
        else:
            for i in prange(n, schedule="static", num_threads=n_threads):
                _softmax_backward_row(&dY[i, 0], &Y[i, 0], &dX[i, 0], k)
