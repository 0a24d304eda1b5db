"""The losses' part of the backend interface (a mixin of ``Backend``): the checked public losses
(``mse_loss``, ``bce_with_logits_loss``, ``softmax_cross_entropy_loss``), each one fused kernel
call computing the value and the gradient; their abstract ``_<loss>`` loops are declared with
the others in ``base.py``."""
import numpy as np

from .. import _threads
from ._arrays import (_denominator, _float_array, _grad_scale, _ndim, _output, _same_shape,
                      _weight_vector, check_batch_reduction, check_labels, row_weights)


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
                                   sample_weight=None, class_weight=None, reduction="mean"):
        """l_r = logsumexp(z_r) - z_r[label_r] per row, weighted by sample_weight[r] *
        class_weight[label_r] (torch's ``weight``: its mean divides by the sum of the weights
        too); grad = (softmax(z) - onehot) w_r / denominator."""
        Z = _float_array("Z", Z)
        _ndim("Z", Z, 2)
        check_batch_reduction(reduction, Z.shape[0], "Z")
        labels = check_labels("labels", labels, Z.shape[0], Z.shape[1])
        W = row_weights("sample_weight", sample_weight, Z.shape[0])
        if class_weight is not None:
            per_row = _weight_vector("class_weight", class_weight, Z.shape[1])[labels]
            W = per_row if W is None else W * per_row
        G = (_output("grad_out", grad_out, Z.shape, Z.dtype, [("Z", Z), ("labels", labels)])
             if need_grad else None)
        L = np.empty(Z.shape[0], Z.dtype) if reduction == "none" else None
        denom = _denominator(W, Z.shape[0])
        total = self._softmax_cross_entropy_loss(Z, labels, W, G, L,
                                                 _grad_scale(reduction, denom),
                                                 _threads.threads_for(Z.size))
        return self._finish_loss(total, W, denom, reduction, L), G
