"""pynn._kernels.losses: loss value and gradient in one pass over the data.

Every sum is accumulated in double whatever the data dtype (float32 logits summed over 10^6
elements in float32 would lose digits). The gradient is computed in double and rounded once when
stored, exactly like the NumPy reference. ``G`` may be None: then only the value is computed.
"""
from _types cimport floating, idx_t
from _losses cimport bce_core, mse_core, softmax_ce_core
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


def mse_loss(const floating[:, ::1] Y, const floating[:, ::1] T, object G, int n_threads):
    """loss = mean((Y - T)**2); G := 2 (Y - T) / (N K) unless G is None."""
    cdef idx_t size = Y.shape[0] * Y.shape[1]
    cdef floating[:, ::1] g
    cdef floating* gp = NULL
    cdef double s
    if size == 0:
        # (1, 0): numpy's mean of nothing is nan; keep that rather than invent a value
        return float("nan")
    if G is not None:
        g = G
        gp = &g[0, 0]
    with nogil:
        s = mse_core(&Y[0, 0], &T[0, 0], gp, size, n_threads)
    return s


def bce_with_logits_loss(const floating[:, ::1] Z, const floating[:, ::1] T, object G,
                         int n_threads):
    """loss = mean(max(z, 0) - z t + log1p(exp(-|z|))); G := (sigmoid(z) - t) / (N K) unless None."""
    cdef idx_t size = Z.shape[0] * Z.shape[1]
    cdef floating[:, ::1] g
    cdef floating* gp = NULL
    cdef double s
    if size == 0:
        return float("nan")
    if G is not None:
        g = G
        gp = &g[0, 0]
    with nogil:
        s = bce_core(&Z[0, 0], &T[0, 0], gp, size, n_threads)
    return s


def softmax_cross_entropy_loss(const floating[:, ::1] Z, const Py_ssize_t[::1] labels, object G,
                               int n_threads):
    """loss = mean_r(logsumexp(z_r) - z_r[label_r]); G := (softmax(z) - onehot(label)) / N."""
    cdef floating[:, ::1] g
    cdef floating* gp = NULL
    cdef double s
    if G is not None:
        g = G
        gp = &g[0, 0]
    with nogil:
        s = softmax_ce_core(&Z[0, 0], &labels[0], gp, Z.shape[0], Z.shape[1], n_threads)
    return s
