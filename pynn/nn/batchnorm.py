"""Batch normalization over the batch axis."""
import numpy as np

from .._checks import check_int, check_real
from .module import Module, check_dtype_arg, check_input
from .parameter import Parameter


class BatchNorm(Module):
    """Batch normalization. Ioffe & Szegedy, ICML 2015.

    Training: ``Y = gamma * (X - mean) / sqrt(var + eps) + beta`` with the batch mean and biased
    variance; running statistics move by ``momentum`` towards the batch mean and the *unbiased*
    variance (torch's convention). Evaluation uses the running statistics.

    Parameters
    ----------
    num_features : int
    momentum : float in [0, 1], default 0.1
    eps : float > 0, default 1e-5
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, num_features), N >= 2 in training mode
    - Output: (N, num_features)

    Attributes
    ----------
    weight, bias : Parameter (gamma, initialized to 1; beta, initialized to 0)
    running_mean, running_var : ndarray buffers (0 and 1 at first)
    """

    def __init__(self, num_features, momentum=0.1, eps=1e-5, dtype=np.float32):
        super().__init__()
        self.num_features = check_int("num_features", num_features, 1)
        self.momentum = check_real("momentum", momentum, 0.0, 1.0,
                                   message="momentum must be a number in [0, 1], got {value}")
        self.eps = check_real("eps", eps, 0.0, low_open=True)
        self.dtype = check_dtype_arg(dtype)
        self.weight = Parameter(np.ones(self.num_features, self.dtype), name="weight")
        self.bias = Parameter(np.zeros(self.num_features, self.dtype), name="bias")
        self.running_mean = np.zeros(self.num_features, self.dtype)
        self.running_var = np.ones(self.num_features, self.dtype)
        self._cache = None

    def parameters(self):
        return [self.weight, self.bias]

    def buffers(self):
        return {"running_mean": self.running_mean, "running_var": self.running_var}

    def forward(self, X):
        X = check_input(self, X, features=self.num_features, dtype=self.dtype)
        if self.training:
            if X.shape[0] < 2:
                raise ValueError(
                    f"BatchNorm: expected more than 1 value per feature in training mode, got "
                    f"input of shape {X.shape} (use eval() to normalize single samples)"
                )
            Y, mean, invstd = self.backend.batchnorm_forward_train(
                X, self.weight.data, self.bias.data, self.running_mean, self.running_var,
                self.momentum, self.eps,
            )
            self._cache = (X, mean, invstd)
        else:
            Y = self.backend.batchnorm_forward_eval(
                X, self.weight.data, self.bias.data, self.running_mean, self.running_var, self.eps
            )
            # Statistics are not needed unless backward runs in eval mode (rare): derived there.
            self._cache = (X, None, None)
        return Y

    def backward(self, dY):
        self._check_cached("_cache")
        X, mean, invstd = self._cache
        dY = check_input(self, dY, "dY", features=self.num_features, dtype=self.dtype)
        if self.training:
            return self.backend.batchnorm_backward(
                dY, X, self.weight.data, mean, invstd, self.weight.grad, self.bias.grad
            )
        # In eval mode the layer is affine with the running statistics (constants):
        # dX = dY * gamma * invstd.
        mean = self.running_mean.astype(np.float64)
        invstd = 1.0 / np.sqrt(self.running_var.astype(np.float64) + self.eps)
        xhat = (X - mean) * invstd
        self.bias.grad += dY.sum(axis=0, dtype=np.float64).astype(self.dtype)
        self.weight.grad += (dY * xhat).sum(axis=0).astype(self.dtype)
        return (dY * (self.weight.data * invstd)).astype(self.dtype)

    def config(self):
        return {
            "num_features": self.num_features,
            "momentum": self.momentum,
            "eps": self.eps,
            "dtype": self.dtype.name,
        }
