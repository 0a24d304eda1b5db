"""Which ONNX operators become which pynn layer when ``pynn.onnx.load`` reads a graph.

``match(view, tensor, width)`` looks at the nodes that read the chain's current tensor and
returns a ``Match``: the pynn layers they compute (each as a pynn.io architecture entry and its
state), the tensor after them, the nodes used and the width after them. Read:

- Gemm (alpha, beta, transB; transA is refused), MatMul followed or not by an Add of a bias
  -> Dense; BatchNormalization (inference) -> BatchNorm with its running statistics
- Relu, LeakyRelu, Elu, Sigmoid, Tanh, Identity, Softmax (the last axis) -> the activation
- Dropout (inference) and Flatten(axis=1) of the 2-D input -> nothing
- what ``pynn.onnx.export`` writes: Sub and/or Div by constant rows -> Standardizer,
  Cast(Greater(X, 0)) -> Step, Mul(X, X) -> Square, and the float64 Where forms of LeakyReLU
  and ELU
- issue 21's layers (GELU, SiLU, Softplus, Mish, LayerNorm, RMSNorm): _load_blocks.py; the
  residual skip (x + block(x)): load.py.

Anything else names its node and operator in a ModelFileError.
"""
import numpy as np

from . import _load_blocks as blocks
from ._common import ELEM_TYPES
from ._graph import DOMAINS
from ._layer_spec import Match, spec as _spec

def _takes(view, i, width, n):
    if width is not None and n != width:
        raise view.error(f"{view.describe(i)}: takes {n} features but the tensor before it has "
                         f"{width}")


def _row(view, i, array, n, what):
    """A bias-like constant of shape (), (1,), (n,), (1, n) or (1, 1) as a float64 row of n."""
    if array.shape not in ((), (1,), (n,), (1, n), (1, 1)):
        raise view.error(f"{view.describe(i)}: {what} has shape {array.shape}, not one row of "
                         f"{n} values")
    return np.broadcast_to(array.astype(np.float64).reshape(-1), (n,))


def _dense(view, W, bias):
    """A Dense layer from W (out, in) and a bias row (or None), both float64 or the dtype."""
    dtype = view.dtype
    return _spec(view, "Dense", {"in_features": W.shape[1], "out_features": W.shape[0],
                                 "bias": bias is not None},
                 weight=np.ascontiguousarray(W, dtype),
                 bias=None if bias is None else np.ascontiguousarray(bias, dtype))


def _out(view, i):
    return view.nodes[i].output[0]


# ---------------------------------------------------------------------------- Dense
def _gemm(view, i, cur, width):
    view.check_inputs(i, cur, 2, 3)
    a = view.attributes(i, {"alpha": 1.0, "beta": 1.0, "transA": 0, "transB": 0})
    if a["transA"]:
        raise view.error(f"{view.describe(i)}: transA=1 (the batch along the second axis) is "
                         f"not a layer pynn has")
    B = view.array(i, 1, "weight B", ndims=(2,))
    W = B if a["transB"] else B.T
    if a["alpha"] != 1.0:
        W = W.astype(np.float64) * a["alpha"]
    _takes(view, i, width, W.shape[1])
    node, bias = view.nodes[i], None
    if len(node.input) > 2 and node.input[2]:
        C = view.array(i, 2, "bias C", ndims=(0, 1, 2))
        bias = _row(view, i, C, W.shape[0], "bias C") * a["beta"]
    return Match([_dense(view, W, bias)], _out(view, i), {i}, W.shape[0])


def _matmul(view, i, cur, width):
    view.check_inputs(i, cur, 2)
    view.attributes(i, {})
    W = view.array(i, 1, "weight B", ndims=(2,)).T
    _takes(view, i, width, W.shape[1])
    out, nodes, bias = _out(view, i), {i}, None
    after = view.consumers_of(out)
    if len(after) == 1 and _is(view, after[0], "Add"):
        j = after[0]
        others = [n for n in view.nodes[j].input if n != out]
        if len(view.nodes[j].input) == 2 and len(others) == 1 and others[0] in view.constants:
            view.attributes(j, {})
            slot = list(view.nodes[j].input).index(others[0])
            bias = _row(view, j, view.array(j, slot, "bias", ndims=(0, 1, 2)), W.shape[0],
                        "bias")
            nodes.add(j)
            out = _out(view, j)
    return Match([_dense(view, W, bias)], out, nodes, W.shape[0])


