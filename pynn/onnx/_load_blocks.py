"""How ``pynn.onnx.load`` reads issue 21's layers (Residual, a shape of the graph rather than
an operator, is in load.py):

- ONNX's operators: Gelu (approximate "none" or "tanh") -> GELU, Mish -> Mish, Softplus ->
  Softplus(beta=1, threshold=20 in float32, 40 in float64: ONNX's Softplus has no linear
  region, and above those thresholds log(1 + exp(x)) rounds to x in the dtype anyway),
  LayerNormalization (over the last axis) -> LayerNorm, RMSNormalization -> RMSNorm (a scale
  of ones without a bias: elementwise_affine=False, which export writes so);
- the expressions of _forms.py, as export writes them (and torch.onnx writes GELU's below
  opset 20): SiLU, Softplus with beta and threshold, Mish, GELU (erf, tanh, and pynn's
  float64 erfcx series), LayerNorm and RMSNorm; each form's fixed constants must be its own
  (a GELU with another sqrt 2 is not GELU).
"""
import functools

import numpy as np

from ..io._archive import ModelFileError
from . import _forms
from ._graph import DOMAINS
from ._layer_spec import match_at, spec

_SOFTPLUS_THRESHOLD = {np.dtype(np.float32): 20.0, np.dtype(np.float64): 40.0}


# ---------------------------------------------------------------------------- one operator
def read_gelu(view, i, cur, width):
    view.check_inputs(i, cur, 1)
    approximate = view.attributes(i, {"approximate": "none"})["approximate"]
    if approximate not in ("none", "tanh"):
        raise view.error(f"{view.describe(i)}: approximate={approximate!r} is not a GELU")
    return match_at(view, [spec(view, "GELU", {"approximate": approximate})], i, width)


def read_mish(view, i, cur, width):
    view.check_inputs(i, cur, 1)
    view.attributes(i, {})
    return match_at(view, [spec(view, "Mish")], i, width)


def read_softplus(view, i, cur, width):
    view.check_inputs(i, cur, 1)
    view.attributes(i, {})
    config = {"beta": 1.0, "threshold": _SOFTPLUS_THRESHOLD[view.dtype]}
    return match_at(view, [spec(view, "Softplus", config)], i, width)


def _norm_attributes(view, i):
    a = view.attributes(i, {"axis": -1, "epsilon": 1e-5, "stash_type": 1})
    if a["axis"] not in (-1, 1):
        raise view.error(f"{view.describe(i)}: normalizes from axis {a['axis']}; pynn's norms "
                         f"run over the last axis (-1) of (batch, features)")
    if not a["epsilon"] > 0:
        raise view.error(f"{view.describe(i)}: epsilon must be > 0, got {a['epsilon']}")
    return float(a["epsilon"])


def read_layernormalization(view, i, cur, width):
    view.check_inputs(i, cur, 2, 3)
    eps = _norm_attributes(view, i)
    weight = view.array(i, 1, "scale", ndims=(1,))
    node = view.nodes[i]
    bias = view.array(i, 2, "bias B", ndims=(1,)) if len(node.input) > 2 and node.input[2] \
        else None
    return _norm(view, i, width, "LayerNorm", eps, weight, bias)


def read_rmsnormalization(view, i, cur, width):
    view.check_inputs(i, cur, 2)
    eps = _norm_attributes(view, i)
    weight = view.array(i, 1, "scale", ndims=(1,))
    return _norm(view, i, width, "RMSNorm", eps, weight, None)


def _norm(view, i, width, type_name, eps, weight, bias):
    """The Match of a LayerNorm or RMSNorm ending at node i (which errors name)."""
    n = width if weight is None else weight.size
    if n is None:
        raise view.error(f"{view.describe(i)}: cannot tell the number of features (the "
                         f"input's shape does not say)")
    if width is not None and n != width:
        raise view.error(f"{view.describe(i)}: takes {n} features but the tensor before it "
                         f"has {width}")
    if weight is not None and bias is None and (weight == 1).all():
        weight = None  # what export writes for a norm without elementwise_affine
    if bias is not None and bias.size != n:
        raise view.error(f"{view.describe(i)}: scale and bias differ in length")
    config = {"normalized_shape": n, "eps": eps, "elementwise_affine": weight is not None}
    if type_name == "LayerNorm":  # (bias means nothing without the affine part: the default)
        config["bias"] = bias is not None or weight is None
    elif eps == float(np.finfo(view.dtype).eps):
        config["eps"] = None  # RMSNorm's default: the dtype's machine epsilon
    return match_at(view, [spec(view, type_name, config, weight=weight, bias=bias)], i, n)


ONE_READER = {"Gelu": read_gelu, "Mish": read_mish, "Softplus": read_softplus,
              "LayerNormalization": read_layernormalization,
              "RMSNormalization": read_rmsnormalization}


