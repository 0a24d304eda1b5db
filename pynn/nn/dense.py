"""The fully-connected layer."""
import numpy as np

from .._checks import check_int
from ..backend.base import activation_code
from . import init as _init
from .module import Module, check_dtype_arg, check_input
from .parameter import Parameter


class Dense(Module):
    """Fully-connected layer ``Y = X @ W.T + b``.

    Parameters
    ----------
    in_features, out_features : int
    bias : bool, default True
    init : str or callable, optional
        Weight initializer (see ``pynn.nn.init``). None picks the lecture's default from the
        activation that follows: He for the ReLU family, Xavier otherwise. A Dense on its own
        starts with Xavier; the first ``Sequential`` built around it re-draws He weights if a
        ReLU-family activation follows, unless the layer has already run ``forward``.
    seed : int or numpy.random.Generator, optional
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, in_features)
    - Output: (N, out_features)

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
    bias : Parameter of shape (out_features,) or None; initialized to zeros.
    """

    def __init__(self, in_features, out_features, bias=True, init=None, seed=None,
                 dtype=np.float32):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1)
        self.out_features = check_int("out_features", out_features, 1)
        self.dtype = check_dtype_arg(dtype)
        self.init = init
        self.seed = seed
        if init is not None:
            _init.get_initializer(init)  # validate now, not at first use
        self.weight = Parameter(np.zeros((self.out_features, self.in_features), self.dtype),
                                name="weight")
        self.bias = Parameter(np.zeros(self.out_features, self.dtype), name="bias") if bias else None
        self.reset_parameters(init if init is not None else "xavier_normal")
        # True while the weights are the provisional default draw that Sequential may replace.
        self._auto_init = init is None
        # (activation name, param) fused into this layer's kernels, set by Sequential.
        self._fused = None
        self._X = None
        self._Y = None

    def reset_parameters(self, init=None):
        """Draw new weights with ``init`` (default: the layer's), zero the bias."""
        init = _init.get_initializer(init if init is not None else (self.init or "xavier_normal"))
        self.weight.data = init(self.weight.shape, rng=self.seed, dtype=self.dtype)
        if self.bias is not None:
            self.bias.data[...] = 0

    def parameters(self):
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def fuse(self, activation, param=None):
        """Apply ``activation`` in this layer's kernel epilogue (None to unfuse)."""
        if activation is None:
            self._fused = None
        else:
            activation_code(activation, param)  # validates the name
            self._fused = (activation, param)

    def forward(self, X):
        X = check_input(self, X, features=self.in_features, dtype=self.dtype)
        self._auto_init = False  # weights in use: no container may re-draw them any more
        kind_name, param = self._fused_args()
        Y = self.backend.dense_forward(
            X, self.weight.data, None if self.bias is None else self.bias.data,
            activation=kind_name, param=param,
        )
        self._X, self._Y = X, Y
        return Y

    def backward(self, dY, need_dX=True):
        self._check_cached("_X")
        dY = check_input(self, dY, "dY", features=self.out_features, dtype=self.dtype)
        kind_name, param = self._fused_args()
        return self.backend.dense_backward(
            dY, self._X, self.weight.data, self._Y, self.weight.grad,
            None if self.bias is None else self.bias.grad,
            activation=kind_name, param=param, need_dX=need_dX,
        )

    def _fused_args(self):
        return (None, None) if self._fused is None else self._fused

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "init": self.init if isinstance(self.init, str) or self.init is None else "custom",
            "dtype": self.dtype.name,
        }
