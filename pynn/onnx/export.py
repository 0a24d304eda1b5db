"""``pynn.onnx.export``: a pynn network as an ONNX file, built with ``onnx.helper``.

The network is walked depth first (Sequential and ModuleList nests are its layers in order)
and each layer becomes the ONNX operators that compute what its eval-mode forward computes:

=============  ===============================================================================
Dense          Gemm(X, W, b, transB=1): W is stored as pynn holds it, (out, in)
  + BatchNorm  folded into that Gemm (W * s per output row, (b - mean) * s + beta with
               s = gamma / sqrt(var + eps), in float64, rounded once: predict's folded program)
BatchNorm      BatchNormalization (running statistics) when no Dense comes before it
Standardizer   Sub(X, mean), Div(., scale): the layer's own arithmetic, so the same bits
Dropout        nothing (the identity in eval mode)
Identity, ReLU, Sigmoid, Tanh: Identity, Relu, Sigmoid, Tanh
Softmax        Softmax(axis=-1)
Step           Cast(Greater(X, 0), to=dtype): 1 where X > 0, else 0 (0 at 0 and for NaN)
Square         Mul(X, X)
LeakyReLU      float32: LeakyRelu(alpha); float64: Where(Greater(X, 0), X, Mul(X, slope))
ELU            float32: Elu(alpha); float64: Where(Greater(X, 0), X,
               Mul(Sub(Exp(Min(X, 0)), 1), alpha))
GELU, SiLU, Softplus, Mish, LayerNorm, RMSNorm: ONNX's operator or an expression, by dtype
               and opset (_export_blocks.py)
Residual       its block's nodes, then Add(the block's input, the block's output)
=============  ===============================================================================

Why the float64 forms: ONNX stores an operator's float attributes as float32, so a float64
slope or alpha of 0.01 would become 0.009999999776; a float64 initializer keeps it exact (and
ONNX Runtime has no float64 Elu kernel). ONNX has no expm1: ELU's negative side is
alpha * (exp(v) - 1), within about 1e-16 * alpha (absolute) of pynn's alpha * expm1(v).
BatchNormalization's epsilon is a float32 attribute too (1e-5 becomes 9.99999975e-06).
"""
import json
import os

import numpy as np

from .. import __version__
from ..io._architecture import architecture
from .._atomic import atomic_open
from ..io._model_file import _plain_json
from ..nn import activations as act
from ..nn.batchnorm import BatchNorm
from ..nn.containers import ModuleList, Sequential
from ..nn.dense import Dense
from ..nn.dropout import Dropout
from ..nn.module import Module
from ..nn.normalization import LayerNorm, RMSNorm
from ..nn.residual import Residual
from ..nn.standardizer import Standardizer
from . import _export_blocks as blocks
from ._common import (DEFAULT_OPSET, ELEM_TYPES, KEY_ARCHITECTURE, KEY_METADATA, KEY_VERSION,
                      MIN_OPSET, require_onnx)

_CONTAINERS = (Sequential, ModuleList)


