"""The layer base class."""
import numpy as np

from ..backend import backend_for


class Module:
    """Base of every layer: ``forward(X) -> Y``, ``backward(dY) -> dX``, parameters, modes.

    ``backend`` is None to follow ``pynn.set_backend``, or "numpy"/"cython" to pin this layer.
    """

    def __init__(self):
        self.training = True
        self.backend_name = None

    @property
    def backend(self):
        return backend_for(self.backend_name)

    def __call__(self, X):
        return self.forward(X)

    def forward(self, X):
        raise NotImplementedError

    def backward(self, dY):
        raise NotImplementedError

    def parameters(self):
        """The layer's Parameters, in a fixed order."""
        return []

    def buffers(self):
        """Non-trainable state saved with the model (e.g. BatchNorm running statistics)."""
        return {}

    def zero_grad(self):
        for p in self.parameters():
            p.zero_grad()

    def train(self, mode=True):
        self.training = bool(mode)
        return self

    def eval(self):
        return self.train(False)

    def config(self):
        """Constructor arguments as plain values (for summaries and saved architectures)."""
        return {}

    def extra_repr(self):
        return ", ".join(f"{k}={v!r}" for k, v in self.config().items())

    def __repr__(self):
        return f"{type(self).__name__}({self.extra_repr()})"

    def _check_cached(self, what):
        if getattr(self, what, None) is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")


def check_dtype_arg(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_input(layer, X, name="X", features=None, dtype=None):
    """The layer-API input check: an ndarray of the layer's dtype, 2-D, with ``features`` columns.

    Never casts: another dtype is a TypeError naming both.
    """
    if not isinstance(X, np.ndarray):
        raise TypeError(
            f"{type(layer).__name__}: {name} must be a numpy.ndarray, got {type(X).__name__}"
        )
    if dtype is not None and X.dtype != dtype:
        raise TypeError(
            f"{type(layer).__name__}: {name} has dtype {X.dtype} but the layer's dtype is "
            f"{dtype}; convert it first (e.g. {name}.astype(np.{dtype}))"
        )
    if dtype is None and X.dtype not in (np.float32, np.float64):
        raise TypeError(
            f"{type(layer).__name__}: {name} must have dtype float32 or float64, got {X.dtype}"
        )
    if features is not None:
        if X.ndim != 2 or X.shape[1] != features:
            raise ValueError(
                f"{type(layer).__name__}: {name} must have shape (batch, {features}), "
                f"got {X.shape}"
            )
    return X
