"""The losses' part of the backend interface (a mixin of ``Backend``): the checked public losses
(``mse_loss``, ``l1_loss``, ``huber_loss``, ``smooth_l1_loss``, ``bce_with_logits_loss``,
``softmax_cross_entropy_loss``), each one fused kernel call computing the value and the
gradient; their abstract ``_<loss>`` loops are declared with the others in ``base.py``."""
import numpy as np

from .. import _threads
from .._checks import check_real
from ._arrays import (_denominator, _float_array, _grad_scale, _ndim, _output, _same_shape,
                      _weight_vector, check_batch_reduction, check_labels, row_weights)
from .codes import ROBUST_HUBER, ROBUST_L1, ROBUST_SMOOTH_L1


class LossSteps:
    """The losses of ``Backend`` (see the module doc)."""

    # Every loss takes ``reduction`` ("mean", "sum", "none": torch's names) and per-row
    # ``sample_weight``; the mean is the weighted mean sum_r w_r l_r / sum_r w_r (over the N*K
    # elements, sum_r w_r sum_k l_rk / (K sum_r w_r), as scikit-learn's np.average does), which
    # is torch's class-weighted mean when the weights are CrossEntropyLoss's class weights. A
    # batch whose weights sum to zero has mean 0 and a zero gradient (torch returns nan there):
    # a mini-batch of zero-weight samples teaches nothing, it does not stop training.
    # "none" returns the weighted loss terms (N, K), or (N,) for cross-entropy; its gradient is
    # that of their sum.
    def _loss_operands(self, Y, T, name_y, reduction):
        Y = _float_array(name_y, Y)
        _ndim(name_y, Y, 2)
        T = _float_array("T", T, Y.dtype)
        _same_shape("T", T, Y.shape)
        check_batch_reduction(reduction, Y.shape[0], name_y)
        return Y, T

    def _finish_loss(self, total, W, denom, reduction, L):
        """The loss value from the kernel's weighted sum ``total``."""
        if reduction == "none":
            return L
        if reduction == "sum":
            return total
        if denom > 0:
            return total / denom
        # zero weights in total (0, or nan when a loss term was nan); no weights: an (N, 0)
        # output, numpy's mean of nothing
        return total if W is not None else float("nan")

    def mse_loss(self, Y, T, grad_out=None, need_grad=True, *, sample_weight=None,
                 reduction="mean"):
        """l = (y - t)**2 per element, reduced over N*K (see the losses' note above);
        grad = 2 (y - t) w_r / denominator."""
        Y, T = self._loss_operands(Y, T, "Y", reduction)
        W = row_weights("sample_weight", sample_weight, Y.shape[0])
        G = (_output("grad_out", grad_out, Y.shape, Y.dtype, [("Y", Y), ("T", T)])
             if need_grad else None)
        L = np.empty(Y.shape, Y.dtype) if reduction == "none" else None
        denom = _denominator(W, Y.shape[0]) * Y.shape[1]
        total = self._mse_loss(Y, T, W, G, L, _grad_scale(reduction, denom),
                               _threads.threads_for(Y.size))
        return self._finish_loss(total, W, denom, reduction, L), G

    def l1_loss(self, Y, T, grad_out=None, need_grad=True, *, sample_weight=None,
                reduction="mean"):
        """l = |y - t| per element, reduced over N*K; grad = sign(y - t) w_r / denominator
        (0 where y = t, torch's)."""
        return self._robust_loss(Y, T, ROBUST_L1, 0.0, grad_out, need_grad, sample_weight,
                                 reduction)

    def huber_loss(self, Y, T, grad_out=None, need_grad=True, *, delta=1.0, sample_weight=None,
                   reduction="mean"):
        """Huber's loss, torch's ``huber_loss``: with d = y - t, l = d^2 / 2 where |d| < delta,
        else delta (|d| - delta / 2); reduced over N*K; grad = clip(d, -delta, delta) w_r /
        denominator."""
        delta = check_real("delta", delta, 0.0, low_open=True)
        return self._robust_loss(Y, T, ROBUST_HUBER, delta, grad_out, need_grad, sample_weight,
                                 reduction)

    def smooth_l1_loss(self, Y, T, grad_out=None, need_grad=True, *, beta=1.0,
                       sample_weight=None, reduction="mean"):
        """torch's ``smooth_l1_loss``: with d = y - t, l = d^2 / (2 beta) where |d| < beta,
        else |d| - beta / 2 (beta = 0: the L1 loss, as torch); reduced over N*K; grad =
        clip(d / beta, -1, 1) w_r / denominator."""
        beta = check_real("beta", beta, 0.0)
        kind = ROBUST_SMOOTH_L1 if beta > 0 else ROBUST_L1
        return self._robust_loss(Y, T, kind, beta, grad_out, need_grad, sample_weight,
                                 reduction)

    def _robust_loss(self, Y, T, kind, c, grad_out, need_grad, sample_weight, reduction):
        """The robust losses' shared checks and their one loop (``_robust_loss_loop``)."""
        Y, T = self._loss_operands(Y, T, "Y", reduction)
        W = row_weights("sample_weight", sample_weight, Y.shape[0])
        G = (_output("grad_out", grad_out, Y.shape, Y.dtype, [("Y", Y), ("T", T)])
             if need_grad else None)
        L = np.empty(Y.shape, Y.dtype) if reduction == "none" else None
        denom = _denominator(W, Y.shape[0]) * Y.shape[1]
        total = self._robust_loss_loop(Y, T, W, G, L, kind, c, _grad_scale(reduction, denom),
                                       _threads.threads_for(Y.size))
        return self._finish_loss(total, W, denom, reduction, L), G

    def bce_with_logits_loss(self, Z, T, grad_out=None, need_grad=True, *, sample_weight=None,
                             pos_weight=None, reduction="mean"):
        """l = -(p t log sigmoid(z) + (1 - t) log(1 - sigmoid(z))) per element, computed as
        max(z, 0) - z t + log1p(exp(-|z|)) when ``pos_weight`` (p, one per column, torch's) is
        None; reduced over N*K; grad = (sigmoid(z) - t) w_r / denominator (p = 1)."""
        Z, T = self._loss_operands(Z, T, "Z", reduction)
        W = row_weights("sample_weight", sample_weight, Z.shape[0])
        P = None if pos_weight is None else _weight_vector("pos_weight", pos_weight, Z.shape[1])
        G = (_output("grad_out", grad_out, Z.shape, Z.dtype, [("Z", Z), ("T", T)])
             if need_grad else None)
        L = np.empty(Z.shape, Z.dtype) if reduction == "none" else None
        denom = _denominator(W, Z.shape[0]) * Z.shape[1]
        total = self._bce_with_logits_loss(Z, T, W, P, G, L, _grad_scale(reduction, denom),
                                           _threads.threads_for(Z.size))
        return self._finish_loss(total, W, denom, reduction, L), G

    def softmax_cross_entropy_loss(self, Z, labels, grad_out=None, need_grad=True, *,
                                   sample_weight=None, class_weight=None, reduction="mean",
                                   label_smoothing=0.0):
        """l_r = logsumexp(z_r) - z_r[label_r] per row, weighted by sample_weight[r] *
        class_weight[label_r] (torch's ``weight``: its mean divides by the sum of the weights
        too); grad = (softmax(z) - onehot) w_r / denominator.

        ``label_smoothing`` eps in [0, 1] (torch's): the target is (1 - eps) onehot + eps / C,
        and with class weights c torch's form, row r's term being sample_weight[r]
        ((1 - eps) c[label_r] l_r + eps / C sum_j c_j (logsumexp(z_r) - z_rj)); the mean still
        divides by sum_r sample_weight[r] c[label_r]."""
        Z = _float_array("Z", Z)
        _ndim("Z", Z, 2)
        check_batch_reduction(reduction, Z.shape[0], "Z")
        labels = check_labels("labels", labels, Z.shape[0], Z.shape[1])
        smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0)
        S = W = row_weights("sample_weight", sample_weight, Z.shape[0])
        CW = None
        if class_weight is not None:
            CW = _weight_vector("class_weight", class_weight, Z.shape[1])
            per_row = CW[labels]
            W = per_row if W is None else W * per_row
        G = (_output("grad_out", grad_out, Z.shape, Z.dtype, [("Z", Z), ("labels", labels)])
             if need_grad else None)
        L = np.empty(Z.shape[0], Z.dtype) if reduction == "none" else None
        denom = _denominator(W, Z.shape[0])
        scale, n_threads = _grad_scale(reduction, denom), _threads.threads_for(Z.size)
        if smoothing > 0:
            total = self._softmax_cross_entropy_smooth_loss(Z, labels, S, CW, smoothing, G, L,
                                                            scale, n_threads)
        else:
            total = self._softmax_cross_entropy_loss(Z, labels, W, G, L, scale, n_threads)
        return self._finish_loss(total, W, denom, reduction, L), G
