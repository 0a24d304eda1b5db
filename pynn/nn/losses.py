"""Losses: ``forward(output, target) -> float`` (mean over the batch), ``backward() -> d_output``."""
import numpy as np

from ..backend import backend_for


class Loss:
    """Base of the losses. ``backend`` as for layers (None follows ``pynn.set_backend``)."""

    def __init__(self, backend=None):
        self.backend_name = backend
        self._grad = None

    @property
    def backend(self):
        return backend_for(self.backend_name)

    def __call__(self, output, target):
        return self.forward(output, target)

    def backward(self):
        """Gradient of the last forward's loss with respect to its ``output``."""
        if self._grad is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return self._grad

    def __repr__(self):
        return f"{type(self).__name__}()"


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
    """Mean squared error, averaged over all N*K elements: ``mean((output - target)**2)``."""

    def forward(self, output, target):
        _float_target(self, output, target)
        loss, self._grad = self.backend.mse_loss(output, target)
        return loss


class BCEWithLogitsLoss(Loss):
    """Binary cross-entropy on logits (sigmoid fused in, stable for any logit), averaged over
    all N*K elements. Targets are probabilities in [0, 1] of the output's dtype."""

    def forward(self, output, target):
        _float_target(self, output, target)
        loss, self._grad = self.backend.bce_with_logits_loss(output, target)
        return loss


class CrossEntropyLoss(Loss):
    """Softmax cross-entropy on logits with integer class labels, averaged over the N rows.

    Shape
    -----
    - output: (N, C) logits
    - target: (N,) integers in [0, C)
    """

    def forward(self, output, target):
        loss, self._grad = self.backend.softmax_cross_entropy_loss(output, target)
        return loss