def _is(view, i, op_type):
    node = view.nodes[i]
    return node.op_type == op_type and node.domain in DOMAINS


# ---------------------------------------------------------------------------- BatchNorm
def _batchnorm(view, i, cur, width):
    view.check_inputs(i, cur, 5)
    a = view.attributes(i, {"epsilon": 1e-5, "momentum": 0.9, "training_mode": 0,
                            "spatial": 1})
    if a["training_mode"] or a["spatial"] != 1:
        raise view.error(f"{view.describe(i)}: only inference-mode BatchNormalization over the "
                         f"features (training_mode=0, spatial=1) is a pynn BatchNorm")
    gamma, beta, mean, var = (view.array(i, k, what, ndims=(1,)) for k, what in
                              enumerate(("scale", "bias B", "mean", "var"), start=1))
    n = gamma.size
    if not beta.size == mean.size == var.size == n:
        raise view.error(f"{view.describe(i)}: scale, B, mean and var differ in length")
    _takes(view, i, width, n)
    if (var < 0).any():
        raise view.error(f"{view.describe(i)}: a negative running variance")
    if not a["epsilon"] > 0 or not 0 <= a["momentum"] <= 1:
        raise view.error(f"{view.describe(i)}: epsilon must be > 0 and momentum in [0, 1], got "
                         f"{a['epsilon']} and {a['momentum']}")
    # ONNX moves the statistics by (1 - momentum) * batch; pynn (torch) by momentum * batch.
    # The attribute is a float32: rounded to its 7 digits, 0.9 gives 0.1, not 0.10000002.
    config = {"num_features": n, "eps": a["epsilon"],
              "momentum": float(f"{1.0 - a['momentum']:.7g}")}
    spec = _spec(view, "BatchNorm", config, weight=gamma, bias=beta, running_mean=mean,
                 running_var=var, num_batches_tracked=np.zeros((), np.int64))
    return Match([spec], _out(view, i), {i}, n)


# ---------------------------------------------------------------------------- activations
def _activation(type_name, attrs=None, config=None):
    def read(view, i, cur, width):
        view.check_inputs(i, cur, 1)
        a = view.attributes(i, attrs or {})
        cfg = {key: float(a[attr]) for key, attr in (config or {}).items()}
        return Match([_spec(view, type_name, cfg)], _out(view, i), {i}, width)
    return read


def _softmax(view, i, cur, width):
    view.check_inputs(i, cur, 1)
    # before opset 13 the default axis was 1; on a 2-D tensor both mean the last axis
    a = view.attributes(i, {"axis": -1 if view.opset >= 13 else 1})
    if a["axis"] not in (-1, 1):
        raise view.error(f"{view.describe(i)}: softmax over axis {a['axis']}; pynn's Softmax "
                         f"runs over the last axis")
    return Match([_spec(view, "Softmax")], _out(view, i), {i}, width)


def _step(view, i, cur, width):
    """Cast(Greater(X, 0), to=the model's type): pynn's Step."""
    view.check_inputs(i, cur, 2)
    view.attributes(i, {})
    if view.scalar(i, 1, "threshold") != 0.0:
        raise view.error(f"{view.describe(i)}: pynn reads Greater only as Step's X > 0")
    after = view.consumers_of(_out(view, i))
    if len(after) != 1 or not _is(view, after[0], "Cast"):
        raise view.error(f"{view.describe(i)}: pynn reads Greater only as Step's X > 0, "
                         f"followed by a Cast to the model's type")
    j = after[0]
    a = view.attributes(j, {"to": 0, "saturate": 1})
    if a["to"] != ELEM_TYPES[view.dtype]:
        raise view.error(f"{view.describe(j)}: casts to another type than the model's")
    return Match([_spec(view, "Step")], _out(view, j), {i, j}, width)


def _square(view, i, cur, width):
    node = view.nodes[i]
    if list(node.input) != [cur, cur]:
        raise view.error(f"{view.describe(i)}: pynn reads Mul only as Square, Mul(X, X)")
    view.attributes(i, {})
    return Match([_spec(view, "Square")], _out(view, i), {i}, width)