class _Builder:
    """The graph under construction: nodes, initializers, unique names, and ``x``, the name of
    the chain's current tensor (what the next layer reads)."""

    def __init__(self, onnx, dtype, opset, input_name, output_name):
        self.onnx, self.dtype, self.opset = onnx, dtype, opset
        self.nodes, self.initializers = [], []
        self.names = {input_name, output_name}
        self.x = input_name

    def _unique(self, name):
        base, k = name, 1
        while name in self.names:
            name, k = f"{base}_{k}", k + 1
        self.names.add(name)
        return name

    def const(self, name, value):
        """A constant of the model's dtype (an initializer); returns its name."""
        name = self._unique(name)
        array = np.asarray(value, dtype=self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def const_int64(self, name, values):
        """An int64 constant (ReduceMean's axes from opset 18); returns its name."""
        name = self._unique(name)
        array = np.asarray(values, dtype=np.int64)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def node(self, op_type, inputs, label, doc=None, **attrs):
        """Add a node named after the layer's path (torch's naming); returns its output."""
        name = self._unique(f"/{label}/{op_type}")
        out = self._unique(f"{name}_output_0")
        node = self.onnx.helper.make_node(op_type, inputs, [out], name=name, **attrs)
        if doc:
            node.doc_string = doc
        self.nodes.append(node)
        return out

    def then(self, op_type, label, *inputs, **attrs):
        """The chain's next node: reads ``x`` (and ``inputs``), becomes the new ``x``."""
        self.x = self.node(op_type, [self.x, *inputs], label, **attrs)
        return self.x


# ---------------------------------------------------------------------------- one layer each
def _emit_dense(b, label, dense, bn=None, bn_label=None):
    W = dense.weight.data
    bias = None if dense.bias is None else dense.bias.data
    doc = None
    if bn is not None:
        # BatchNorm's eval-mode affine map folded into the rows, as predict's folded program
        # (pynn/nn/inference.py) computes it: float64, rounded once.
        s = bn.weight.data.astype(np.float64) / np.sqrt(bn.running_var.astype(np.float64)
                                                        + bn.eps)
        b64 = np.zeros(dense.out_features) if bias is None else bias.astype(np.float64)
        W = W.astype(np.float64) * s[:, None]
        bias = (b64 - bn.running_mean.astype(np.float64)) * s + bn.bias.data.astype(np.float64)
        doc = f"pynn Dense {label} with BatchNorm {bn_label} folded in"
    inputs = [b.x, b.const(f"{label}.weight", W)]
    if bias is not None:
        inputs.append(b.const(f"{label}.bias", bias))
    b.x = b.node("Gemm", inputs, label, doc=doc, transB=1)


def _emit_batchnorm(b, label, bn):
    b.then("BatchNormalization", label, b.const(f"{label}.weight", bn.weight.data),
           b.const(f"{label}.bias", bn.bias.data),
           b.const(f"{label}.running_mean", bn.running_mean),
           b.const(f"{label}.running_var", bn.running_var), epsilon=float(bn.eps))


def _emit_standardizer(b, label, layer):
    if layer.mean is None:
        raise ValueError(f"model: the Standardizer at {label!r} is not fitted; fit it before "
                         f"exporting")
    b.then("Sub", label, b.const(f"{label}.mean", layer.mean))
    b.then("Div", label, b.const(f"{label}.scale", layer.scale))


def _emit_step(b, label, layer):
    positive = b.node("Greater", [b.x, b.const(f"{label}.zero", 0)], label)
    b.x = b.node("Cast", [positive], label, to=ELEM_TYPES[b.dtype])


def _emit_square(b, label, layer):
    b.then("Mul", label, b.x)


def _emit_leaky_relu(b, label, layer):
    if b.dtype == np.float32:
        b.then("LeakyRelu", label, alpha=float(layer.negative_slope))
        return
    x = b.x
    positive = b.node("Greater", [x, b.const(f"{label}.zero", 0)], label)
    negative = b.node("Mul", [x, b.const(f"{label}.negative_slope", layer.negative_slope)],
                      label)
    b.x = b.node("Where", [positive, x, negative], label)


def _emit_elu(b, label, layer):
    if b.dtype == np.float32:
        b.then("Elu", label, alpha=float(layer.alpha))
        return
    x, zero = b.x, b.const(f"{label}.zero", 0)
    positive = b.node("Greater", [x, zero], label)
    m = b.node("Min", [x, zero], label)
    em1 = b.node("Sub", [b.node("Exp", [m], label), b.const(f"{label}.one", 1)], label)
    negative = b.node("Mul", [em1, b.const(f"{label}.alpha", layer.alpha)], label)
    b.x = b.node("Where", [positive, x, negative], label)


def _emit_op(op_type, **attrs):
    def emit(b, label, layer):
        b.then(op_type, label, **attrs)
    return emit


# The layers export knows (exactly these classes: a subclass may compute something else).
_EMITTERS = {
    Dense: _emit_dense, BatchNorm: _emit_batchnorm, Standardizer: _emit_standardizer,
    act.Identity: _emit_op("Identity"), act.ReLU: _emit_op("Relu"),
    act.Sigmoid: _emit_op("Sigmoid"), act.Tanh: _emit_op("Tanh"),
    act.Softmax: _emit_op("Softmax", axis=-1), act.Step: _emit_step, act.Square: _emit_square,
    act.LeakyReLU: _emit_leaky_relu, act.ELU: _emit_elu,
    act.GELU: blocks.emit_gelu, act.SiLU: blocks.emit_silu, act.Softplus: blocks.emit_softplus,
    act.Mish: blocks.emit_mish, LayerNorm: blocks.emit_layernorm, RMSNorm: blocks.emit_rmsnorm,
}


# ---------------------------------------------------------------------------- the walk
def _leaves(module, path):
    """(path, layer) of every layer in order; containers are their layers (a Residual is one
    layer: its block is walked when it is emitted)."""
    if type(module) in _CONTAINERS:
        for name, child in module.named_children():
            yield from _leaves(child, f"{path}.{name}" if path else name)
    else:
        yield path, module


def _widths(layer):
    """(input width, output width) of a layer that has them, else (None, None)."""
    if type(layer) is Dense:
        return layer.in_features, layer.out_features
    if type(layer) in (BatchNorm, Standardizer, LayerNorm, RMSNorm):
        return layer.num_features, layer.num_features
    return None, None


def _layers_to_export(model, path="", width=None):
    """[(label, layer, block)] without Dropout (block: a Residual's own such list, else
    None); an unknown layer or a width mismatch raises; also (input width or None, output
    width or None)."""
    layers, in_width = [], None
    for sub, layer in _leaves(model, path):
        label = sub or type(layer).__name__
        if type(layer) is Dropout:
            continue
        if type(layer) is Residual:
            block, block_in, block_out = _layers_to_export(layer.block, f"{label}.block", width)
            if width is None and block_in is not None:
                in_width = width = block_in
            if width is not None and block_out != width:
                raise ValueError(f"model: the Residual at {label!r} maps {width} features "
                                 f"to {block_out}; x + block(x) needs the same number")
            layers.append((label, layer, block))
            continue
        if type(layer) not in _EMITTERS:
            raise TypeError(
                f"model: cannot export the {type(layer).__name__} at {label!r} to ONNX "
                f"(pynn.onnx exports Sequential/ModuleList nests of "
                f"{', '.join(sorted(c.__name__ for c in _EMITTERS))}, Residual and Dropout)")
        needs, gives = _widths(layer)
        if needs is not None:
            if width is not None and needs != width:
                raise ValueError(f"model: the {type(layer).__name__} at {label!r} takes {needs} "
                                 f"features but the layer before it gives {width}")
            if width is None:  # the first layer with a width: the model's input width
                in_width = needs
            width = gives
        layers.append((label, layer, None))
    return layers, in_width, width


def _emit_layers(b, layers):
    """Each layer's nodes after ``b.x``: a Dense followed by a BatchNorm as one Gemm; a
    Residual as its block's nodes then Add(its input, the block's output)."""
    i = 0
    while i < len(layers):
        label, layer, block = layers[i]
        nxt_label, nxt, _ = layers[i + 1] if i + 1 < len(layers) else (None, None, None)
        if type(layer) is Dense and type(nxt) is BatchNorm:
            _emit_dense(b, label, layer, nxt, nxt_label)
            i += 2
            continue
        if block is not None:
            x = b.x
            _emit_layers(b, block)
            if b.x == x:  # an empty block (Dropout alone): x + x, written so the loader
                b.then("Identity", f"{label}.block")  # sees the skip and the block apart
            b.x = b.node("Add", [x, b.x], label)
        else:
            _EMITTERS[type(layer)](b, label, layer)
        i += 1


def _model_dtype(model):
    # the layers' (a Sequential of activations alone says float32 whatever it sits in)
    dtypes = {m.dtype for m in model.modules()
              if type(m) not in _CONTAINERS and isinstance(getattr(m, "dtype", None), np.dtype)}
    if len(dtypes) > 1:
        raise TypeError(f"model: layers must share one dtype, got "
                        f"{sorted(d.name for d in dtypes)}")
    return dtypes.pop() if dtypes else np.dtype(np.float32)


def _graph(onnx, model, dtype, opset, input_name, output_name):
    layers, in_width, out_width = _layers_to_export(model)
    b = _Builder(onnx, dtype, opset, input_name, output_name)
    _emit_layers(b, layers)
    if not b.nodes:  # nothing but Dropout: still a graph from input to output
        b.then("Identity", "identity")
    b.nodes[-1].output[0] = output_name  # the chain's last tensor is the graph's output
    helper, elem = onnx.helper, ELEM_TYPES[dtype]
    inputs = [helper.make_tensor_value_info(input_name, elem, ["batch", in_width or "features"])]
    outputs = [helper.make_tensor_value_info(
        output_name, elem, ["batch", out_width or in_width or "features"])]
    return helper.make_graph(b.nodes, "pynn", inputs, outputs, b.initializers)


def _check_opset(onnx, opset):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:  # an onnx older than the pyproject's floor may not know DEFAULT_OPSET
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) \
            or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int from {MIN_OPSET} to {newest} (the newest the "
                         f"installed onnx {onnx.__version__} knows), got {opset!r}")
    return int(opset)


