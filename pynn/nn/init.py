"""Weight initialization. Each initializer returns a new (fan_out, fan_in) array.

Seeded by a ``numpy.random.Generator`` (or an int seed; None follows ``pynn.manual_seed``);
the defaults follow the lecture: He for the ReLU family, Xavier/Glorot otherwise.
"""
import numpy as np

from .._random import rng as _rng


def _fans(shape):
    if len(shape) != 2:
        raise ValueError(f"shape must be (fan_out, fan_in), got {shape}")
    fan_out, fan_in = shape
    return fan_in, fan_out


def scaled_normal(shape, scale=0.01, rng=None, dtype=np.float32):
    """``scale * N(0, 1)``: the plain small-random init."""
    return (scale * _rng(rng).standard_normal(shape)).astype(dtype)


def xavier_normal(shape, rng=None, dtype=np.float32):
    """N(0, 2 / (fan_in + fan_out)). Glorot & Bengio, AISTATS 2010."""
    fan_in, fan_out = _fans(shape)
    std = np.sqrt(2.0 / max(1, fan_in + fan_out))
    return (std * _rng(rng).standard_normal(shape)).astype(dtype)


def xavier_uniform(shape, rng=None, dtype=np.float32):
    """U(-a, a), a = sqrt(6 / (fan_in + fan_out)). Glorot & Bengio, AISTATS 2010."""
    fan_in, fan_out = _fans(shape)
    bound = np.sqrt(6.0 / max(1, fan_in + fan_out))
    return _rng(rng).uniform(-bound, bound, shape).astype(dtype)


def he_normal(shape, rng=None, dtype=np.float32):
    """N(0, 2 / fan_in). He et al., ICCV 2015 ("Delving Deep into Rectifiers")."""
    fan_in, _ = _fans(shape)
    std = np.sqrt(2.0 / max(1, fan_in))
    return (std * _rng(rng).standard_normal(shape)).astype(dtype)


def he_uniform(shape, rng=None, dtype=np.float32):
    """U(-a, a), a = sqrt(6 / fan_in). He et al., ICCV 2015."""
    fan_in, _ = _fans(shape)
    bound = np.sqrt(6.0 / max(1, fan_in))
    return _rng(rng).uniform(-bound, bound, shape).astype(dtype)


def zeros(shape, rng=None, dtype=np.float32):
    """All zeros (Keras's "zeros", torch's ``nn.init.zeros_``): for weights that are set
    right after (pynn.sklearn sets scikit-learn's draw), or a layer that must start silent."""
    _fans(shape)
    return np.zeros(shape, dtype)


INITIALIZERS = {
    "scaled_normal": scaled_normal,
    "normal": scaled_normal,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "kaiming_normal": he_normal,
    "kaiming_uniform": he_uniform,
    "zeros": zeros,
}


def get_initializer(init):
    """An initializer from its name or a callable ``f(shape, rng=..., dtype=...)``."""
    if callable(init):
        return init
    try:
        return INITIALIZERS[init]
    except (KeyError, TypeError):
        raise ValueError(
            f"init must be one of {sorted(INITIALIZERS)} or a callable, got {init!r}"
        ) from None
