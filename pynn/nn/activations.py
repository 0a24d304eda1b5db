"""Activation layers. Each caches its input and output; derivatives come from the output where
the math allows (ReLU, sigmoid, tanh), so a Dense or BatchNorm before one can fuse it into its
kernel; the smooth ones of today's MLP blocks (GELU, SiLU, Softplus, Mish) need their input, and
a Dense they are fused into keeps its pre-activation for them."""
from .._checks import check_real
from ..backend.codes import activation_code, derivative_from_output, keeps_preactivation
from ._layer_checks import check_input
from .module import Module


class Activation(Module):
    """Elementwise activation layer.

    Shape
    -----
    - Input: any shape, float32 or float64
    - Output: same shape and dtype
    """

    activation = "identity"

    def __init__(self):
        super().__init__()
        self._X = None
        self._Y = None

    @property
    def param(self):
        """The activation's parameter (slope, alpha; Softplus's (beta, threshold)) or None."""
        return None

    def forward(self, X):
        Y = self.infer(X)
        self._X, self._Y = X, Y
        return Y

    def backward(self, dY, input_grad=True):
        self._check_cached("_Y")
        if not input_grad:
            return None  # no parameters: nothing else to compute
        dY = check_input(self, dY, "dY", dtype=self._Y.dtype, shape=self._Y.shape)
        return self.backend.activation_backward(dY, self._X, self._Y, self.activation, self.param)

    def infer(self, X):
        X = check_input(self, X)
        return self.backend.activation_forward(X, self.activation, self.param)


def fusable(act, into="batchnorm"):
    """(activation name, parameter) when the activation layer ``act`` can run in the epilogue
    of the kernel of the op ``into`` ("dense" or "batchnorm") before it, else (None, None): its
    derivative must be computable from its output alone, or (into a Dense) it is one of the
    smooth kinds, for which the Dense keeps its pre-activation (``needs_preactivation``)."""
    a, p = act.activation, act.param
    kind, param = activation_code(a, p)
    if derivative_from_output(kind, param) or (into == "dense" and keeps_preactivation(kind)):
        return a, p
    return None, None


def needs_preactivation(act):
    """True when the Dense that ``act`` is fused into must keep its pre-activation for the
    backward (the smooth kinds: GELU, SiLU, Softplus, Mish)."""
    return keeps_preactivation(activation_code(act.activation, act.param)[0])


def is_plain_activation(module):
    """True for an Activation that computes exactly its kernel: forward, backward and infer
    are the base class's. Only such a layer may be fused into a Dense or BatchNorm kernel or
    run by an execution plan; a subclass that overrides one of them (a custom derivative, say)
    must run its own code."""
    cls = type(module)
    return isinstance(module, Activation) and all(
        getattr(cls, name) is getattr(Activation, name)
        for name in ("forward", "backward", "infer"))


class Identity(Activation):
    """v -> v."""

    activation = "identity"


class Step(Activation):
    """Binary step: 1 for v > 0, 0 otherwise (also at 0). Its gradient is zero everywhere."""

    activation = "step"


class Sigmoid(Activation):
    """v -> 1 / (1 + exp(-v)), computed without overflow for any v."""

    activation = "sigmoid"


class Tanh(Activation):
    """v -> tanh(v)."""

    activation = "tanh"


class ReLU(Activation):
    """v -> max(v, 0); derivative 0 at v = 0 (torch's convention)."""

    activation = "relu"


class Square(Activation):
    """v -> v**2."""

    activation = "square"


class LeakyReLU(Activation):
    """v -> v for v > 0, negative_slope * v otherwise.

    Parameters
    ----------
    negative_slope : float, default 0.01
    """

    activation = "leaky_relu"

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = check_real("negative_slope", negative_slope)

    @property
    def param(self):
        return self.negative_slope

    def config(self):
        return {"negative_slope": self.negative_slope}


class ELU(Activation):
    """v -> v for v > 0, alpha * (exp(v) - 1) otherwise. Clevert et al., ICLR 2016.

    Parameters
    ----------
    alpha : float, default 1.0
    """

    activation = "elu"

    def __init__(self, alpha=1.0):
        super().__init__()
        self.alpha = check_real("alpha", alpha)

    @property
    def param(self):
        return self.alpha

    def config(self):
        return {"alpha": self.alpha}


class GELU(Activation):
    """Gaussian error linear unit, v -> v Phi(v) with Phi the standard normal CDF
    (Hendrycks & Gimpel 2016), torch's ``nn.GELU``.

    Parameters
    ----------
    approximate : "none" (default) or "tanh"
        "tanh": torch's approximation ``0.5 v (1 + tanh(sqrt(2/pi) (v + 0.044715 v^3)))``.
    """

    def __init__(self, approximate="none"):
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate
        self.activation = "gelu" if approximate == "none" else "gelu_tanh"

    def config(self):
        return {"approximate": self.approximate}


class SiLU(Activation):
    """Sigmoid linear unit (swish), v -> v sigmoid(v) (Elfwing et al. 2018), torch's
    ``nn.SiLU``."""

    activation = "silu"


class Softplus(Activation):
    """v -> log(1 + exp(beta v)) / beta, and v itself where beta v > threshold (torch's
    ``nn.Softplus``; computed without overflow for any v).

    Parameters
    ----------
    beta : float, default 1.0 (nonzero)
    threshold : float, default 20.0
    """

    activation = "softplus"

    def __init__(self, beta=1.0, threshold=20.0):
        super().__init__()
        self.beta = check_real("beta", beta)
        if self.beta == 0:
            raise ValueError("beta must be nonzero (softplus divides by it)")
        self.threshold = check_real("threshold", threshold)

    @property
    def param(self):
        return (self.beta, self.threshold)

    def config(self):
        return {"beta": self.beta, "threshold": self.threshold}


class Mish(Activation):
    """v -> v tanh(softplus(v)) (Misra 2019), torch's ``nn.Mish``."""

    activation = "mish"


class Softmax(Module):
    """Row-wise softmax (numerically stable). For classification training prefer leaving the
    logits raw and using ``CrossEntropyLoss``, which fuses softmax into the loss.

    Shape
    -----
    - Input: (N, C)
    - Output: (N, C), each row sums to 1
    """

    def __init__(self):
        super().__init__()
        self._Y = None

    def forward(self, X):
        self._Y = self.infer(X)
        return self._Y

    def backward(self, dY, input_grad=True):
        self._check_cached("_Y")
        if not input_grad:
            return None
        dY = check_input(self, dY, "dY", dtype=self._Y.dtype, shape=self._Y.shape)
        return self.backend.softmax_backward(dY, self._Y)

    def infer(self, X):
        X = check_input(self, X)
        if X.ndim != 2:
            raise ValueError(f"Softmax: X must be 2-D (batch, classes), got shape {X.shape}")
        return self.backend.softmax_forward(X)