# ---------------------------------------------------------------------------- Standardizer
def _standardizer(view, i, cur, width):
    """Sub(X, mean) then Div(., scale), or either alone: a Standardizer, (X - mean) / scale."""
    view.check_inputs(i, cur, 2)
    view.attributes(i, {})
    sub = i if _is(view, i, "Sub") else None
    div = i if sub is None else None
    if sub is not None:
        after = view.consumers_of(_out(view, i))
        if len(after) == 1 and _is(view, after[0], "Div"):
            div = after[0]
            view.check_inputs(div, _out(view, i), 2)
            view.attributes(div, {})
    mean = None if sub is None else view.array(sub, 1, "mean", ndims=(0, 1, 2))
    scale = None if div is None else view.array(div, 1, "scale", ndims=(0, 1, 2))
    n = width
    if n is None:  # the constants tell the width, unless they are single values
        n = max(a.size for a in (mean, scale) if a is not None)
        if n == 1:
            raise view.error(f"{view.describe(i)}: cannot tell the number of features (the "
                             f"input's shape does not say)")
    mean = np.zeros(n) if mean is None else _row(view, sub, mean, n, "mean")
    scale = np.ones(n) if scale is None else _row(view, div, scale, n, "scale")
    if (scale == 0).any():
        raise view.error(f"{view.describe(div)}: divides by zero")
    nodes = {k for k in (sub, div) if k is not None}
    spec = _spec(view, "Standardizer", {"num_features": n, "scale_floor": 0.0},
                 mean=mean.astype(view.dtype), scale=scale.astype(view.dtype))
    return Match([spec], _out(view, sub if div is None else div), nodes, n)


# ---------------------------------------------------------------------------- no layer
def _dropout(view, i, cur, width):
    view.check_inputs(i, cur, 1, 3)
    view.attributes(i, {"seed": 0, "ratio": 0.5})
    node = view.nodes[i]
    if len(node.input) == 3 and node.input[2]:
        raise view.error(f"{view.describe(i)}: a training_mode input; pynn reads Dropout "
                         f"only as the inference-time identity")
    return Match([], _out(view, i), {i}, width)


def _flatten(view, i, cur, width):
    view.check_inputs(i, cur, 1)
    if view.attributes(i, {"axis": 1})["axis"] != 1:
        raise view.error(f"{view.describe(i)}: pynn reads Flatten only with axis=1 (of the 2-D "
                         f"input: the identity)")
    return Match([], _out(view, i), {i}, width)


# ---------------------------------------------------------------------------- float64 forms
def _by_op(view, ids):
    return {view.nodes[j].op_type: j for j in ids}


def _check_where(view, nodes, cur, negative):
    """Where(Greater(X, 0), X, negative) with the Greater and the Where of ``nodes``."""
    g, w = nodes["Greater"], nodes["Where"]
    view.check_inputs(g, cur, 2)
    if view.scalar(g, 1, "threshold") != 0.0 or \
            list(view.nodes[w].input) != [_out(view, g), cur, negative]:
        raise view.error(f"{view.describe(w)}: pynn reads Where only as Where(X > 0, X, ...) of "
                         f"LeakyReLU or ELU")
    for j in (g, w):
        view.attributes(j, {})


def _constant_operand(view, j, other):
    """(slot of the constant, slot of ``other``) of a two-input node j, either order."""
    names = list(view.nodes[j].input)
    if len(names) != 2 or other not in names or names[0] == names[1]:
        raise view.error(f"{view.describe(j)}: expected a constant and {other!r} as inputs")
    return 1 - names.index(other), names.index(other)


def _where_leaky_relu(view, ids, cur, width):
    """Where(Greater(X, 0), X, Mul(X, slope)): pynn's float64 LeakyReLU."""
    nodes = _by_op(view, ids)
    m = nodes["Mul"]
    _check_where(view, nodes, cur, _out(view, m))
    slot, _ = _constant_operand(view, m, cur)
    view.attributes(m, {})
    slope = view.scalar(m, slot, "negative_slope")
    spec = _spec(view, "LeakyReLU", {"negative_slope": slope})
    return Match([spec], _out(view, nodes["Where"]), set(ids), width)


