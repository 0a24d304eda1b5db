"""How ``pynn.onnx.export`` writes issue 21's layers (Residual, being a container, is in
export.py). Each picks ONNX's own operator where the opset has it and ONNX Runtime runs it
in the model's dtype, else the expression of _forms.py:

=========  ======================================================================
GELU       float32: Gelu(approximate) from opset 20, else x * (1 + erf(x / sqrt 2)) / 2
           or the tanh expression; float64: the tanh expression (Gelu's own body holds
           float32 constants: 5e-10 off), and the exact GELU as x * Phi(x) with erfc from
           a Chebyshev series of erfcx (no float64 Erf kernel)
SiLU       Mul(X, Sigmoid(X))
Softplus   Where(beta X > threshold, X, softplus(beta X) / beta): pynn's (torch's)
           definition with its linear region; softplus is ONNX's Softplus in float32 and
           max(z, 0) + log(1 + exp(-|z|)) in float64 (no float64 Softplus kernel)
Mish       float32: Mish from opset 18; else X * tanh(softplus(X)) (Mish's body is a
           Softplus: no float64 kernel)
LayerNorm  float32: LayerNormalization(axis=-1) from opset 17 (weight as its scale, ones
           without elementwise_affine); float64 or before 17: the expression with the
           exact eps (an attribute would round 1e-5 to float32)
RMSNorm    float32: RMSNormalization(axis=-1) from opset 23; else the expression
=========  ======================================================================
"""
import numpy as np

from . import _forms

LAYERNORMALIZATION_OPSET = 17
RMSNORMALIZATION_OPSET = 23
GELU_OPSET = 20
MISH_OPSET = 18


def emit_gelu(b, label, layer):
    if layer.approximate == "tanh":
        if b.dtype == np.float32 and b.opset >= GELU_OPSET:
            b.then("Gelu", label, approximate="tanh")
        else:
            _forms.emit(b, label, _forms.gelu_tanh(),
                        {"kappa": _forms.GELU_TANH_KAPPA, "k": _forms.GELU_TANH_K, "one": 1.0,
                         "half": 0.5})
    elif b.dtype == np.float64:
        _forms.emit(b, label, _forms.gelu_erfcx(), _forms.gelu_erfcx_constants())
    elif b.opset >= GELU_OPSET:
        b.then("Gelu", label)
    else:
        _forms.emit(b, label, _forms.gelu_erf(),
                    {"sqrt2": float(np.sqrt(2.0)), "one": 1.0, "half": 0.5})


def emit_silu(b, label, layer):
    _forms.emit(b, label, _forms.silu(), {})


def emit_softplus(b, label, layer):
    _forms.emit(b, label, _forms.softplus(b.dtype),
                {"beta": layer.beta, "threshold": layer.threshold, "one": 1.0})


def emit_mish(b, label, layer):
    if b.dtype == np.float32 and b.opset >= MISH_OPSET:
        b.then("Mish", label)
    else:
        _forms.emit(b, label, _forms.mish(b.dtype), {"one": 1.0})


def _affine(b, label, layer):
    """The layer's weight and bias data (None where it has none)."""
    weight = None if layer.weight is None else layer.weight.data
    bias = None if getattr(layer, "bias", None) is None else layer.bias.data
    return weight, bias


def emit_layernorm(b, label, layer):
    weight, bias = _affine(b, label, layer)
    if b.dtype == np.float32 and b.opset >= LAYERNORMALIZATION_OPSET:
        scale = np.ones(layer.num_features) if weight is None else weight
        inputs = [b.const(f"{label}.weight", scale)]
        if bias is not None:
            inputs.append(b.const(f"{label}.bias", bias))
        b.then("LayerNormalization", label, *inputs, axis=-1, epsilon=float(layer.eps))
        return
    _forms.emit(b, label, _forms.layernorm(b.opset, weight is not None, bias is not None),
                {"eps": layer.eps, "weight": weight, "bias": bias})


def emit_rmsnorm(b, label, layer):
    weight, _ = _affine(b, label, layer)
    eps = float(np.finfo(b.dtype).eps) if layer.eps is None else layer.eps
    if b.dtype == np.float32 and b.opset >= RMSNORMALIZATION_OPSET:
        scale = np.ones(layer.num_features) if weight is None else weight
        b.then("RMSNormalization", label, b.const(f"{label}.weight", scale), axis=-1,
               epsilon=eps)
        return
    _forms.emit(b, label, _forms.rmsnorm(b.opset, weight is not None),
                {"eps": eps, "weight": weight})
