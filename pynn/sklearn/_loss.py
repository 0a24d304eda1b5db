"""scikit-learn's MLP losses on pynn's loss kernels.

scikit-learn's MLP loss of a batch is a (sample-weighted) mean over the rows of a sum over the
K outputs, and its gradient with respect to the output layer's pre-activation is
``(prediction - y) * w / sum(w)``. pynn's elementwise losses average over all N*K elements
instead (and MSELoss's gradient carries the factor 2), so the gradient is rescaled here to
scikit-learn's, and the value to what scikit-learn records in ``loss_curve_``.
"""
import numpy as np
from scipy.special import xlogy

from ..nn.losses import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss


class SklearnLoss:
    """``loss(logits, target, sample_weight) -> (value, dlogits)`` with scikit-learn's scaling.

    Parameters
    ----------
    kind : "log_loss" (softmax output, integer targets), "binary_log_loss" (logistic outputs,
        0/1 targets of shape (N, K)), "squared_error" or "poisson" (log link)
    n_outputs : int
    """

    def __init__(self, kind, n_outputs):
        self.kind = kind
        k = float(n_outputs)
        # (the pynn loss, gradient factor to scikit-learn's, value factor to scikit-learn's)
        if kind == "log_loss":
            self.pynn_loss, self._grad_scale, self._value_scale = CrossEntropyLoss(), 1.0, 1.0
        elif kind == "binary_log_loss":
            # scikit-learn sums the K columns' log-losses
            self.pynn_loss, self._grad_scale, self._value_scale = BCEWithLogitsLoss(), k, k
        elif kind == "squared_error":
            # scikit-learn records half the mean squared error, but its gradient is (p - y)
            # per output, that of half the sum over the K outputs
            self.pynn_loss, self._grad_scale, self._value_scale = MSELoss(), k / 2.0, 0.5
        elif kind == "poisson":
            self.pynn_loss, self._grad_scale, self._value_scale = None, 1.0, 1.0
        else:
            raise ValueError(f"kind must be 'log_loss', 'binary_log_loss', 'squared_error' or "
                             f"'poisson', got {kind!r}")
        #: the pynn loss alone gives scikit-learn's value and gradient (no rescaling)
        self.unscaled = (self.pynn_loss is not None and self._grad_scale == 1.0
                         and self._value_scale == 1.0)

    def __call__(self, logits, target, sample_weight=None):
        if self.pynn_loss is None:
            return _poisson(logits, target, sample_weight)
        if sample_weight is None:
            value = self.pynn_loss.forward(logits, target)
        else:
            value = self.pynn_loss.forward(logits, target, sample_weight=sample_weight)
        grad = self.pynn_loss.backward()
        if self._grad_scale != 1.0:
            grad *= grad.dtype.type(self._grad_scale)
        return float(value) * self._value_scale, grad


def _poisson(logits, target, sample_weight):
    """Poisson deviance-style loss of scikit-learn's MLPRegressor(loss="poisson") on the log
    link: per row sum_k (exp(z) - y z + xlogy(y, y) - y); gradient (exp(z) - y) per output.
    pynn has no Poisson kernel; this is scikit-learn's formula in NumPy."""
    mean = np.exp(logits)
    rows = (mean - target * logits + xlogy(target, target) - target).sum(axis=1)
    n = logits.shape[0]
    if sample_weight is None:
        return float(rows.sum() / n), (mean - target) / logits.dtype.type(n)
    total = float(sample_weight.sum())
    if total == 0:
        return 0.0, np.zeros_like(logits)
    grad = (mean - target) * (sample_weight / total).astype(logits.dtype)[:, None]
    return float(np.dot(rows, sample_weight) / total), grad