def _check_name(name, value):
    if not isinstance(value, str) or not value:
        raise TypeError(f"{name} must be a non-empty str, got {value!r}")
    return value


def to_model(model, opset=None, input_name="input", output_name="output", metadata=None):
    """The ONNX ``ModelProto`` that ``export`` writes (arguments as there), checked."""
    onnx = require_onnx()
    if not isinstance(model, Module):
        raise TypeError(f"model must be a pynn Module, got {type(model).__name__}")
    opset = _check_opset(onnx, opset)
    if _check_name("input_name", input_name) == _check_name("output_name", output_name):
        raise ValueError(f"input_name and output_name must differ, both are {input_name!r}")
    meta = json.dumps(_plain_json("metadata", metadata or {}))
    graph = _graph(onnx, model, _model_dtype(model), opset, input_name, output_name)
    props = {KEY_VERSION: __version__, KEY_ARCHITECTURE: json.dumps(architecture(model)),
             KEY_METADATA: meta}
    opsets = [onnx.helper.make_opsetid("", opset)]
    proto = onnx.helper.make_model(
        graph, opset_imports=opsets, producer_name="pynn", producer_version=__version__,
        # the oldest IR version of that opset: a newer one is refused by older runtimes
        ir_version=onnx.helper.find_min_ir_version_for(opsets))
    onnx.helper.set_model_props(proto, props)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def export(model, path, opset=None, input_name="input", output_name="output", metadata=None):
    """Write ``model`` (eval mode: running statistics, no Dropout) as an ONNX file.

    Parameters
    ----------
    model : Sequential, ModuleList or a single layer
        Any nest of Sequential/ModuleList (a ModuleList is its modules in order) over Dense,
        BatchNorm, Standardizer (fitted), Dropout, pynn's activations, LayerNorm, RMSNorm and
        Residual, float32 or float64.
    path : str or os.PathLike
        Written atomically (temporary file + rename).
    opset : int, optional
        The ONNX opset (default ``DEFAULT_OPSET``, 20: what ONNX Runtime 1.17 and later run);
        any from 13 to the newest the installed onnx knows.
    input_name, output_name : str
        The graph's input, shape ("batch", in_features), and output, ("batch", out_features);
        the batch dimension is dynamic.
    metadata : dict, optional
        JSON-able extra information (class names, feature names, ...), stored with pynn's
        version and the model's architecture in the file's metadata_props and returned by
        ``pynn.onnx.load(path, return_metadata=True)``.

    Returns
    -------
    onnx.ModelProto, as written (``onnx.checker.check_model(full_check=True)`` passed).

    Raises
    ------
    ImportError without the onnx package (``pip install 'pynn[onnx]'``); TypeError naming the
    layer (type and path) that ONNX cannot express here; ValueError for a bad argument, an
    unfitted Standardizer or mismatched layer widths; OSError when the file cannot be written.
    """
    path = os.fspath(path)
    proto = to_model(model, opset, input_name, output_name, metadata)
    data = proto.SerializeToString()
    with atomic_open(path, "wb") as f:
        f.write(data)
    return proto
