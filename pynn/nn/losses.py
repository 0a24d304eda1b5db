"""Losses: ``forward(output, target, sample_weight=None)`` -> the reduced loss,
``backward() -> d_output``.

``reduction`` has torch's names: "mean" (default), "sum", or "none" (the weighted loss terms,
(N, K) for the elementwise losses, (N,) for cross-entropy; ``backward`` then gives the
gradient of their sum). ``sample_weight`` (N,) weighs each row; the mean is the weighted mean
``sum_r w_r l_r / sum_r w_r`` (scikit-learn's ``np.average``), over the K outputs of a row as
well for the elementwise losses. CrossEntropyLoss's class ``weight`` enters the same way
(w_r = sample_weight[r] * weight[label_r]), which is exactly torch's class-weighted mean. A
batch whose weights sum to zero has loss 0 and a zero gradient, where torch returns nan.
"""
import numpy as np

from .._checks import check_real
from ..backend import backend_for
from ..backend._arrays import check_reduction


def _class_weights(name, weight):
    """A copy of 1-D finite non-negative weights as float64 (None passes through)."""
    if weight is None:
        return None
    try:
        w = np.array(weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a 1-D array of real numbers, got "
                        f"{type(weight).__name__}") from None
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one weight per class), got shape {w.shape}")
    if not (np.all(np.isfinite(w)) and np.all(w >= 0)):
        raise ValueError(f"{name} must be finite and >= 0")
    w.flags.writeable = False
    return w


