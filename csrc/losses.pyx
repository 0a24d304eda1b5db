"""pynn._kernels.losses: loss value and gradient in one pass over the data.

Every kernel returns the *weighted sum* of the per-element (per-row for cross-entropy) losses,
sum_r w_r l_r, and writes the gradient of ``scale`` times that sum; the caller picks ``scale``
(1 / the mean's denominator, or 1 for a sum), so one loop serves every reduction. ``W`` holds
the row weights (sample weights times class weights) or is None (every weight 1); ``L``, unless
None, receives each weighted loss term (reduction="none"). The loops are the cores in
``_losses.pxd``, shared with the compiled training step.

Every sum is accumulated in double whatever the data dtype (float32 logits summed over 10^6
elements in float32 would lose digits). The gradient is computed in double and rounded once when
stored, exactly like the NumPy reference. ``G`` may be None: then only the value is computed.
"""
from _types cimport floating, idx_t
from _losses cimport bce_core, mse_core, robust_core, softmax_ce_core, softmax_ce_smooth_core
cimport _omp  # noqa: F401  (OpenMP stubs for serial builds)


cdef const double* _weights(object W):
    cdef const double[::1] w
    if W is None:
        return NULL
    w = W
    return &w[0]


def mse_loss(const floating[:, ::1] Y, const floating[:, ::1] T, object W, object G, object L,
             double scale, int n_threads):
    """sum_rk w_r (y - t)**2; G := 2 (y - t) w_r scale unless None; L := w_r (y - t)**2."""
    cdef idx_t size = Y.shape[0] * Y.shape[1]
    cdef floating[:, ::1] g
    cdef floating[:, ::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const double* wp
    cdef double s
    if size == 0:
        return 0.0
    wp = _weights(W)
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0, 0]
    with nogil:
        s = mse_core(&Y[0, 0], &T[0, 0], wp, gp, lp, size, Y.shape[1], scale, n_threads)
    return s


def bce_with_logits_loss(const floating[:, ::1] Z, const floating[:, ::1] T, object W,
                         object P, object G, object L, double scale, int n_threads):
    """sum_rk w_r l(z, t) (torch's pos_weight P per column, or None); G := dl/dz w_r scale
    unless None; L := w_r l."""
    cdef idx_t size = Z.shape[0] * Z.shape[1]
    cdef floating[:, ::1] g
    cdef floating[:, ::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const double* wp
    cdef const double* pp
    cdef double s
    if size == 0:
        return 0.0
    wp = _weights(W)
    pp = _weights(P)
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0, 0]
    with nogil:
        s = bce_core(&Z[0, 0], &T[0, 0], wp, pp, gp, lp, size, Z.shape[1], scale, n_threads)
    return s


def softmax_cross_entropy_loss(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                               object W, object G, object L, double scale, int n_threads):
    """sum_r w_r (logsumexp(z_r) - z_r[label_r]); G := (softmax(z) - onehot(label)) w_r scale
    unless None; L[r] := w_r l_r unless None."""
    cdef floating[:, ::1] g
    cdef floating[::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const double* wp
    cdef double s
    if Z.shape[0] == 0:
        return 0.0
    wp = _weights(W)
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0]
    with nogil:
        s = softmax_ce_core(&Z[0, 0], &labels[0], wp, gp, lp, Z.shape[0], Z.shape[1], scale,
                            n_threads)
    return s


def robust_loss(const floating[:, ::1] Y, const floating[:, ::1] T, object W, object G,
                object L, int kind, double c, double scale, int n_threads):
    """sum_rk w_r l(y - t), l the robust loss ``kind`` (L1, Huber with delta c, smooth L1 with
    beta c > 0); G := dl/dy w_r scale unless None; L := w_r l unless None."""
    cdef idx_t size = Y.shape[0] * Y.shape[1]
    cdef floating[:, ::1] g
    cdef floating[:, ::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const double* wp
    cdef double s
    if size == 0:
        return 0.0
    wp = _weights(W)
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0, 0]
    with nogil:
        s = robust_core(kind, c, &Y[0, 0], &T[0, 0], wp, gp, lp, size, Y.shape[1], scale,
                        n_threads)
    return s


def softmax_cross_entropy_smooth_loss(const floating[:, ::1] Z, const Py_ssize_t[::1] labels,
                                      object S, object CW, double label_smoothing, object G,
                                      object L, double scale, int n_threads):
    """Softmax cross-entropy with label smoothing, torch's: the sum of the rows' terms
    s_r ((1 - eps) c_y nll_r + eps / C sum_c c_c (-log p_rc)), S the sample weights and CW
    the class weights (each None for ones); G := its gradient times scale unless None; L[r] :=
    row r's term unless None."""
    cdef floating[:, ::1] g
    cdef floating[::1] lo
    cdef floating* gp = NULL
    cdef floating* lp = NULL
    cdef const double* sp
    cdef const double* cwp
    cdef double s
    if Z.shape[0] == 0:
        return 0.0
    sp = _weights(S)
    cwp = _weights(CW)
    if G is not None:
        g = G
        gp = &g[0, 0]
    if L is not None:
        lo = L
        lp = &lo[0]
    with nogil:
        s = softmax_ce_smooth_core(&Z[0, 0], &labels[0], sp, cwp, label_smoothing, gp, lp,
                                   Z.shape[0], Z.shape[1], scale, n_threads)
    return s