def _where_elu(view, ids, cur, width):
    """Where(Greater(X, 0), X, Mul(Sub(Exp(Min(X, 0)), 1), alpha)): pynn's float64 ELU."""
    nodes = _by_op(view, ids)
    low = nodes["Min"]
    view.check_inputs(low, cur, 2)
    if view.scalar(low, 1, "zero") != 0.0:
        raise view.error(f"{view.describe(low)}: pynn reads Min only as ELU's min(X, 0)")
    chain, t = [low], _out(view, low)
    for op in ("Exp", "Sub", "Mul"):
        after = view.consumers_of(t)
        if len(after) != 1 or not _is(view, after[0], op):
            raise view.error(f"{view.describe(low)}: not ELU's Exp, Sub, Mul after min(X, 0)")
        chain.append(after[0])
        t = _out(view, after[0])
    exp, sub, mul = chain[1:]
    view.check_inputs(exp, _out(view, low), 1)
    view.check_inputs(sub, _out(view, exp), 2)
    if view.scalar(sub, 1, "one") != 1.0:
        raise view.error(f"{view.describe(sub)}: pynn reads Sub here only as ELU's exp(v) - 1")
    slot, _ = _constant_operand(view, mul, _out(view, sub))
    alpha = view.scalar(mul, slot, "alpha")
    _check_where(view, nodes, cur, t)
    for j in chain:
        view.attributes(j, {})
    spec = _spec(view, "ELU", {"alpha": alpha})
    return Match([spec], _out(view, nodes["Where"]), set(ids) | set(chain), width)


# ---------------------------------------------------------------------------- dispatch
_ONE_READER = {
    "Gemm": _gemm, "MatMul": _matmul, "BatchNormalization": _batchnorm,
    "Relu": _activation("ReLU"), "Sigmoid": _activation("Sigmoid"),
    "Tanh": _activation("Tanh"), "Identity": _activation("Identity"),
    "LeakyRelu": _activation("LeakyReLU", {"alpha": 0.01}, {"negative_slope": "alpha"}),
    "Elu": _activation("ELU", {"alpha": 1.0}, {"alpha": "alpha"}),
    "Softmax": _softmax, "Greater": _step, "Mul": _square, "Sub": _standardizer,
    "Div": _standardizer, "Dropout": _dropout, "Flatten": _flatten, **blocks.ONE_READER,
}
# several nodes reading the chain's tensor: the float64 forms export writes
_MANY_READERS = {("Greater", "Mul", "Where"): _where_leaky_relu,
                 ("Greater", "Min", "Where"): _where_elu}


def _refuse_unsupported(view, j):
    node = view.nodes[j]
    if node.domain not in DOMAINS or node.op_type not in _ONE_READER:
        raise view.error(f"{view.describe(j)}: operator {node.op_type} is not supported "
                         f"(pynn.onnx loads Gemm, MatMul, Add, BatchNormalization, Relu, "
                         f"LeakyRelu, Elu, Sigmoid, Tanh, Softmax, Identity, Dropout, Flatten, "
                         f"Gelu, Mish, Softplus, LayerNormalization, RMSNormalization, a "
                         f"residual Add and the forms pynn.onnx.export writes)")


def match(view, cur, width):
    """The Match of the nodes that read tensor ``cur`` (the chain's current one)."""
    ids = view.consumers_of(cur)
    if len(ids) == 1:
        _refuse_unsupported(view, ids[0])
        return _ONE_READER[view.nodes[ids[0]].op_type](view, ids[0], cur, width)
    reader = _MANY_READERS.get(tuple(sorted(view.nodes[j].op_type for j in ids)))
    if reader is None or any(view.nodes[j].domain not in DOMAINS for j in ids):
        for j in ids:
            if view.nodes[j].op_type not in ("Where", "Min"):
                _refuse_unsupported(view, j)  # an unknown operator says so, branch or not
        raise view.error(f"tensor {cur!r} feeds {len(ids)} nodes (" + ", ".join(
            view.describe(j) for j in ids[:4]) + "): a branch; pynn loads a chain of layers")
    return reader(view, ids, cur, width)
