"""The fully-connected layer."""
import numpy as np

from .._checks import MAX_FEATURES, check_int
from ..backend._sparse import is_sparse
from . import init as _init
from ._layer_checks import check_dtype_arg, check_input, config_int
from .module import Module
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
    - Input: (N, in_features): an ndarray, or a SciPy sparse matrix or array of the layer's
      dtype (scikit-learn's sparse inputs: the data, so the first layer). A sparse X is read
      from its CSR arrays, never densified, and gets no gradient (``backward`` returns None).
    - Output: (N, out_features)

    Attributes
    ----------
    weight : Parameter of shape (out_features, in_features)
    bias : Parameter of shape (out_features,) or None; initialized to zeros.
    """

    def __init__(self, in_features, out_features, bias=True, init=None, seed=None,
                 dtype=np.float32):
        super().__init__()
        self.in_features = check_int("in_features", in_features, 1, MAX_FEATURES)
        self.out_features = check_int("out_features", out_features, 1, MAX_FEATURES)
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
        self._X = None
        self._Y = None

    def reset_parameters(self, init=None):
        """Draw new weights with ``init`` (default: the layer's), zero the bias."""
        init = _init.get_initializer(init if init is not None else (self.init or "xavier_normal"))
        self.weight.data = init(self.weight.shape, rng=self.seed, dtype=self.dtype)
        if self.bias is not None:
            self.bias.data[...] = 0

    # The two functional halves. They keep nothing on the layer, so a container can run this
    # Dense with an activation fused into its epilogue (its own execution detail) while the
    # layer itself stays ``X @ W.T + b`` for everyone else who holds it.
    def _apply(self, X, activation=None, param=None, keep_preactivation=False):
        """act(X @ W.T + b) for a validated X; stores nothing. With ``keep_preactivation``
        (an activation whose derivative needs it): (Y, Z), Z = X @ W.T + b."""
        if is_sparse(X):
            return self._apply_sparse(X, activation, param, keep_preactivation)
        X = check_input(self, X, features=self.in_features, dtype=self.dtype)
        if self._auto_init:
            self._auto_init = False  # weights in use: no container may re-draw them any more
        Z = (np.empty((X.shape[0], self.out_features), self.dtype) if keep_preactivation
             else None)
        Y = self.backend.dense_forward(
            X, self.weight.data, None if self.bias is None else self.bias.data,
            activation=activation, param=param, preact_out=Z,
        )
        return (Y, Z) if keep_preactivation else Y

    def _apply_sparse(self, X, activation, param, keep_preactivation):
        """``_apply`` for sparse data: the CSR product with the activation in the same call
        (the kernel the compiled step and the inference program run too)."""
        if self._auto_init:
            self._auto_init = False
        b = None if self.bias is None else self.bias.data
        Z = (np.empty((X.shape[0], self.out_features), self.dtype) if keep_preactivation
             else None)
        Y = self.backend.sparse_dense_forward(X, self.weight.data, b, activation=activation,
                                              param=param, preact_out=Z)
        return (Y, Z) if keep_preactivation else Y

    def _grad_sparse(self, dY, X, Y, activation, param, Z):
        """``_grad`` for sparse data: dZ through the activation (from Z when kept, else from
        the output: the kinds fused without Z take their derivative from it), dW and db from
        the CSR product; no dX."""
        dW = self.weight.grad if self.weight.requires_grad else None
        db = self.bias.grad if self.bias is not None and self.bias.requires_grad else None
        if dW is None and db is None:
            return None
        if activation is not None:
            dY = self.backend.activation_backward(dY, Z if Z is not None else Y, Y, activation,
                                                  param)
        self.backend.sparse_dense_backward(dY, X, dW, db)
        return None

    def _grad(self, dY, X, Y, activation=None, param=None, input_grad=True, Z=None):
        """Accumulate dW, db (unless frozen) from the forward's X and output Y (and its kept
        pre-activation Z, for an activation that needs it); dX or None."""
        dY = check_input(self, dY, "dY", features=self.out_features, dtype=self.dtype)
        if is_sparse(X):
            return self._grad_sparse(dY, X, Y, activation, param, Z)
        dW = self.weight.grad if self.weight.requires_grad else None
        db = self.bias.grad if self.bias is not None and self.bias.requires_grad else None
        if dW is None and db is None and not input_grad:
            return None  # frozen and first: nothing to compute
        return self.backend.dense_backward(
            dY, X, self.weight.data, Y, dW, db, activation=activation, param=param,
            need_dX=input_grad, Z=Z,
        )

    def forward(self, X):
        Y = self._apply(X)
        self._X, self._Y = X, Y
        return Y

    def backward(self, dY, input_grad=True):
        """Accumulate the weight and bias gradients; return dX (None with ``input_grad=False``,
        which skips the dX GEMM, and for a sparse X: the data has no gradient)."""
        self._check_cached("_X")
        return self._grad(dY, self._X, self._Y, input_grad=input_grad)

    def infer(self, X):
        return self._apply(X)

    def config(self):
        return {
            "in_features": self.in_features,
            "out_features": self.out_features,
            "bias": self.bias is not None,
            "init": self.init if isinstance(self.init, str) or self.init is None else "custom",
            "dtype": self.dtype.name,
        }

    @classmethod
    def from_config(cls, config):
        # A saved init may be "custom" (a callable, which is never saved): build with the
        # default, the weights come from the file anyway, and keep the name for the record.
        config = dict(config)
        init = config.pop("init", None)
        layer = cls(init=init if init in _init.INITIALIZERS else None, **config)
        layer.init = init
        return layer

    @classmethod
    def state_shapes(cls, config):
        i, o = config_int(config, "in_features"), config_int(config, "out_features")
        shapes = {"weight": (o, i)}
        if config.get("bias", True):
            shapes["bias"] = (o,)
        return shapes