class Loss:
    """Base of the losses. ``backend`` as for layers (None follows ``pynn.set_backend``)."""

    def __init__(self, *, reduction="mean", backend=None):
        self.reduction = check_reduction(reduction)
        self.backend_name = backend
        self._grad = None

    @property
    def backend(self):
        return backend_for(self.backend_name)

    def __call__(self, output, target, sample_weight=None):
        return self.forward(output, target, sample_weight=sample_weight)

    def backward(self):
        """Gradient of the last forward's loss with respect to its ``output``."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    def probabilities(self, output):
        """The probabilities a classification loss reads into ``output`` (the model's logits):
        softmax rows for CrossEntropyLoss, elementwise sigmoid for BCEWithLogitsLoss; other
        losses raise ValueError."""
        raise ValueError(f"{type(self).__name__} is not a classification loss: its outputs "
                         f"are not probabilities (predict_proba needs CrossEntropyLoss or "
                         f"BCEWithLogitsLoss)")

    def _extra_repr(self):
        return {}

    def __repr__(self):
        args = dict(self._extra_repr())
        if self.reduction != "mean":
            args["reduction"] = self.reduction
        inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
        return f"{type(self).__name__}({inner})"


def _float_target(loss, output, target):
    if not isinstance(target, np.ndarray):
        raise TypeError(f"{type(loss).__name__}: target must be a numpy.ndarray, "
                        f"got {type(target).__name__}")
    if isinstance(output, np.ndarray) and target.dtype != output.dtype:
        raise TypeError(
            f"{type(loss).__name__}: target has dtype {target.dtype} but output has dtype "
            f"{output.dtype}; convert it first"
        )


class MSELoss(Loss):
    """Squared error ``(output - target)**2``, reduced over all N*K elements (a weighted mean
    with ``sample_weight``)."""

    def forward(self, output, target, sample_weight=None):
        _float_target(self, output, target)
        loss, self._grad = self.backend.mse_loss(output, target, sample_weight=sample_weight,
                                                 reduction=self.reduction)
        return loss


class L1Loss(Loss):
    """Absolute error ``|output - target|``, reduced over all N*K elements (a weighted mean
    with ``sample_weight``); torch's ``nn.L1Loss``. Its gradient is sign(output - target), 0
    where they are equal."""

    def forward(self, output, target, sample_weight=None):
        _float_target(self, output, target)
        loss, self._grad = self.backend.l1_loss(output, target, sample_weight=sample_weight,
                                                reduction=self.reduction)
        return loss


class HuberLoss(Loss):
    """Huber's loss, torch's ``nn.HuberLoss``: with d = output - target, ``d**2 / 2`` where
    ``|d| < delta``, else ``delta * (|d| - delta / 2)`` (squared near 0, linear in the tails,
    so outliers pull with at most ``delta``), reduced over all N*K elements.

    Parameters
    ----------
    delta : float > 0, default 1.0
    """

    def __init__(self, delta=1.0, *, reduction="mean", backend=None):
        super().__init__(reduction=reduction, backend=backend)
        self.delta = check_real("delta", delta, 0.0, low_open=True)

    def _extra_repr(self):
        return {"delta": self.delta}

    def forward(self, output, target, sample_weight=None):
        _float_target(self, output, target)
        loss, self._grad = self.backend.huber_loss(output, target, delta=self.delta,
                                                   sample_weight=sample_weight,
                                                   reduction=self.reduction)
        return loss


class SmoothL1Loss(Loss):
    """torch's ``nn.SmoothL1Loss``: with d = output - target, ``d**2 / (2 beta)`` where
    ``|d| < beta``, else ``|d| - beta / 2`` (Huber's loss divided by beta; beta = 0 is the L1
    loss), reduced over all N*K elements.

    Parameters
    ----------
    beta : float >= 0, default 1.0
    """

    def __init__(self, beta=1.0, *, reduction="mean", backend=None):
        super().__init__(reduction=reduction, backend=backend)
        self.beta = check_real("beta", beta, 0.0)

    def _extra_repr(self):
        return {"beta": self.beta}

    def forward(self, output, target, sample_weight=None):
        _float_target(self, output, target)
        loss, self._grad = self.backend.smooth_l1_loss(output, target, beta=self.beta,
                                                       sample_weight=sample_weight,
                                                       reduction=self.reduction)
        return loss


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit), reduced over
    all N*K elements. Targets are probabilities in [0, 1] of the output's dtype.

    Parameters
    ----------
    pos_weight : array (K,), optional
        torch's: the weight of the positive term of each output column,
        ``-(p t log sigmoid(z) + (1 - t) log(1 - sigmoid(z)))``; ``n_negative / n_positive``
        balances a rare positive class. The mean still divides by N*K, as torch's does.
    """

    def __init__(self, *, pos_weight=None, reduction="mean", backend=None):
        super().__init__(reduction=reduction, backend=backend)
        self.pos_weight = _class_weights("pos_weight", pos_weight)

    def _extra_repr(self):
        return {} if self.pos_weight is None else {"pos_weight": self.pos_weight.tolist()}

    def probabilities(self, output):
        """sigmoid(output): each output's probability of its positive class."""
        return self.backend.activation_forward(output, "sigmoid")

    def forward(self, output, target, sample_weight=None):
        _float_target(self, output, target)
        loss, self._grad = self.backend.bce_with_logits_loss(
            output, target, sample_weight=sample_weight, pos_weight=self.pos_weight,
            reduction=self.reduction)
        return loss


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits with integer class labels, reduced over the N rows.

    Parameters
    ----------
    weight : array (C,), optional
        torch's class weights: row r counts ``weight[label_r]`` times, and the mean divides by
        the sum of the rows' weights (torch's class-weighted mean).
    label_smoothing : float in [0, 1], default 0
        torch's: the target becomes ``(1 - label_smoothing) onehot + label_smoothing / C``;
        with class weights, torch's form (each class's share of the smoothed term weighted by
        its own weight, the mean still divided by the rows' weights). The compiled training
        step runs only the unsmoothed, unweighted loss; this one runs the eager lines.

    Shape
    -----
    - output: (N, C) logits
    - target: (N,) integers in [0, C)
    """

    def __init__(self, weight=None, *, reduction="mean", label_smoothing=0.0, backend=None):
        super().__init__(reduction=reduction, backend=backend)
        self.weight = _class_weights("weight", weight)
        self.label_smoothing = check_real("label_smoothing", label_smoothing, 0.0, 1.0)

    def _extra_repr(self):
        extra = {} if self.weight is None else {"weight": self.weight.tolist()}
        if self.label_smoothing:
            extra["label_smoothing"] = self.label_smoothing
        return extra

    def probabilities(self, output):
        """softmax(output) along each row: the class probabilities (rows sum to 1)."""
        return self.backend.softmax_forward(output)

    def forward(self, output, target, sample_weight=None):
        loss, self._grad = self.backend.softmax_cross_entropy_loss(
            output, target, sample_weight=sample_weight, class_weight=self.weight,
            reduction=self.reduction, label_smoothing=self.label_smoothing)
        return loss
