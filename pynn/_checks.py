"""Scalar argument checks shared by every public entry point. Each error names the argument."""
import math

import numpy as np

# The largest layer size (in_features, out_features, num_features). BLAS takes matrix
# dimensions as C ints (scipy.linalg.cython_blas), so no wider layer could run; checking it up
# front names the argument (Dense(3, 10**400) failed inside NumPy: "Maximum allowed dimension
# exceeded").
MAX_FEATURES = 2**31 - 1


def check_real(name, value, low=None, high=None, low_open=False, high_open=False,
               message=None):
    """``value`` as a finite float within the bounds, else TypeError/ValueError naming ``name``.

    ``message`` (with a ``{value}`` field) replaces the default range message, for APIs that
    keep another library's wording (torch's "Invalid learning rate: -1.0").
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range (10**400): not finite either
        raise ValueError(f"{name} must be finite, got an int of {value.bit_length()} bits") \
            from None
    if not math.isfinite(value):
        raise ValueError(message.format(value=value) if message else
                         f"{name} must be finite, got {value}")
    for bound, is_open, below in ((low, low_open, True), (high, high_open, False)):
        if bound is None:
            continue
        outside = value < bound if below else value > bound
        if outside or (is_open and value == bound):
            if message:
                raise ValueError(message.format(value=value))
            op = (">" if is_open else ">=") if below else ("<" if is_open else "<=")
            raise ValueError(f"{name} must be {op} {bound}, got {value}")
    return value


def check_int(name, value, low=None, high=None, message=None):
    """``value`` as an int within [low, high], else TypeError/ValueError naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if low is not None and value < low:
        raise ValueError(message.format(value=value) if message else
                         f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(message.format(value=value) if message else
                         f"{name} must be <= {high}, got {value}")
    return value

