"""The reference backend's sigmoid and smooth activations (GELU, SiLU, softplus, Mish):
torch's formulas in plain NumPy, in the data's dtype (numpy_ref.py's ``act_forward`` and
``act_derivative`` call them)."""
import numpy as np

from .codes import GELU, GELU_TANH, MISH, SILU, SOFTPLUS

# GELU's tanh form: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
_GELU_K = np.sqrt(2.0 / np.pi)
_GELU_KAPPA = 0.044715


def _sigmoid(x):
    # exp of a non-positive number only, so no overflow for any logit
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)


def _softplus(x):
    """log(1 + exp(x)) without overflow: max(x, 0) + log1p(exp(-|x|))."""
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _erfc(x):
    from scipy.special import erfc  # only GELU needs it: not imported with pynn
    return erfc(x).astype(x.dtype, copy=False)


def smooth_forward(z, kind, param):
    """The smooth kinds (GELU, SiLU, softplus, Mish), torch's formulas."""
    t = z.dtype.type
    if kind == GELU:
        return t(0.5) * z * _erfc(-z * t(np.sqrt(0.5)))  # x Phi(x), Phi by erfc: no cancellation
    if kind == GELU_TANH:
        w = t(_GELU_K) * (z + t(_GELU_KAPPA) * z ** 3)
        return t(0.5) * z * (t(2) * _sigmoid(t(2) * w))  # 1 + tanh(w) = 2 sigmoid(2w)
    if kind == SILU:
        return z * _sigmoid(z)
    if kind == SOFTPLUS:
        beta, threshold = t(param[0]), t(param[1])
        bz = z * beta
        return np.where(bz > threshold, z, _softplus(bz) / beta).astype(z.dtype)
    if kind == MISH:
        return z * np.tanh(_softplus(z))
    raise ValueError(f"unknown activation kind {kind}")


def smooth_derivative(x, kind, param):
    """act'(x) of the smooth kinds, from the input x."""
    t = x.dtype.type
    if kind == GELU:
        cdf = t(0.5) * _erfc(-x * t(np.sqrt(0.5)))
        pdf = np.exp(t(-0.5) * x * x) * t(1.0 / np.sqrt(2.0 * np.pi))
        return cdf + x * pdf
    if kind == GELU_TANH:
        w = t(_GELU_K) * (x + t(_GELU_KAPPA) * x ** 3)
        s = _sigmoid(t(2) * w)
        sech2 = t(4) * s * _sigmoid(t(-2) * w)  # 1 - tanh(w)^2
        return s + t(0.5) * x * sech2 * (t(_GELU_K) * (t(1) + t(3 * _GELU_KAPPA) * x * x))
    if kind == SILU:
        s = _sigmoid(x)
        return s * (t(1) + x * _sigmoid(-x))
    if kind == SOFTPLUS:
        beta, threshold = t(param[0]), t(param[1])
        bx = x * beta
        return np.where(bx > threshold, t(1), _sigmoid(bx)).astype(x.dtype)
    if kind == MISH:
        tsp = np.tanh(_softplus(x))
        return tsp + x * _sigmoid(x) * (t(1) - tsp * tsp)
    raise ValueError(f"unknown activation kind {kind}")