# ---------------------------------------------------------------------------- expressions
def _attributes_are(view, j, attrs):
    helper = view.onnx.helper
    have = {a.name: helper.get_attribute_value(a) for a in view.nodes[j].attribute}
    if set(have) - set(attrs):
        return False
    for name, value in attrs.items():
        got = have.get(name, value if name != "axes" else None)
        if name == "axes":
            if got is None or list(got) not in ([-1], [1]):
                return False
        elif got != value:
            return False
    return True


def _bind(view, j, inputs, tensors, captured):
    """{constant name: value} if node j reads ``inputs`` (in either order for Add and Mul),
    else None."""
    names = list(view.nodes[j].input)
    orders = [inputs]
    if view.nodes[j].op_type in _forms.COMMUTATIVE and len(inputs) == 2:
        orders.append(inputs[::-1])
    for order in orders:
        if len(names) != len(order):
            continue
        got, ok = {}, True
        for slot, (want, name) in enumerate(zip(order, names)):
            if want[0] not in "=@#":
                ok = ok and name == tensors[want]
                continue
            if name not in view.constants:
                ok = False
                continue
            try:
                value = (view.int64s(j, slot, "axes") if want == "#axes" else
                         view.scalar(j, slot, want[1:]) if want[0] == "=" else
                         view.array(j, slot, want[1:], ndims=(1, 2)).reshape(-1))
            except ModelFileError:
                ok = False
                continue
            seen = captured.get(want[1:], got.get(want[1:]))
            if want == "#axes":
                ok = ok and value in ([-1], [1])
            elif seen is not None:
                ok = ok and np.array_equal(seen, value)
            got[want[1:]] = value
        if ok:
            return got
    return None


def match_form(view, cur, steps):
    """(node ids in step order, {constant name: value}) if the nodes reading ``cur`` compute
    the form's steps and nothing else reads ``cur``, else None."""
    tensors, nodes, captured = {"x": cur}, [], {}
    for key, op_type, inputs, attrs in steps:
        known = next(tensors[n] for n in inputs if n[0] not in "=@#")
        for j in view.consumers_of(known):
            node = view.nodes[j]
            if j in nodes or node.op_type != op_type or node.domain not in DOMAINS \
                    or len(node.output) != 1 or not _attributes_are(view, j, attrs):
                continue
            got = _bind(view, j, inputs, tensors, captured)
            if got is not None:
                captured.update(got)
                nodes.append(j)
                tensors[key] = node.output[0]
                break
        else:
            return None
    if not set(view.consumers_of(cur)) <= set(nodes):
        return None
    return nodes, captured


def _fixed(view, captured, expected):
    """The form's fixed constants are its own, in the model's dtype."""
    t = view.dtype.type
    return all(float(t(v)) == float(captured[k]) for k, v in expected.items() if k in captured)


@functools.lru_cache(maxsize=1)
def _forms_to_try():
    """[(steps, layer type, GELU's approximate, fixed constants)], the longer forms first (a
    shorter one may be a longer one's start: a LayerNorm's without its weight and bias)."""
    half_one = {"one": 1.0, "half": 0.5}
    out = [(_forms.gelu_erfcx(), "GELU", "none", _forms.gelu_erfcx_constants()),
           (_forms.gelu_tanh(), "GELU", "tanh", {"kappa": _forms.GELU_TANH_KAPPA,
                                                  "k": _forms.GELU_TANH_K, **half_one}),
           (_forms.gelu_erf(), "GELU", "none", {"sqrt2": float(np.sqrt(2.0)), **half_one}),
           (_forms.silu(), "SiLU", None, {})]
    for opset in (13, 18):  # ReduceMean's axes: an attribute, then an input
        for weight, bias in ((True, True), (True, False), (False, False)):
            out.append((_forms.layernorm(opset, weight, bias), "LayerNorm", None, {}))
        for weight in (True, False):
            out.append((_forms.rmsnorm(opset, weight), "RMSNorm", None, {}))
    for dtype in (np.float64, np.float32):  # softplus as an expression or an operator
        out.append((_forms.softplus(dtype), "Softplus", None, {"one": 1.0}))
        out.append((_forms.mish(dtype), "Mish", None, {"one": 1.0}))
    return sorted(out, key=lambda form: -len(form[0]))


def read_form(view, cur, width):
    """The Match of the first form the readers of ``cur`` compute, or None."""
    for steps, type_name, approximate, fixed in _forms_to_try():
        found = match_form(view, cur, steps)
        if found is None or not _fixed(view, found[1], fixed):
            continue
        nodes, captured = found
        if type_name in ("LayerNorm", "RMSNorm"):
            m = _norm(view, nodes[-1], width, type_name, captured["eps"],
                      captured.get("weight"), captured.get("bias"))
            return m._replace(nodes=set(nodes))
        config = {"approximate": approximate} if type_name == "GELU" else {}
        if type_name == "Softplus":
            config = {"beta": captured["beta"], "threshold": captured["threshold"]}
            if config["beta"] == 0:
                raise view.error(f"{view.describe(nodes[0])}: a softplus with beta 0")
        m = match_at(view, [spec(view, type_name, config)], nodes[-1], width)
        return m._replace(nodes=set(nodes))
    return None
