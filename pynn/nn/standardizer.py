"""Standardizer: scale features to zero mean and unit variance; fitted on the training data,
then also a layer (first in a Sequential, saved with the model). ``pynn.data`` re-exports it."""
import numpy as np

from ..backend._arrays import as_array
from ._layer_checks import check_dtype_arg, check_input, config_int
from .module import Module


class Standardizer(Module):
    """Scale features to zero mean and unit variance: ``(X - mean) / scale``.

    Fit it on the training data only (the lecture's first rule), then apply it to everything.
    It is also a layer: put a fitted Standardizer first in a ``Sequential`` and the saved model
    takes raw features (``pynn.save`` stores ``mean`` and ``scale``). Constant features get
    ``scale = 1``.

    Parameters
    ----------
    num_features : int, optional
        Known up front (e.g. when loading); otherwise set by ``fit``.
    scale_floor : float in [0, 1], default 0
        Divide each feature by ``max(std, scale_floor * largest std)``. 0 is plain per-feature
        standardization. For pixels (features in one unit) 1 gives one common scale: a border
        pixel that is almost always 0 then keeps small values instead of turning its rare
        strokes into z-scores of 50 and more, which the network would overfit.
    dtype : float32 (default) or float64

    Shape
    -----
    - Input: (N, num_features)
    - Output: (N, num_features)
    """

    def __init__(self, num_features=None, scale_floor=0.0, dtype=np.float32):
        super().__init__()
        self.dtype = check_dtype_arg(dtype)
        if isinstance(scale_floor, bool) or not isinstance(
            scale_floor, (int, float, np.floating)
        ) or not 0.0 <= scale_floor <= 1.0:
            raise ValueError(f"scale_floor must be a number in [0, 1], got {scale_floor!r}")
        self.scale_floor = float(scale_floor)
        self.num_features = None
        # buffers (saved with a model); None until fitted
        self.register_buffer("mean", None)
        self.register_buffer("scale", None)
        if num_features is not None:
            if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) \
                    or num_features < 1:
                raise ValueError(f"num_features must be a positive int, got {num_features!r}")
            self.num_features = int(num_features)
            self.mean = np.zeros(self.num_features, self.dtype)
            self.scale = np.ones(self.num_features, self.dtype)

    def fit(self, X):
        """Learn per-feature mean and standard deviation from ``X`` (computed in float64)."""
        X = as_array("X", X, np.float64, ndim=2)
        if X.shape[0] == 0:
            raise ValueError("X is empty; cannot fit a Standardizer on no samples")
        std = X.std(axis=0)
        if self.scale_floor > 0:
            std = np.maximum(std, self.scale_floor * std.max())
        std[std < 1e-12] = 1.0  # a constant feature stays as it is (shifted to 0)
        self.num_features = X.shape[1]
        self.mean = X.mean(axis=0).astype(self.dtype)
        self.scale = std.astype(self.dtype)
        return self

    def transform(self, X):
        """Standardized ``X`` as a new array of the Standardizer's dtype."""
        self._check_fitted()
        X = as_array("X", X, self.dtype, ndim=2)
        if X.shape[1] != self.num_features:
            raise ValueError(
                f"X must have {self.num_features} features (as in fit), got {X.shape[1]}"
            )
        return (X - self.mean) / self.scale

    def fit_transform(self, X):
        return self.fit(X).transform(X)

    def inverse_transform(self, X):
        self._check_fitted()
        X = as_array("X", X, self.dtype, ndim=2)
        return X * self.scale + self.mean

    def _check_fitted(self):
        if self.mean is None:
            raise RuntimeError("Standardizer is not fitted; call fit(X_train) first")

    # -- layer API: the same arithmetic as transform, on arrays of the model's dtype
    def forward(self, X):
        self._check_fitted()
        X = check_input(self, X, features=self.num_features, dtype=self.dtype)
        return (X - self.mean) / self.scale

    def backward(self, dY, input_grad=True):
        return dY / self.scale if input_grad else None

    infer = forward  # reads mean and scale only

    def config(self):
        return {"num_features": self.num_features, "scale_floor": self.scale_floor,
                "dtype": self.dtype.name}

    @classmethod
    def state_shapes(cls, config):
        if config.get("num_features") is None:
            return {}
        n = config_int(config, "num_features")
        return {"mean": (n,), "scale": (n,)}
