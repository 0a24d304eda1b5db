"""The layers' argument checks: the layer-API input check (``check_input``), the dtype argument
and the positive ints of a saved config."""
import numpy as np


def config_int(config, key):
    """A positive int entry of a saved ``config`` (for ``state_shapes``), else ValueError."""
    v = config.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"config: {key} must be a positive int, got {v!r}")
    return v


def check_dtype_arg(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def check_input(layer, X, name="X", features=None, dtype=None, shape=None):
    """The layer-API input check: an ndarray of the layer's dtype, 2-D, with ``features`` columns
    (or exactly ``shape``: a backward's dY against what its forward saw).

    Never casts: another dtype is a TypeError naming both.
    """
    if not isinstance(X, np.ndarray):
        # a SciPy sparse X is the data: only a first Dense reads one (its CSR kernels)
        hint = ("; a SciPy sparse input is taken by a Dense only, as the first layer"
                if type(X).__module__.startswith("scipy.sparse") else "")
        raise TypeError(
            f"{type(layer).__name__}: {name} must be a numpy.ndarray, got "
            f"{type(X).__name__}{hint}"
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
    if shape is not None and X.shape != tuple(shape):
        raise ValueError(f"{type(layer).__name__}: {name} must have shape {tuple(shape)}, "
                         f"got {X.shape}")
    return X
