"""Normalization over each row's features: LayerNorm and RMSNorm (torch's names, arguments,
defaults and state_dict keys). Unlike BatchNorm they keep no running statistics: training and
evaluation compute the same thing, one row at a time."""
import numpy as np

from .._checks import MAX_FEATURES, check_int, check_real
from ._layer_checks import check_dtype_arg, check_input, config_int
from .module import Module
from .parameter import Parameter


def _features(normalized_shape):
    """torch's ``normalized_shape`` as the number of features: an int, or a sequence of one int
    (pynn's inputs are (batch, features), so only the last dimension can be normalized)."""
    if isinstance(normalized_shape, (list, tuple)):
        if len(normalized_shape) != 1:
            raise ValueError("normalized_shape must be one int (inputs are (batch, features)), "
                             f"got {tuple(normalized_shape)}")
        normalized_shape = normalized_shape[0]
    return check_int("normalized_shape", normalized_shape, 1, MAX_FEATURES)


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return bool(value)


class _RowNorm(Module):
    """What LayerNorm and RMSNorm share: parameters, the cache, backward, config."""

    def __init__(self, normalized_shape, eps, elementwise_affine, bias, dtype):
        super().__init__()
        self.num_features = _features(normalized_shape)
        self.normalized_shape = (self.num_features,)
        self.eps = eps
        self.elementwise_affine = _check_flag("elementwise_affine", elementwise_affine)
        self.dtype = check_dtype_arg(dtype)
        affine = self.elementwise_affine
        self.weight = (Parameter(np.ones(self.num_features, self.dtype), name="weight")
                       if affine else None)
        self.bias = (Parameter(np.zeros(self.num_features, self.dtype), name="bias")
                     if affine and bias else None)
        self._cache = None

    def _check(self, X):
        return check_input(self, X, features=self.num_features, dtype=self.dtype)

    def forward(self, X):
        X = self._check(X)
        Y, mean, invstd = self._apply(X)
        self._cache = (X, mean, invstd)
        return Y

    def infer(self, X):
        return self._apply(self._check(X))[0]

    def backward(self, dY, input_grad=True):
        """Accumulate the weight's (and bias') gradient unless frozen; dX (None with
        ``input_grad=False``)."""
        self._check_cached("_cache")
        X, mean, invstd = self._cache
        dY = check_input(self, dY, "dY", dtype=self.dtype, shape=X.shape)
        w, b = self.weight, self.bias
        dgamma = w.grad if w is not None and w.requires_grad else None
        dbeta = b.grad if b is not None and b.requires_grad else None
        if dgamma is None and dbeta is None and not input_grad:
            return None
        dX = self._grad(dY, X, mean, invstd, dgamma, dbeta)
        return dX if input_grad else None

    def extra_repr(self):
        # torch's look, normalized_shape as a tuple (config() keeps a list: JSON has no tuples)
        config = dict(self.config(), normalized_shape=self.normalized_shape)
        return ", ".join(f"{k}={v!r}" for k, v in config.items())

    def _data(self, name):
        p = self._parameters.get(name)
        return None if p is None else p.data

    #: whether the layer has a bias (LayerNorm's ``bias`` argument; RMSNorm has none)
    _has_bias_arg = False

    @classmethod
    def state_shapes(cls, config):
        shape = config.get("normalized_shape")
        if isinstance(shape, (list, tuple)) and len(shape) == 1:
            shape = shape[0]
        n = config_int({"normalized_shape": shape}, "normalized_shape")
        shapes = {}
        if config.get("elementwise_affine", True):
            shapes["weight"] = (n,)
            if cls._has_bias_arg and config.get("bias", True):
                shapes["bias"] = (n,)
        return shapes


class LayerNorm(_RowNorm):
    """Layer normalization (Ba, Kiros & Hinton 2016), torch's ``nn.LayerNorm`` over the
    features: ``Y = (X - mean) / sqrt(var + eps) * weight + bias`` with each row's mean and
    biased variance, the same in training and evaluation.

    Parameters
    ----------
    normalized_shape : int, or a sequence of one int
        The number of features (the last dimension, the only one pynn's 2-D inputs have).
    eps : float > 0, default 1e-5
    elementwise_affine : bool, default True
        Learn ``weight`` (ones at first) and, with ``bias``, ``bias`` (zeros).
    bias : bool, default True
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, normalized_shape)
    - Output: (N, normalized_shape)

    Attributes
    ----------
    weight, bias : Parameter of shape (normalized_shape,), or None
    """

    _has_bias_arg = True

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
                 dtype=np.float32):
        bias = _check_flag("bias", bias)
        super().__init__(normalized_shape, check_real("eps", eps, 0.0, low_open=True),
                         elementwise_affine, bias, dtype)
        self.bias_arg = bias  # the argument (no bias Parameter without elementwise_affine)

    def _apply(self, X):
        return self.backend.layernorm_forward(X, self._data("weight"), self._data("bias"),
                                              self.eps)

    def _grad(self, dY, X, mean, invstd, dgamma, dbeta):
        return self.backend.layernorm_backward(dY, X, self._data("weight"), mean, invstd,
                                               dgamma, dbeta)

    def config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "bias": self.bias_arg,
                "dtype": self.dtype.name}


class RMSNorm(_RowNorm):
    """Root mean square layer normalization (Zhang & Sennrich 2019), torch's ``nn.RMSNorm``
    over the features: ``Y = X / sqrt(mean(X**2) + eps) * weight`` per row.

    Parameters
    ----------
    normalized_shape : int, or a sequence of one int
    eps : float > 0 or None, default None
        None: the machine epsilon of the layer's dtype (torch's default).
    elementwise_affine : bool, default True
        Learn ``weight`` (ones at first).
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, normalized_shape)
    - Output: (N, normalized_shape)

    Attributes
    ----------
    weight : Parameter of shape (normalized_shape,), or None
    """

    def __init__(self, normalized_shape, eps=None, elementwise_affine=True, dtype=np.float32):
        if eps is not None:
            eps = check_real("eps", eps, 0.0, low_open=True)
        super().__init__(normalized_shape, eps, elementwise_affine, False, dtype)

    def _apply(self, X):
        Y, invstd = self.backend.rmsnorm_forward(X, self._data("weight"), self.eps)
        return Y, None, invstd

    def _grad(self, dY, X, mean, invstd, dgamma, dbeta):
        return self.backend.rmsnorm_backward(dY, X, self._data("weight"), invstd, dgamma)

    def config(self):
        return {"normalized_shape": list(self.normalized_shape), "eps": self.eps,
                "elementwise_affine": self.elementwise_affine, "dtype": self.dtype.name}
